"""Contents of the pkcsPKIEnvelope (RFC 8894 §3.3): CSR, IssuerAndSubject,
IssuerAndSerialNumber; and the CSR's challengePassword in any string type.

Errors are ``ScepError(badRequest)``: the request was already authenticated; a CSR signed
with a digest the group does not allow is ``AlgorithmRefused`` (badAlg).
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm as CryptographyUnsupported
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type

from enrollment.algorithms import AlgorithmPolicy
from enrollment.cms_ber import BerError, normalize, read_tlv, string_value
from enrollment.policy import csr_signature_valid
from enrollment.scep_types import (
    AlgorithmRefused,
    DigestAlgorithm,
    FailInfo,
    MessageType,
    ScepError,
    UnsupportedAlgorithm,
)

__all__ = [
    "IssuerAndSerial",
    "IssuerAndSubject",
    "challenge_password",
    "csr_signature_digest",
    "name_from_der",
    "parse_csr",
    "parse_inner",
    "parse_issuer_and_serial",
    "parse_issuer_and_subject",
]


class _IssuerAndSubject(core.Sequence):
    _fields = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]


@dataclass(frozen=True)
class IssuerAndSubject:
    """CertPoll (GetCertInitial) body: issuer = the CA, subject = the CSR subject."""

    issuer: x509.Name
    subject: x509.Name
    issuer_der: bytes
    subject_der: bytes


@dataclass(frozen=True)
class IssuerAndSerial:
    """GetCert / GetCRL body."""

    issuer: x509.Name
    serial_number: int
    issuer_der: bytes


# Universal tag number -> (cryptography string type, codec).
_STRING_TAGS: dict[int, tuple[_ASN1Type, str]] = {
    12: (_ASN1Type.UTF8String, "utf-8"),
    19: (_ASN1Type.PrintableString, "ascii"),
    20: (_ASN1Type.T61String, "latin-1"),
    22: (_ASN1Type.IA5String, "ascii"),
    26: (_ASN1Type.VisibleString, "ascii"),
    28: (_ASN1Type.UniversalString, "utf-32-be"),
    30: (_ASN1Type.BMPString, "utf-16-be"),
}


def _decode_string(encoded: bytes) -> tuple[str, _ASN1Type]:
    tlv = read_tlv(encoded)
    tag = tlv.universal_tag
    octets = string_value(encoded)
    if tag == 4:  # OCTET STRING challengePassword (seen in the wild)
        return octets.decode("utf-8"), _ASN1Type.UTF8String
    if tag not in _STRING_TAGS:
        raise ValueError(f"not a string (tag {tlv.tag.hex()})")
    asn1_type, codec = _STRING_TAGS[tag]
    return octets.decode(codec), asn1_type


def _raw(value: core.Asn1Value) -> bytes:
    """The value's own TLV (a parsed Choice keeps only its alternative's contents)."""
    while isinstance(value, core.Choice):
        value = value.chosen
    return value._header + value.contents + (value._trailer or b"")


def _name_from_asn1(name: asn1_x509.Name) -> x509.Name:
    rdns = []
    for rdn in name.chosen:
        attrs = []
        for atv in rdn:
            value, asn1_type = _decode_string(_raw(atv["value"]))
            oid = x509.ObjectIdentifier(atv["type"].dotted)
            attrs.append(x509.NameAttribute(oid, value, asn1_type))
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


def name_from_der(der: bytes) -> x509.Name:
    """cryptography Name from a DER/BER Name (string types preserved)."""
    return _name_from_asn1(asn1_x509.Name.load(der))


def _bad(reason: str, request: object) -> ScepError:
    return ScepError(FailInfo.badRequest, reason, request=request)


def csr_signature_digest(csr: x509.CertificateRequest) -> DigestAlgorithm | None:
    """The digest of the CSR's self-signature; None for a signature without one (Ed25519);
    UnsupportedAlgorithm for one we have no name for (SHA-3, an unknown OID)."""
    try:
        hash_alg = csr.signature_hash_algorithm
    except CryptographyUnsupported as exc:
        raise UnsupportedAlgorithm(f"CSR signature algorithm {exc}") from exc
    if hash_alg is None:
        return None
    try:
        return DigestAlgorithm(hash_alg.name)
    except ValueError:
        raise UnsupportedAlgorithm(f"CSR signature digest {hash_alg.name}") from None


def parse_csr(content: bytes, request: object = None, *,
              policy: AlgorithmPolicy | None = None) -> x509.CertificateRequest:
    """PKCS#10 from a PKCSReq/RenewalReq; its self-signature must verify, with a digest
    ``policy`` allows (AlgorithmRefused otherwise, checked before the signature)."""
    try:
        csr = x509.load_der_x509_csr(normalize(content))
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion: not a ValueError
        raise _bad(f"not a PKCS#10 request: {exc}", request) from exc
    try:
        csr.subject  # noqa: B018 - decoded lazily: TypeError for a value type it refuses,
    except (TypeError, ValueError) as exc:  # ValueError for a string that is not its charset
        raise _bad(f"CSR subject cannot be decoded: {exc}", request) from exc
    if policy is not None:
        try:
            digest = csr_signature_digest(csr)
        except UnsupportedAlgorithm as exc:
            raise AlgorithmRefused("other", str(exc), request=request) from exc
        policy.check_digest(digest, "CSR signature", request)
    try:
        valid = csr_signature_valid(csr)
    except Exception as exc:  # unsupported key/signature type  # noqa: BLE001
        raise ScepError(FailInfo.badAlg, f"CSR signature: {exc}", request=request) from exc
    if not valid:
        raise _bad("CSR signature does not verify", request)
    return csr


def parse_issuer_and_subject(content: bytes, request: object = None) -> IssuerAndSubject:
    try:
        ias = _IssuerAndSubject.load(normalize(content))
        issuer, subject = ias["issuer"], ias["subject"]
        return IssuerAndSubject(
            issuer=_name_from_asn1(issuer),
            subject=_name_from_asn1(subject),
            issuer_der=issuer.dump(force=True),
            subject_der=subject.dump(force=True),
        )
    except (ValueError, TypeError, KeyError, AttributeError, BerError) as exc:  # see below
        raise _bad(f"not an IssuerAndSubject: {exc}", request) from exc


def parse_issuer_and_serial(content: bytes, request: object = None) -> IssuerAndSerial:
    try:
        ias = cms.IssuerAndSerialNumber.load(normalize(content))
        issuer = ias["issuer"]
        return IssuerAndSerial(
            issuer=_name_from_asn1(issuer),
            serial_number=ias["serial_number"].native,
            issuer_der=issuer.dump(force=True),
        )
    # AttributeError: asn1crypto types without .native (REAL, ObjectDescriptor)
    except (ValueError, TypeError, KeyError, AttributeError, BerError) as exc:
        raise _bad(f"not an IssuerAndSerialNumber: {exc}", request) from exc


def parse_inner(
    message_type: MessageType, content: bytes, request: object = None, *,
    policy: AlgorithmPolicy | None = None,
) -> x509.CertificateRequest | IssuerAndSubject | IssuerAndSerial:
    """Dispatch on messageType: CSR (its digest checked against ``policy``),
    IssuerAndSubject or IssuerAndSerialNumber."""
    if message_type in (MessageType.PKCSReq, MessageType.RenewalReq):
        return parse_csr(content, request, policy=policy)
    if message_type is MessageType.CertPoll:
        return parse_issuer_and_subject(content, request)
    if message_type in (MessageType.GetCert, MessageType.GetCRL):
        return parse_issuer_and_serial(content, request)
    raise _bad(f"{message_type.name} is not a request", request)


def challenge_password(csr: x509.CertificateRequest | bytes) -> str | None:
    """The CSR's challengePassword, whatever string type carries it.

    Delegates to `enrollment.policy.challenge_password_from_der` (the one implementation:
    PrintableString, UTF8String, IA5String, T61String, BMPString, UniversalString,
    VisibleString, OCTET STRING). None if absent; ValueError if undecodable.
    """
    from enrollment.policy import CsrRejected, challenge_password_from_der

    der = csr if isinstance(csr, bytes) else csr.public_bytes(Encoding.DER)
    try:
        return challenge_password_from_der(der)
    except CsrRejected as exc:
        raise ValueError(exc.detail or str(exc)) from exc
