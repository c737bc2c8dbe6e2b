"""SCEP wire constants, algorithm names and errors (RFC 8894).

Importing this module registers the SCEP signed-attribute OIDs in asn1crypto's
module-global CMS registries, so ``cms.CMSAttribute`` parses them into typed
values. The registration is idempotent.
"""

from __future__ import annotations

import enum

from asn1crypto import cms, core

__all__ = [
    "AlgorithmRefused",
    "ContentCipher",
    "DigestAlgorithm",
    "FailInfo",
    "KeyTransport",
    "MessageType",
    "PKIStatus",
    "ScepError",
    "ScepString",
    "UndecodableRequest",
    "UnsupportedAlgorithm",
]


class MessageType(enum.IntEnum):
    """messageType attribute values (RFC 8894 §3.2.1.2)."""

    CertRep = 3
    RenewalReq = 17
    PKCSReq = 19
    CertPoll = 20
    GetCert = 21
    GetCRL = 22


REQUEST_TYPES = frozenset(
    {
        MessageType.PKCSReq,
        MessageType.RenewalReq,
        MessageType.CertPoll,
        MessageType.GetCert,
        MessageType.GetCRL,
    }
)


class PKIStatus(enum.IntEnum):
    """pkiStatus attribute values (RFC 8894 §3.2.1.3)."""

    SUCCESS = 0
    FAILURE = 2
    PENDING = 3


class FailInfo(enum.IntEnum):
    """failInfo attribute values (RFC 8894 §3.2.1.4)."""

    badAlg = 0
    badMessageCheck = 1
    badRequest = 2
    badTime = 3
    badCertId = 4


class DigestAlgorithm(enum.Enum):
    """Message digests; the value is asn1crypto's algorithm name."""

    MD5 = "md5"
    SHA1 = "sha1"
    SHA224 = "sha224"
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"

    @property
    def strength(self) -> int:
        return _DIGEST_STRENGTH[self]


_DIGEST_STRENGTH = {
    DigestAlgorithm.MD5: 0,
    DigestAlgorithm.SHA1: 1,
    DigestAlgorithm.SHA224: 2,
    DigestAlgorithm.SHA256: 3,
    DigestAlgorithm.SHA384: 4,
    DigestAlgorithm.SHA512: 5,
}


class ContentCipher(enum.Enum):
    """EnvelopedData content-encryption algorithms; value = asn1crypto name."""

    DES_CBC = "des"
    DES3_CBC = "tripledes_3key"
    AES128_CBC = "aes128_cbc"
    AES192_CBC = "aes192_cbc"
    AES256_CBC = "aes256_cbc"

    @property
    def key_size(self) -> int:
        return _CIPHER_KEY_SIZE[self]

    @property
    def block_size(self) -> int:
        return 8 if self in (ContentCipher.DES_CBC, ContentCipher.DES3_CBC) else 16

    @property
    def is_aes(self) -> bool:
        return self.value.startswith("aes")


_CIPHER_KEY_SIZE = {
    ContentCipher.DES_CBC: 8,
    ContentCipher.DES3_CBC: 24,
    ContentCipher.AES128_CBC: 16,
    ContentCipher.AES192_CBC: 24,
    ContentCipher.AES256_CBC: 32,
}


class KeyTransport(enum.Enum):
    """RSA key-transport schemes for KeyTransRecipientInfo.

    OAEP variants name the OAEP hash; the MGF1 hash is the same and the label
    empty (the only shapes seen in SCEP clients; others are ``badAlg``).
    """

    RSA_PKCS1V15 = "rsaes_pkcs1v15"
    RSA_OAEP_SHA1 = "oaep_sha1"
    RSA_OAEP_SHA256 = "oaep_sha256"
    RSA_OAEP_SHA384 = "oaep_sha384"
    RSA_OAEP_SHA512 = "oaep_sha512"

    @property
    def oaep_hash(self) -> DigestAlgorithm | None:
        if self is KeyTransport.RSA_PKCS1V15:
            return None
        return DigestAlgorithm(self.value.removeprefix("oaep_"))


class UnsupportedAlgorithm(Exception):
    """An algorithm we recognise but cannot or will not process."""


class ScepError(Exception):
    """A request authenticated enough to be answered with a signed CertRep FAILURE.

    ``request`` is the parsed (possibly not yet verified) pkiMessage when known,
    so the shell can build the FAILURE reply from it.
    """

    def __init__(self, fail_info: FailInfo, reason: str, *, request: object = None) -> None:
        super().__init__(f"{fail_info.name}: {reason}")
        self.fail_info = fail_info
        self.reason = reason
        self.request = request


class AlgorithmRefused(ScepError):
    """badAlg for an algorithm we implement but the group's policy does not allow.

    ``algorithm`` is its config name (``des3``, ``sha1``, ``md5``...): log field and metric
    label; ``reason`` says which setting would allow it.
    """

    def __init__(self, algorithm: str, reason: str, *, request: object = None) -> None:
        super().__init__(FailInfo.badAlg, reason, request=request)
        self.algorithm = algorithm


class UndecodableRequest(Exception):
    """Input that cannot be answered with a CertRep at all (HTTP 400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- asn1crypto registrations -------------------------------------------------


class ScepString(core.Choice):
    """PrintableString per RFC 8894, but tolerate the string types clients send."""

    _alternatives = [
        ("printable_string", core.PrintableString),
        ("utf8_string", core.UTF8String),
        ("ia5_string", core.IA5String),
        ("teletex_string", core.TeletexString),
        ("bmp_string", core.BMPString),
        ("universal_string", core.UniversalString),
    ]


class SetOfScepString(core.SetOf):
    _child_spec = ScepString


class SetOfUTF8String(core.SetOf):
    _child_spec = core.UTF8String


OID_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
OID_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
OID_FAIL_INFO_TEXT = "1.3.6.1.5.5.7.24.1"

_ATTRIBUTES: dict[str, tuple[str, type[core.SetOf]]] = {
    OID_MESSAGE_TYPE: ("scep_message_type", SetOfScepString),
    OID_PKI_STATUS: ("scep_pki_status", SetOfScepString),
    OID_FAIL_INFO: ("scep_fail_info", SetOfScepString),
    OID_SENDER_NONCE: ("scep_sender_nonce", cms.SetOfOctetString),
    OID_RECIPIENT_NONCE: ("scep_recipient_nonce", cms.SetOfOctetString),
    OID_TRANSACTION_ID: ("scep_transaction_id", SetOfScepString),
    OID_FAIL_INFO_TEXT: ("scep_fail_info_text", SetOfUTF8String),
}


def register_attributes() -> None:
    """Register SCEP attribute OIDs into asn1crypto's (private) CMS registries."""
    for oid, (name, spec) in _ATTRIBUTES.items():
        cms.CMSAttributeType._map[oid] = name
        if getattr(cms.CMSAttributeType, "_reverse_map", None) is not None:
            cms.CMSAttributeType._reverse_map[name] = oid
        cms.CMSAttribute._oid_specs[name] = spec


register_attributes()
