"""CSR facts and the per-group CSR policy (pure: no I/O, no clock).

Two steps, kept apart so challenge, blob and renewal checks reuse the facts:

1. `extract_csr_facts(csr)` parses what certgate needs from a PKCS#10 request:
   signature validity, key type/size, subject, SANs as normalized strings
   (``dns:host.example``, ``email:a@b``, ``uri:...``, ``upn:...``, ``ip:...``),
   requested EKUs, whether CA:TRUE is asked, the challengePassword in any of
   its string encodings, and the SHA-256 of the SubjectPublicKeyInfo.
2. `apply_policy(facts, policy)` decides against a `GroupCsrPolicy`.

`check_csr(csr, policy)` does both. Every refusal is `CsrRejected(reason)`;
the reason is a closed `CsrReason` and doubles as a metric label.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from asn1crypto import core as asn1
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.x509.oid import ExtendedKeyUsageOID

MAX_CSR_BYTES = 64 * 1024
MAX_CHALLENGE_CHARS = 4096
UPN_OID = "1.3.6.1.4.1.311.20.2.3"
CHALLENGE_PASSWORD_OID = "1.2.840.113549.1.9.7"
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string

_CURVE_BITS = {"secp256r1": 256, "secp384r1": 384, "secp521r1": 521}


class EnrollmentRejected(Exception):
    """The peer's request is refused; `reason` is a closed enum value (metric label).

    `detail` is for logs and audit only; never put secrets in it.
    """

    def __init__(self, reason: StrEnum, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class CsrReason(StrEnum):
    BAD_FORMAT = "bad_format"
    BAD_SIGNATURE = "bad_signature"
    KEY_TYPE = "key_type"
    KEY_SIZE = "key_size"
    WEAK_KEY = "weak_key"
    CA_REQUESTED = "ca_requested"
    EKU_NOT_ALLOWED = "eku_not_allowed"
    SAN_NOT_ALLOWED = "san_not_allowed"
    TOO_MANY_SANS = "too_many_sans"
    MISSING_CN = "missing_cn"


class CsrRejected(EnrollmentRejected):
    reason: CsrReason


# ---------------------------------------------------------------------------
# Facts


@dataclass(frozen=True)
class CsrFacts:
    """Plain values only (str, int, bytes, tuples): picklable, so they cross from the SCEP
    crypto worker processes to the event loop."""

    subject: str  # RFC 4514 (cryptography's rfc4514_string of the CSR subject)
    subject_cn: str | None
    sans: tuple[str, ...]
    ekus: tuple[str, ...]  # dotted OIDs, in request order
    key_type: str  # "rsa" | "ec" | "ed25519" | "ed448"
    key_bits: int  # RSA modulus bits, EC curve bits, 255/448 for EdDSA
    key_spec: str  # "rsa-2048", "ec-p256", "ed25519"
    rsa_exponent: int | None
    requests_ca: bool
    challenge_password: str | None
    spki_sha256: bytes
    signature_valid: bool


def normalize_san(value: str) -> str:
    """Canonical form of a ``type:value`` SAN string (type lower-cased).

    dns: lower-case, no trailing dot; email/upn: domain lower-cased; ip: the
    compressed textual form; uri and others: unchanged.
    """
    kind, sep, rest = value.partition(":")
    if not sep:
        raise ValueError(f"SAN {value!r} lacks a 'type:' prefix")
    kind = kind.strip().lower()
    if kind == "dns":
        rest = rest.lower().rstrip(".")
    elif kind in ("email", "upn"):
        local, at, domain = rest.rpartition("@")
        rest = f"{local}{at}{domain.lower()}" if at else rest
    elif kind == "ip":
        rest = str(ipaddress.ip_address(rest.strip()))
    return f"{kind}:{rest}"


def _san_strings(general_names: Iterable[x509.GeneralName]) -> tuple[str, ...]:
    out: list[str] = []
    for gn in general_names:
        if isinstance(gn, x509.DNSName):
            out.append(normalize_san("dns:" + gn.value))
        elif isinstance(gn, x509.RFC822Name):
            out.append(normalize_san("email:" + gn.value))
        elif isinstance(gn, x509.UniformResourceIdentifier):
            out.append("uri:" + gn.value)
        elif isinstance(gn, x509.IPAddress):
            out.append("ip:" + str(gn.value))
        elif isinstance(gn, x509.OtherName):
            if gn.type_id.dotted_string == UPN_OID:
                out.append(normalize_san("upn:" + _decode_string_der(gn.value)))
            else:
                out.append(f"othername:{gn.type_id.dotted_string}")
        elif isinstance(gn, x509.DirectoryName):
            out.append("dirname:" + gn.value.rfc4514_string())
        elif isinstance(gn, x509.RegisteredID):
            out.append("rid:" + gn.value.dotted_string)
        else:  # pragma: no cover - cryptography has no other GeneralName types
            out.append("unknown:")
    return tuple(out)


def _decode_string_der(der: bytes) -> str:
    """Decode one DER string value of any ASN.1 string type (or OCTET STRING as UTF-8)."""
    try:
        value = asn1.load(der, strict=True)
    except (ValueError, TypeError) as exc:
        raise CsrRejected(CsrReason.BAD_FORMAT, "undecodable string value") from exc
    if isinstance(value, asn1.OctetString):
        try:  # a constructed (BER) OCTET STRING is parsed only here, chunk by chunk
            raw = value.native
        except ValueError as exc:
            raise CsrRejected(CsrReason.BAD_FORMAT, "undecodable OCTET STRING") from exc
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CsrRejected(CsrReason.BAD_FORMAT, "OCTET STRING is not UTF-8") from exc
    if isinstance(value, asn1.TeletexString):
        # T.61 in theory; Latin-1 in practice (OpenSSL and every client that sends it)
        return value.contents.decode("latin-1")
    if isinstance(value, asn1.AbstractString):
        try:
            text = value.native
        except (ValueError, UnicodeDecodeError) as exc:
            raise CsrRejected(CsrReason.BAD_FORMAT, "undecodable string value") from exc
        if isinstance(text, str):
            return text
    raise CsrRejected(CsrReason.BAD_FORMAT, f"not a string type: {type(value).__name__}")


class _AnySet(asn1.SetOf):
    _child_spec = asn1.Any


class _Attribute(asn1.Sequence):
    _fields = [("type", asn1.ObjectIdentifier), ("values", _AnySet)]


class _Attributes(asn1.SetOf):
    _child_spec = _Attribute


class _CertificationRequestInfo(asn1.Sequence):
    _fields = [
        ("version", asn1.Integer),
        ("subject", asn1.Any),
        ("subject_pk_info", asn1.Any),
        ("attributes", _Attributes, {"implicit": 0, "optional": True}),
    ]


class _CertificationRequest(asn1.Sequence):
    _fields = [
        ("certification_request_info", _CertificationRequestInfo),
        ("signature_algorithm", asn1.Any),
        ("signature", asn1.Any),
    ]


def challenge_password_from_der(der: bytes) -> str | None:
    """The challengePassword of a DER (or BER) CSR, decoded from any string form.

    Accepts PrintableString, UTF8String, IA5String, BMPString, TeletexString,
    UniversalString and OCTET STRING (as UTF-8). Parsed with a permissive
    asn1crypto spec because asn1crypto's own one only knows DirectoryString.
    Several challengePassword attributes or values are a format error.
    """
    try:
        req = _CertificationRequest.load(der)
        attrs = req["certification_request_info"]["attributes"]
        found: list[str] = []
        for attr in attrs:
            if attr["type"].dotted != CHALLENGE_PASSWORD_OID:
                continue
            for value in attr["values"]:
                found.append(_decode_string_der(value.dump()))
    except CsrRejected:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # asn1crypto: no .native
        raise CsrRejected(CsrReason.BAD_FORMAT, "unparsable CSR attributes") from exc
    if not found:
        return None
    if len(found) > 1:
        raise CsrRejected(CsrReason.BAD_FORMAT, "more than one challengePassword")
    if len(found[0]) > MAX_CHALLENGE_CHARS:
        raise CsrRejected(CsrReason.BAD_FORMAT, "challengePassword too long")
    return found[0]


def _key_facts(csr: x509.CertificateSigningRequest) -> tuple[str, int, str, int | None]:
    try:
        key = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise CsrRejected(CsrReason.KEY_TYPE, "unsupported public key") from exc
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.key_size
        return "rsa", bits, f"rsa-{bits}", key.public_numbers().e
    if isinstance(key, ec.EllipticCurvePublicKey):
        bits = _CURVE_BITS.get(key.curve.name, key.curve.key_size)
        return "ec", bits, f"ec-p{bits}" if key.curve.name in _CURVE_BITS else key.curve.name, None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 255, "ed25519", None
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 448, "ed448", None
    raise CsrRejected(CsrReason.KEY_TYPE, f"unsupported key {type(key).__name__}")


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Load a DER or PEM CSR, refusing oversized input (bad_format)."""
    if len(data) > MAX_CSR_BYTES:
        raise CsrRejected(CsrReason.BAD_FORMAT, "CSR too large")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion: not a ValueError
        raise CsrRejected(CsrReason.BAD_FORMAT, "unparsable CSR") from exc


