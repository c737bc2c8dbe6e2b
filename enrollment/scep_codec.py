"""SCEP pkiMessage codec (RFC 8894), server side. Pure: bytes in, bytes out.

    msg = parse_pki_message(body)            # verify signature + messageDigest
    inner = decrypt_inner(msg, ra_cert, ra_key)
    csr = parse_csr(inner.content, msg)      # or parse_issuer_and_subject / _serial
    reply = build_cert_rep_success(
        msg, [issued], ra_cert, ra_key, ReplyOptions(algorithms=inner.algorithms)
    )

Errors: ``UndecodableRequest`` (answer HTTP 400) when no CertRep can be built;
``ScepError(fail_info, reason, request=msg)`` once signer and transactionID are
known: answer ``build_cert_rep_failure(err.request, err.fail_info, ...)``.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from enrollment import cms_envelope, cms_fast, cms_signed, der
from enrollment.algorithms import LEGACY_CIPHERS, LEGACY_DIGESTS, AlgorithmPolicy
from enrollment.scep_inner import (
    IssuerAndSerial,
    IssuerAndSubject,
    challenge_password,
    name_from_der,
    parse_csr,
    parse_inner,
    parse_issuer_and_serial,
    parse_issuer_and_subject,
)
from enrollment.scep_types import (
    REQUEST_TYPES,
    ContentCipher,
    DigestAlgorithm,
    FailInfo,
    KeyTransport,
    MessageType,
    PKIStatus,
    ScepError,
    ScepString,
    UndecodableRequest,
    UnsupportedAlgorithm,
)

__all__ = [
    "ContentCipher",
    "Decrypted",
    "DigestAlgorithm",
    "FailInfo",
    "KeyTransport",
    "MessageType",
    "PKIStatus",
    "ScepError",
    "UndecodableRequest",
    "EnvelopeAlgorithms",
    "IssuerAndSerial",
    "IssuerAndSubject",
    "PkiMessage",
    "ReplyOptions",
    "name_from_der",
    "build_cert_rep_crl",
    "build_cert_rep_failure",
    "build_cert_rep_pending",
    "build_cert_rep_success",
    "challenge_password",
    "check_algorithms",
    "check_signing_time",
    "decrypt_inner",
    "degenerate_certificates",
    "parse_csr",
    "parse_inner",
    "parse_issuer_and_serial",
    "parse_issuer_and_subject",
    "parse_pki_message",
    "reply_cipher",
    "reply_digest",
]

EnvelopeAlgorithms = cms_envelope.EnvelopeAlgorithms
Decrypted = cms_envelope.Decrypted

NONCE_SIZE = 16
MAX_MESSAGE_SIZE = 2 * 1024 * 1024  # micromdm's POST cap; Intune blobs stay far below


@dataclass(frozen=True)
class PkiMessage:
    """A parsed pkiMessage (request or CertRep).

    ``signature_verified`` is False only on the ``request`` of a ScepError
    raised by ``parse_pki_message`` (it is enough to address a FAILURE reply).
    """

    message_type: MessageType
    transaction_id: str
    sender_nonce: bytes
    signer_certificate: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    digest_algorithm: DigestAlgorithm | None
    digest_algorithm_oid: str
    signature_algorithm: str
    signature_digest: DigestAlgorithm | None
    signing_time: datetime.datetime | None
    enveloped_content: bytes | None
    envelope_algorithms: EnvelopeAlgorithms | None
    recipient_nonce: bytes | None = None
    pki_status: PKIStatus | None = None
    fail_info: FailInfo | None = None
    fail_info_text: str | None = None
    signature_verified: bool = True
    transaction_id_string_type: str = "printable_string"
    # enveloped_content as parsed by parse_pki_message (decrypt_inner does not parse it again)
    envelope: object = field(default=None, compare=False, repr=False)

    @property
    def uses_sha1(self) -> bool:
        return DigestAlgorithm.SHA1 in (self.digest_algorithm, self.signature_digest)

    @property
    def signer_is_self_signed(self) -> bool:
        return self.signer_certificate.issuer == self.signer_certificate.subject


# --- parsing ------------------------------------------------------------------


def _string_attr(parsed: cms_signed.ParsedSignedData, name: str) -> tuple[str, str] | None:
    value = parsed.attribute(name)
    if value is None:
        return None
    return value.native, value.name


def _enum_attr(parsed: cms_signed.ParsedSignedData, name: str, enum: type) -> object | None:
    raw = _string_attr(parsed, name)
    if raw is None:
        return None
    try:
        return enum(int(raw[0].strip()))
    except ValueError as exc:
        raise UndecodableRequest(f"bad {name} value {raw[0]!r}") from exc


def _bytes_attr(parsed: cms_signed.ParsedSignedData, name: str) -> bytes | None:
    value = parsed.attribute(name)
    return None if value is None else value.native


def parse_pki_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> PkiMessage:
    """Parse and authenticate a pkiMessage (BER accepted).

    Raises UndecodableRequest when no reply can be addressed (not CMS, no signer
    certificate, no messageType/transactionID/senderNonce); ScepError with
    ``request`` set for bad signatures (badMessageCheck) and algorithms we
    cannot verify (badAlg).
    """
    if len(data) > max_size:
        raise UndecodableRequest(f"pkiMessage of {len(data)} bytes exceeds {max_size}")
    fast = _parse_fast(data)
    if fast is not None:
        return fast
    try:
        parsed = cms_signed.load_signed_data(data)
    except cms_signed.MalformedSignedData as exc:
        raise UndecodableRequest(str(exc)) from exc
    if parsed.signer_certificate is None:
        raise UndecodableRequest("signer certificate not included in the pkiMessage")
    try:
        message_type = _enum_attr(parsed, "scep_message_type", MessageType)
        tx = _string_attr(parsed, "scep_transaction_id")
        sender_nonce = _bytes_attr(parsed, "scep_sender_nonce")
        recipient_nonce = _bytes_attr(parsed, "scep_recipient_nonce")
        pki_status = _enum_attr(parsed, "scep_pki_status", PKIStatus)
        fail_info = _enum_attr(parsed, "scep_fail_info", FailInfo)
        text = parsed.attribute("scep_fail_info_text")
        signing_time = parsed.attribute("signing_time")
    except (ValueError, TypeError, AttributeError) as exc:  # a value of the wrong ASN.1 type
        raise UndecodableRequest(f"bad SCEP attribute: {exc}") from exc
    if message_type is None or tx is None:
        raise UndecodableRequest("messageType and transactionID are required")
    assert isinstance(message_type, MessageType)
    if message_type in REQUEST_TYPES and not sender_nonce:
        raise UndecodableRequest("senderNonce is required")
    if message_type is MessageType.CertRep and pki_status is None:
        raise UndecodableRequest("CertRep without pkiStatus")
    content = parsed.content
    algs = envelope = None
    if content is not None:
        try:
            envelope = cms_envelope.load_enveloped_data(content)
            algs = cms_envelope.envelope_algorithms(envelope)
        except cms_envelope.MalformedEnvelope:
            algs = envelope = None
    msg = PkiMessage(
        message_type=message_type,
        transaction_id=tx[0],
        transaction_id_string_type=tx[1],
        sender_nonce=sender_nonce or b"",
        recipient_nonce=recipient_nonce,
        pki_status=pki_status,  # type: ignore[arg-type]
        fail_info=fail_info,  # type: ignore[arg-type]
        fail_info_text=None if text is None else text.native,
        signer_certificate=parsed.signer_certificate,
        certificates=parsed.certificates,
        digest_algorithm=parsed.digest_algorithm,
        digest_algorithm_oid=parsed.digest_algorithm_oid,
        signature_algorithm=parsed.signature_algorithm,
        signature_digest=None,
        signing_time=None if signing_time is None else signing_time.native,
        enveloped_content=content,
        envelope_algorithms=algs,
        envelope=envelope,
        signature_verified=False,
    )
    try:
        sig_digest = cms_signed.verify_signature(parsed)
    except UnsupportedAlgorithm as exc:
        raise ScepError(FailInfo.badAlg, str(exc), request=msg) from exc
    except cms_signed.SignatureInvalid as exc:
        raise ScepError(FailInfo.badMessageCheck, str(exc), request=msg) from exc
    return replace(msg, signature_digest=sig_digest, signature_verified=True)


_ENUM_ATTRIBUTES: tuple[tuple[str, type], ...] = (
    ("scep_message_type", MessageType), ("scep_pki_status", PKIStatus),
    ("scep_fail_info", FailInfo))


def _parse_fast(data: bytes) -> PkiMessage | None:
    """`parse_pki_message` for a plain DER pkiMessage that verifies (cms_fast), or None:
    anything else (BER, unusual shapes, a missing attribute, a bad signature...) goes the
    asn1crypto way, which raises what it always raised."""
    fast = cms_fast.parse_signed(data)
    if fast is None:
        return None
    attrs = fast.attributes
    enums: dict[str, object] = {}
    for name, enum in _ENUM_ATTRIBUTES:
        raw = attrs.get(name)
        if raw is not None:
            try:
                enums[name] = enum(int(raw[0].strip()))  # type: ignore[index]
            except ValueError:
                return None
    message_type = enums.get("scep_message_type")
    tx = attrs.get("scep_transaction_id")
    sender_nonce = attrs.get("scep_sender_nonce")
    if message_type is None or tx is None or (
            message_type in REQUEST_TYPES and not sender_nonce) or (
            message_type is MessageType.CertRep and "scep_pki_status" not in enums):
        return None
    md = attrs.get("message_digest")
    content_type = attrs.get("content_type")
    if md is None or (content_type is not None and content_type != cms_fast.ID_DATA):
        return None
    if md != cms_signed.digest(fast.digest_algorithm, fast.content):
        return None
    try:
        certs = tuple(cms_signed.load_certificate(c) for c in fast.certificates)
    except ValueError:
        return None
    signer = certs[fast.signer_index]
    if not cms_signed.verify_rsa(signer, fast.signature, fast.signed_attrs, fast.signature_hash):
        return None
    envelope: object = cms_fast.parse_enveloped(fast.content)
    if envelope is not None:
        algs: EnvelopeAlgorithms | None = cms_envelope.envelope_algorithms(envelope)  # type: ignore[arg-type]
    else:
        try:
            envelope = cms_envelope.load_enveloped_data(fast.content)
            algs = cms_envelope.envelope_algorithms(envelope)  # type: ignore[arg-type]
        except cms_envelope.MalformedEnvelope:
            algs = envelope = None
    assert isinstance(message_type, MessageType)
    return PkiMessage(
        message_type=message_type,
        transaction_id=tx[0],  # type: ignore[index]
        transaction_id_string_type=tx[1],  # type: ignore[index]
        sender_nonce=sender_nonce or b"",  # type: ignore[arg-type]
        recipient_nonce=attrs.get("scep_recipient_nonce"),  # type: ignore[arg-type]
        pki_status=enums.get("scep_pki_status"),  # type: ignore[arg-type]
        fail_info=enums.get("scep_fail_info"),  # type: ignore[arg-type]
        fail_info_text=attrs.get("scep_fail_info_text"),  # type: ignore[arg-type]
        signer_certificate=signer,
        certificates=certs,
        digest_algorithm=fast.digest_algorithm,
        digest_algorithm_oid=fast.digest_algorithm_oid,
        signature_algorithm=fast.signature_algorithm,
        signature_digest=fast.signature_hash,
        signing_time=attrs.get("signing_time"),  # type: ignore[arg-type]
        enveloped_content=fast.content,
        envelope_algorithms=algs,
        envelope=envelope,
    )


def check_signing_time(msg: PkiMessage, now: datetime.datetime, skew: datetime.timedelta) -> None:
    """badTime if signingTime is present and further than ``skew`` from ``now``."""
    if msg.signing_time is not None and abs(msg.signing_time - now) > skew:
        raise ScepError(FailInfo.badTime, f"signingTime {msg.signing_time.isoformat()}", request=msg)


def check_algorithms(
    msg: PkiMessage,
    algorithms: EnvelopeAlgorithms | None = None,
    *,
    legacy: bool = False,
    policy: AlgorithmPolicy | None = None,
) -> None:
    """AlgorithmRefused (badAlg) for a SignedData digest, signature digest or content cipher
    ``policy`` does not allow (default: AES + SHA-2; ``legacy``: also 3DES, DES, SHA-1).
    MD5 never."""
    if policy is None:
        policy = AlgorithmPolicy(LEGACY_CIPHERS, LEGACY_DIGESTS) if legacy else AlgorithmPolicy()
    policy.check_digest(msg.digest_algorithm, "SignedData", msg)
    policy.check_digest(msg.signature_digest, "SignerInfo signature", msg)
    algorithms = algorithms or msg.envelope_algorithms
    policy.check_cipher(algorithms.cipher if algorithms is not None else None, msg)


def decrypt_inner(msg: PkiMessage, ra_cert: x509.Certificate, ra_key: rsa.RSAPrivateKey) -> Decrypted:
    """Open the pkcsPKIEnvelope. Errors are ScepError (badMessageCheck / badAlg)."""
    if msg.enveloped_content is None:
        raise ScepError(FailInfo.badRequest, "no pkcsPKIEnvelope", request=msg)
    try:
        envelope = msg.envelope if msg.envelope is not None else msg.enveloped_content
        return cms_envelope.decrypt(envelope, ra_cert, ra_key)  # type: ignore[arg-type]
    except UnsupportedAlgorithm as exc:
        raise ScepError(FailInfo.badAlg, str(exc), request=msg) from exc
    except cms_envelope.MalformedEnvelope as exc:
        raise ScepError(FailInfo.badMessageCheck, str(exc), request=msg) from exc
    except cms_envelope.DecryptionFailed as exc:
        # One uniform answer whatever went wrong (no padding oracle).
        raise ScepError(FailInfo.badMessageCheck, "cannot decrypt", request=msg) from exc


# --- replies ------------------------------------------------------------------


def reply_digest(request_digest: DigestAlgorithm | None, legacy: bool = False) -> DigestAlgorithm:
    """The request's digest, floored at SHA-256 unless ``legacy``; MD5 never."""
    if request_digest is None or request_digest is DigestAlgorithm.MD5:
        return DigestAlgorithm.SHA256
    if legacy or request_digest.strength >= DigestAlgorithm.SHA256.strength:
        return request_digest
    return DigestAlgorithm.SHA256


