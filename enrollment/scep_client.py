"""Pure SCEP client-side message builder and CertRep reader.

For unit tests and benchmarks only: it exercises the server codec with every
algorithm combination. Integration tests drive real clients (scepclient,
certmonger, PyScep) instead.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
from dataclasses import dataclass

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from enrollment import cms_envelope, cms_signed
from enrollment.cms_ber import to_indefinite_ber
from enrollment.scep_codec import NONCE_SIZE, PkiMessage, parse_pki_message
from enrollment.scep_inner import _IssuerAndSubject
from enrollment.scep_types import (
    ContentCipher,
    DigestAlgorithm,
    FailInfo,
    KeyTransport,
    MessageType,
    PKIStatus,
    ScepString,
)

__all__ = [
    "CertRepResult",
    "ClientRequest",
    "RequestOptions",
    "build_cert_poll",
    "build_get_cert",
    "build_get_crl",
    "build_pkcs_req",
    "build_request",
    "parse_cert_rep",
    "self_signed_signer",
    "transaction_id_for",
]

_Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class RequestOptions:
    """Algorithm and encoding choices for a request (defaults: SCEPStandard)."""

    cipher: ContentCipher = ContentCipher.AES128_CBC
    key_transport: KeyTransport = KeyTransport.RSA_PKCS1V15
    digest: DigestAlgorithm = DigestAlgorithm.SHA256
    sender_nonce: bytes | None = None
    signing_time: datetime.datetime | None = None
    ber: bool = False  # Apple-style indefinite lengths and chunked OCTET STRINGs


_DEFAULT = RequestOptions()


@dataclass(frozen=True)
class ClientRequest:
    der: bytes
    message_type: MessageType
    transaction_id: str
    sender_nonce: bytes


@dataclass(frozen=True)
class CertRepResult:
    status: PKIStatus
    fail_info: FailInfo | None
    fail_info_text: str | None
    certificates: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...]
    algorithms: cms_envelope.EnvelopeAlgorithms | None
    message: PkiMessage


def transaction_id_for(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    """scepclient 2.1.0 style: base64(SHA-256(subjectPublicKey)[:20]).

    subjectPublicKey is the SPKI BIT STRING's contents (PKCS#1 RSAPublicKey for
    RSA), not the whole SPKI; older micromdm used SHA-1 over the same bytes.
    Checked against tests/vectors/scep/scepclient-2.1.0-pkcsreq.der.
    """
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    bits = asn1_x509.PublicKeyInfo.load(spki)["public_key"].contents[1:]
    return base64.b64encode(hashlib.sha256(bits).digest()[:20]).decode()


def self_signed_signer(
    key: _Key,
    subject: x509.Name,
    now: datetime.datetime,
    lifetime: datetime.timedelta = datetime.timedelta(hours=1),
) -> x509.Certificate:
    """The throw-away self-signed cert a first PKCSReq is signed with (RFC 8894 §2.3)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .sign(key, hashes.SHA256())
    )


def build_request(
    message_type: MessageType,
    inner: bytes,
    signer_cert: x509.Certificate,
    signer_key: _Key,
    recipient: x509.Certificate,
    *,
    transaction_id: str,
    options: RequestOptions = _DEFAULT,
) -> ClientRequest:
    """Any pkiMessage request: envelope ``inner`` to ``recipient``, sign, optionally BER."""
    o = options
    nonce = o.sender_nonce if o.sender_nonce is not None else os.urandom(NONCE_SIZE)
    envelope = cms_envelope.encrypt(inner, recipient, o.cipher, o.key_transport)
    if o.ber:
        envelope = to_indefinite_ber(envelope)
    attrs = [
        cms.CMSAttribute(
            {
                "type": "scep_message_type",
                "values": [ScepString(name="printable_string", value=str(int(message_type)))],
            }
        ),
        cms.CMSAttribute(
            {
                "type": "scep_transaction_id",
                "values": [ScepString(name="printable_string", value=transaction_id)],
            }
        ),
        cms.CMSAttribute({"type": "scep_sender_nonce", "values": [nonce]}),
    ]
    der = cms_signed.build_signed_data(
        envelope, signer_cert, signer_key, o.digest, attrs, signing_time=o.signing_time
    )
    if o.ber:
        der = to_indefinite_ber(der)
    return ClientRequest(der, message_type, transaction_id, nonce)


def build_pkcs_req(
    csr: x509.CertificateRequest,
    signer_cert: x509.Certificate,
    signer_key: _Key,
    recipient: x509.Certificate,
    *,
    renewal: bool = False,
    transaction_id: str | None = None,
    options: RequestOptions = _DEFAULT,
) -> ClientRequest:
    """PKCSReq (or RenewalReq) carrying ``csr``; transactionID from the CSR key."""
    return build_request(
        MessageType.RenewalReq if renewal else MessageType.PKCSReq,
        csr.public_bytes(Encoding.DER),
        signer_cert,
        signer_key,
        recipient,
        transaction_id=transaction_id or transaction_id_for(csr.public_key()),  # type: ignore[arg-type]
        options=options,
    )