def csr_signature_valid(csr: x509.CertificateSigningRequest) -> bool:
    """The CSR's self-signature verifies.

    cryptography's ``is_signature_valid`` answers False for every SHA-1 signature (since
    cryptography 45 its X.509 layer refuses SHA-1, whatever the signature), though it is
    valid (``openssl req -verify`` agrees): a SHA-1 CSR is verified here with the key's own
    primitive instead. Whether SHA-1 is acceptable at all is the group's policy, checked
    before (`parse_csr`).
    """
    hash_alg = csr.signature_hash_algorithm
    if not isinstance(hash_alg, hashes.SHA1):
        return csr.is_signature_valid
    key = csr.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            params = csr.signature_algorithm_parameters
            if not isinstance(params, asym_padding.PKCS1v15 | asym_padding.PSS):
                return False
            key.verify(csr.signature, csr.tbs_certrequest_bytes, params, hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(csr.signature, csr.tbs_certrequest_bytes, ec.ECDSA(hash_alg))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def extract_csr_facts(csr: x509.CertificateSigningRequest | bytes) -> CsrFacts:
    """Everything certgate needs from a CSR; raises CsrRejected(bad_format) only."""
    if isinstance(csr, bytes | bytearray):
        csr = load_csr(bytes(csr))
    der = csr.public_bytes(serialization.Encoding.DER)
    if len(der) > MAX_CSR_BYTES:
        raise CsrRejected(CsrReason.BAD_FORMAT, "CSR too large")
    try:
        subject = csr.subject
        cns = subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        extensions = csr.extensions
        signature_valid = csr_signature_valid(csr)
    except (
        ValueError, UnsupportedAlgorithm, x509.DuplicateExtension, x509.UnsupportedGeneralNameType,
        TypeError,  # a name value type cryptography refuses (a BIT STRING under a CN OID)
    ) as exc:
        raise CsrRejected(CsrReason.BAD_FORMAT, f"malformed CSR: {exc}") from exc
    if len(cns) > 1:
        raise CsrRejected(CsrReason.BAD_FORMAT, "more than one CN")
    cn = cns[0].value if cns else None
    if isinstance(cn, bytes):
        raise CsrRejected(CsrReason.BAD_FORMAT, "CN is not a string")

    sans: tuple[str, ...] = ()
    ekus: tuple[str, ...] = ()
    requests_ca = False
    for ext in extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            sans = _san_strings(ext.value)
        elif isinstance(ext.value, x509.ExtendedKeyUsage):
            ekus = tuple(oid.dotted_string for oid in ext.value)
        elif isinstance(ext.value, x509.BasicConstraints):
            requests_ca = ext.value.ca
    key_type, key_bits, key_spec, exponent = _key_facts(csr)
    spki = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return CsrFacts(
        subject=subject.rfc4514_string(),
        subject_cn=cn,
        sans=sans,
        ekus=ekus,
        key_type=key_type,
        key_bits=key_bits,
        key_spec=key_spec,
        rsa_exponent=exponent,
        requests_ca=requests_ca,
        challenge_password=challenge_password_from_der(der),
        spki_sha256=hashlib.sha256(spki).digest(),
        signature_valid=signature_valid,
    )


# ---------------------------------------------------------------------------
# Policy


@dataclass(frozen=True)
class GroupCsrPolicy:
    """What a group's SCEP endpoint accepts in a CSR.

    `rsa_min_bits=None` forbids RSA; an empty `ec_curve_bits` forbids EC.
    `allowed_ekus=None` accepts any requested EKU (the issuing profile decides).
    """

    ec_curve_bits: frozenset[int] = frozenset({256, 384})
    rsa_min_bits: int | None = 2048
    rsa_max_bits: int = 8192
    allow_ed25519: bool = False
    max_validity_days: int = 365
    allowed_ekus: frozenset[str] | None = frozenset({CLIENT_AUTH})
    allowed_san_types: frozenset[str] = frozenset({"dns", "email", "uri", "upn", "ip"})
    max_sans: int = 16
    require_cn: bool = True

    @classmethod
    def from_key_types(
        cls, key_types: Mapping[str, object], **kwargs: object
    ) -> GroupCsrPolicy:
        """Build from the config shape ``{"ec": [256, 384], "rsa": 2048, "ed25519": true}``."""
        unknown = set(key_types) - {"ec", "rsa", "ed25519"}
        if unknown:
            raise ValueError(f"unknown key types {sorted(unknown)}")
        ec_bits = key_types.get("ec", [])
        if not isinstance(ec_bits, list | tuple | set | frozenset):
            raise ValueError("key_types.ec must be a list of curve sizes")
        bad = set(ec_bits) - set(_CURVE_BITS.values())
        if bad:
            raise ValueError(f"unsupported EC curve sizes {sorted(bad)}")
        rsa_min = key_types.get("rsa")
        if rsa_min is not None and (not isinstance(rsa_min, int) or rsa_min < 2048):
            raise ValueError("key_types.rsa must be a minimum modulus size >= 2048")
        return cls(
            ec_curve_bits=frozenset(int(b) for b in ec_bits),
            rsa_min_bits=rsa_min,
            allow_ed25519=bool(key_types.get("ed25519", False)),
            **kwargs,  # type: ignore[arg-type]
        )


def apply_policy(facts: CsrFacts, policy: GroupCsrPolicy) -> None:
    """Raise CsrRejected unless the CSR facts satisfy the group policy."""
    if not facts.signature_valid:
        raise CsrRejected(CsrReason.BAD_SIGNATURE, "CSR self-signature does not verify")
    _check_key(facts, policy)
    if facts.requests_ca:
        raise CsrRejected(CsrReason.CA_REQUESTED, "basicConstraints CA:TRUE requested")
    if policy.require_cn and not facts.subject_cn:
        raise CsrRejected(CsrReason.MISSING_CN, "subject has no CN")
    if len(facts.sans) > policy.max_sans:
        raise CsrRejected(CsrReason.TOO_MANY_SANS, f"{len(facts.sans)} SANs")
    for san in facts.sans:
        if san.partition(":")[0] not in policy.allowed_san_types:
            raise CsrRejected(CsrReason.SAN_NOT_ALLOWED, san.partition(":")[0])
    if policy.allowed_ekus is not None:
        extra = [e for e in facts.ekus if e not in policy.allowed_ekus]
        if extra:
            raise CsrRejected(CsrReason.EKU_NOT_ALLOWED, ",".join(extra))


def _check_key(facts: CsrFacts, policy: GroupCsrPolicy) -> None:
    if facts.key_type == "rsa":
        if policy.rsa_min_bits is None:
            raise CsrRejected(CsrReason.KEY_TYPE, "RSA not allowed")
        if not policy.rsa_min_bits <= facts.key_bits <= policy.rsa_max_bits:
            raise CsrRejected(CsrReason.KEY_SIZE, facts.key_spec)
        e = facts.rsa_exponent or 0
        if e < 65537 or e % 2 == 0:
            raise CsrRejected(CsrReason.WEAK_KEY, f"RSA exponent {e}")
    elif facts.key_type == "ec":
        if not policy.ec_curve_bits:
            raise CsrRejected(CsrReason.KEY_TYPE, "EC not allowed")
        if not facts.key_spec.startswith("ec-p") or facts.key_bits not in policy.ec_curve_bits:
            raise CsrRejected(CsrReason.KEY_SIZE, facts.key_spec)
    elif facts.key_type == "ed25519":
        if not policy.allow_ed25519:
            raise CsrRejected(CsrReason.KEY_TYPE, "Ed25519 not allowed")
    else:
        raise CsrRejected(CsrReason.KEY_TYPE, f"{facts.key_type} not allowed")


def check_csr(
    csr: x509.CertificateSigningRequest | bytes, policy: GroupCsrPolicy
) -> CsrFacts:
    """Extract the facts and apply the group policy; returns the facts or raises CsrRejected."""
    facts = extract_csr_facts(csr)
    apply_policy(facts, policy)
    return facts


# ---------------------------------------------------------------------------
# Key specs shared by challenge bindings and blob claims


def key_matches_spec(facts: CsrFacts, spec: str) -> bool:
    """Does the CSR key satisfy one key spec?

    Grammar: ``ec-p256`` | ``ec-p384`` | ``ec-p521`` | ``ed25519`` | ``rsa-N``
    (exactly N bits) | ``rsa-N+`` (at least N bits). Case-insensitive.
    """
    m = _KEY_SPEC_RE.fullmatch(spec.strip().lower())
    if m is None:
        raise ValueError(f"bad key spec {spec!r}")
    if m["rsa"] is not None:
        if facts.key_type != "rsa":
            return False
        size = int(m["rsa"])
        return facts.key_bits >= size if m["plus"] else facts.key_bits == size
    return facts.key_spec == m[0]


_KEY_SPEC_RE = re.compile(
    r"rsa-(?P<rsa>[1-9][0-9]{2,4})(?P<plus>\+?)|ec-p(?:256|384|521)|ed25519|ed448"
)


def validate_key_spec(spec: str) -> str:
    """Return the normalized spec or raise ValueError (for config/API validation)."""
    norm = spec.strip().lower()
    if _KEY_SPEC_RE.fullmatch(norm) is None:
        raise ValueError(f"bad key spec {spec!r}")
    return norm


__all__ = [
    "CLIENT_AUTH",
    "CsrFacts",
    "CsrReason",
    "CsrRejected",
    "EnrollmentRejected",
    "GroupCsrPolicy",
    "apply_policy",
    "challenge_password_from_der",
    "csr_signature_valid",
    "check_csr",
    "extract_csr_facts",
    "key_matches_spec",
    "load_csr",
    "normalize_san",
    "validate_key_spec",
]