def reply_cipher(request_cipher: ContentCipher | None, legacy: bool = False) -> ContentCipher:
    """The request's cipher, floored at AES-128 unless ``legacy`` (then DES/3DES stay)."""
    if request_cipher is None:
        return ContentCipher.AES256_CBC
    if request_cipher.is_aes or legacy:
        return request_cipher
    return ContentCipher.AES128_CBC


def _attr(name: str, value: object) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": name, "values": [value]})


def _printable(value: str) -> ScepString:
    return ScepString(name="printable_string", value=value)


def _printable_attr(name: str, value: str) -> bytes:
    return der.attribute(name, der.tlv(der.PRINTABLE_STRING, value.encode("latin-1")))


def _transaction_id_attr(request: PkiMessage) -> bytes:
    kind, value = request.transaction_id_string_type, request.transaction_id
    if kind == "printable_string":
        return _printable_attr("scep_transaction_id", value)
    if kind == "utf8_string":
        return der.attribute("scep_transaction_id", der.tlv(der.UTF8_STRING, value.encode()))
    return _attr("scep_transaction_id", ScepString(name=kind, value=value)).dump()


def _build_cert_rep(
    request: PkiMessage,
    status: PKIStatus,
    ra_cert: x509.Certificate,
    ra_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    opts: ReplyOptions,
    *,
    inner: bytes | None = None,
    fail_info: FailInfo | None = None,
    fail_info_text: str | None = None,
) -> bytes:
    attrs = [  # DER (enrollment.der), what the asn1crypto attributes encode to
        _printable_attr("scep_message_type", str(int(MessageType.CertRep))),
        _printable_attr("scep_pki_status", str(int(status))),
        _transaction_id_attr(request),
        der.attribute("scep_recipient_nonce", der.octet_string(request.sender_nonce)),
        der.attribute("scep_sender_nonce",
                      der.octet_string(opts.sender_nonce or os.urandom(NONCE_SIZE))),
    ]
    if fail_info is not None:
        attrs.append(_printable_attr("scep_fail_info", str(int(fail_info))))
    if fail_info_text is not None:
        attrs.append(der.attribute("scep_fail_info_text",
                                   der.tlv(der.UTF8_STRING, fail_info_text.encode())))
    content: bytes | None = None
    if inner is not None:
        algs = opts.algorithms or request.envelope_algorithms
        kt = opts.key_transport or (algs.key_transport if algs else None) or KeyTransport.RSA_PKCS1V15
        chosen = opts.cipher or reply_cipher(algs.cipher if algs else None, opts.legacy)
        try:
            content = cms_envelope.encrypt(inner, request.signer_certificate, chosen, kt)
        except UnsupportedAlgorithm as exc:
            raise ScepError(FailInfo.badAlg, str(exc), request=request) from exc
    elif not opts.omit_content:
        # RFC 8894 says FAILURE/PENDING carry no content, but certmonger's
        # PKCS7_verify() fails "no content" on that; an empty eContent (what
        # micromdm sends) satisfies both.
        content = b""
    return cms_signed.build_signed_data(
        content,
        ra_cert,
        ra_key,
        opts.digest or reply_digest(request.digest_algorithm, opts.legacy),
        attrs,
        certificates=opts.ra_chain,
        signing_time=opts.now,
    )