def _asn1_name(name: x509.Name) -> asn1_x509.Name:
    return asn1_x509.Name.load(name.public_bytes())


def build_cert_poll(
    issuer: x509.Name,
    subject: x509.Name,
    signer_cert: x509.Certificate,
    signer_key: _Key,
    recipient: x509.Certificate,
    *,
    transaction_id: str,
    options: RequestOptions = _DEFAULT,
) -> ClientRequest:
    """CertPoll (GetCertInitial): IssuerAndSubject, same transactionID as the PKCSReq."""
    inner = _IssuerAndSubject({"issuer": _asn1_name(issuer), "subject": _asn1_name(subject)})
    return build_request(
        MessageType.CertPoll,
        inner.dump(),
        signer_cert,
        signer_key,
        recipient,
        transaction_id=transaction_id,
        options=options,
    )


def _issuer_and_serial(issuer: x509.Name, serial: int) -> bytes:
    return cms.IssuerAndSerialNumber({"issuer": _asn1_name(issuer), "serial_number": serial}).dump()


def build_get_cert(
    issuer: x509.Name,
    serial: int,
    signer_cert: x509.Certificate,
    signer_key: _Key,
    recipient: x509.Certificate,
    *,
    transaction_id: str | None = None,
    options: RequestOptions = _DEFAULT,
) -> ClientRequest:
    return build_request(
        MessageType.GetCert,
        _issuer_and_serial(issuer, serial),
        signer_cert,
        signer_key,
        recipient,
        transaction_id=transaction_id or os.urandom(16).hex(),
        options=options,
    )


def build_get_crl(
    issuer: x509.Name,
    serial: int,
    signer_cert: x509.Certificate,
    signer_key: _Key,
    recipient: x509.Certificate,
    *,
    transaction_id: str | None = None,
    options: RequestOptions = _DEFAULT,
) -> ClientRequest:
    return build_request(
        MessageType.GetCRL,
        _issuer_and_serial(issuer, serial),
        signer_cert,
        signer_key,
        recipient,
        transaction_id=transaction_id or os.urandom(16).hex(),
        options=options,
    )


def _read_degenerate(
    der: bytes,
) -> tuple[tuple[x509.Certificate, ...], tuple[x509.CertificateRevocationList, ...]]:
    info = cms.ContentInfo.load(der)
    if info["content_type"].native != "signed_data":
        raise ValueError("CertRep content is not a degenerate SignedData")
    sd = info["content"]
    certs = tuple(
        x509.load_der_x509_certificate(c.chosen.dump()) for c in sd["certificates"] if c.name == "certificate"
    )
    crls = tuple(x509.load_der_x509_crl(c.chosen.dump()) for c in sd["crls"] if c.name == "crl")
    return certs, crls


def parse_cert_rep(
    der: bytes,
    client_cert: x509.Certificate,
    client_key: rsa.RSAPrivateKey,
    *,
    ra_cert: x509.Certificate | None = None,
    request: ClientRequest | None = None,
) -> CertRepResult:
    """Verify a CertRep (signature; signer = ``ra_cert``; nonces and transactionID
    against ``request``) and open a SUCCESS envelope with the client key.

    Raises ValueError on any mismatch, ScepError/UndecodableRequest from parsing.
    """
    msg = parse_pki_message(der)
    if msg.message_type is not MessageType.CertRep or msg.pki_status is None:
        raise ValueError(f"not a CertRep: {msg.message_type.name}")
    if ra_cert is not None and msg.signer_certificate.public_key() != ra_cert.public_key():
        raise ValueError("CertRep not signed by the RA")
    if request is not None:
        if msg.transaction_id != request.transaction_id:
            raise ValueError("transactionID not echoed")
        if msg.recipient_nonce != request.sender_nonce:
            raise ValueError("recipientNonce != our senderNonce")
    certs: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    algs = None
    if msg.pki_status is PKIStatus.SUCCESS:
        if msg.enveloped_content is None:
            raise ValueError("SUCCESS without content")
        opened = cms_envelope.decrypt(msg.enveloped_content, client_cert, client_key)
        algs = opened.algorithms
        certs, crls = _read_degenerate(opened.content)
    elif msg.pki_status is PKIStatus.FAILURE and msg.fail_info is None:
        raise ValueError("FAILURE without failInfo")
    return CertRepResult(
        status=msg.pki_status,
        fail_info=msg.fail_info,
        fail_info_text=msg.fail_info_text,
        certificates=certs,
        crls=crls,
        algorithms=algs,
        message=msg,
    )