@dataclass(frozen=True)
class ReplyOptions:
    """How to build a CertRep. Defaults follow the request (RFC 8894 §3.3.2).

    algorithms: what decrypt_inner() reported (else the envelope's header).
    cipher / key_transport / digest: override the choice derived from the request.
    legacy: allow DES/3DES and SHA-1 replies (otherwise floored at AES-128/SHA-256).
    ra_chain: extra certificates for the outer SignedData (the RA cert is always in).
    now: adds signingTime. sender_nonce: fixed nonce (tests), else 16 random bytes.
    omit_content: FAILURE/PENDING with no eContent at all (RFC-literal; certmonger
    cannot read it) instead of an empty one.
    """

    algorithms: EnvelopeAlgorithms | None = None
    cipher: ContentCipher | None = None
    key_transport: KeyTransport | None = None
    digest: DigestAlgorithm | None = None
    legacy: bool = False
    ra_chain: tuple[x509.Certificate, ...] = ()
    now: datetime.datetime | None = None
    sender_nonce: bytes | None = None
    omit_content: bool = False


_DEFAULT_OPTIONS = ReplyOptions()
_RaKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def build_cert_rep_success(
    request: PkiMessage,
    certificates: Sequence[x509.Certificate],
    ra_cert: x509.Certificate,
    ra_key: _RaKey,
    options: ReplyOptions = _DEFAULT_OPTIONS,
) -> bytes:
    """CertRep SUCCESS: degenerate certs-only SignedData enveloped to the request signer.

    ``certificates`` keep their order (issued cert first; clients take the first).
    """
    if not certificates:
        raise ValueError("SUCCESS needs at least one certificate")
    inner = cms_signed.degenerate_signed_data(certificates)
    return _build_cert_rep(request, PKIStatus.SUCCESS, ra_cert, ra_key, options, inner=inner)


def build_cert_rep_crl(
    request: PkiMessage,
    crl: x509.CertificateRevocationList | bytes,
    ra_cert: x509.Certificate,
    ra_key: _RaKey,
    options: ReplyOptions = _DEFAULT_OPTIONS,
) -> bytes:
    """CertRep SUCCESS for GetCRL: the CRL in a degenerate SignedData's ``crls``."""
    inner = cms_signed.degenerate_signed_data(crls=[crl])
    return _build_cert_rep(request, PKIStatus.SUCCESS, ra_cert, ra_key, options, inner=inner)


def build_cert_rep_failure(
    request: PkiMessage,
    fail_info: FailInfo,
    ra_cert: x509.Certificate,
    ra_key: _RaKey,
    fail_info_text: str | None = None,
    options: ReplyOptions = _DEFAULT_OPTIONS,
) -> bytes:
    """CertRep FAILURE. Works on a ScepError's unverified, undecrypted ``request``."""
    return _build_cert_rep(
        request,
        PKIStatus.FAILURE,
        ra_cert,
        ra_key,
        options,
        fail_info=fail_info,
        fail_info_text=fail_info_text,
    )


def build_cert_rep_pending(
    request: PkiMessage,
    ra_cert: x509.Certificate,
    ra_key: _RaKey,
    options: ReplyOptions = _DEFAULT_OPTIONS,
) -> bytes:
    """CertRep PENDING."""
    return _build_cert_rep(request, PKIStatus.PENDING, ra_cert, ra_key, options)


def degenerate_certificates(
    certificates: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList | bytes] = (),
) -> bytes:
    """Certs-only PKCS#7 (GetCACert ``application/x-x509-ca-ra-cert``), order kept."""
    return cms_signed.degenerate_signed_data(certificates, crls)
