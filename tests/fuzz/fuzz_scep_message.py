"""Fuzz SCEP pkiMessage / CMS parsing (enrollment/scep_codec.py and the cms_* modules).

The first byte picks the mode; the rest is the input:

- 0 ``parse_pki_message`` on DER or BER bytes. A message that parses must expose
  consistent fields, parse the same after ``cms_ber.normalize`` (BER -> DER), and, when
  cms_fast took it, parse identically by the asn1crypto path;
- 1 the HTTP GET form: ``decode_get_message`` on a query string, then the parse. Also
  checks that base64 (standard, URL-safe, unpadded, percent-quoted) of the raw bytes
  decodes back to them;
- 2 the service's decode (``GroupCrypto._open``): parse, signing time, algorithms,
  decrypt with the RA key, inner parse, CSR facts, renewal classification; everything
  before a certificate is signed or a reply built;
- 3 the decrypted inner content (CSR / IssuerAndSubject / IssuerAndSerial), which mode
  0-2 only reach through a valid signature;
- 4 the pkcsPKIEnvelope alone: load, algorithms, decrypt with the RA key.

Refusals allowed: UndecodableRequest (HTTP 400) and ScepError (a signed CertRep
FAILURE with its failInfo); the envelope layer's MalformedEnvelope / DecryptionFailed /
UnsupportedAlgorithm, which decrypt_inner maps to badMessageCheck / badAlg.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import urllib.parse
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, NameOID

from certgate.scep_http import decode_get_message
from enrollment import cms_envelope, scep_client, scep_codec
from enrollment.algorithms import LEGACY_CIPHERS, LEGACY_DIGESTS
from enrollment.cms_ber import BerError, normalize, to_indefinite_ber
from enrollment.policy import CsrRejected, extract_csr_facts
from enrollment.scep_client import RequestOptions
from enrollment.scep_crypto import GroupCrypto, Opened
from enrollment.scep_enroll import ServiceConfig
from enrollment.scep_inner import IssuerAndSerial, IssuerAndSubject, _IssuerAndSubject
from enrollment.scep_types import (
    REQUEST_TYPES,
    FailInfo,
    MessageType,
    ScepError,
    UndecodableRequest,
    UnsupportedAlgorithm,
)
from pki.groups import Group, GroupTable
from pki.hierarchy import GroupCa

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "scep"
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def _cert(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((VECTORS / name).read_bytes())


def _key(name: str):  # noqa: ANN202 - RSA keys from the committed vectors
    return serialization.load_pem_private_key((VECTORS / name).read_bytes(), None)


RA_CERT = _cert("ra-test.cert.pem")
RA_KEY = _key("ra-test.key.pem")
CA_CERT = _cert("ca-test.cert.pem")
CLIENT_KEY = _key("certmonger-0.79.17-client.key.pem")
RENEW_KEY = _key("scepclient-2.1.0-renewal-client.key.pem")
assert isinstance(RA_KEY, rsa.RSAPrivateKey) and isinstance(CLIENT_KEY, rsa.RSAPrivateKey)

# The group CA is ca-test (its key is not in the vectors and is never used before a
# certificate is signed); legacy algorithms on and a wide clock skew so the captured
# SHA-1/DES vectors reach decryption and the inner parse.
CA = GroupCa("staff", CA_CERT, RA_KEY, RA_CERT, RA_KEY)
GROUPS = GroupTable([Group("staff", CA_CERT)])
CFG = ServiceConfig(group="staff", public_url="http://pki.test", ciphers=LEGACY_CIPHERS,
                    digests=LEGACY_DIGESTS, signing_time_skew=dt.timedelta(days=3650))
CRYPTO = GroupCrypto(CFG, CA, GROUPS)
ENVELOPE_ERRORS = (cms_envelope.MalformedEnvelope, cms_envelope.DecryptionFailed,
                   UnsupportedAlgorithm)
INNER_TYPES = (MessageType.PKCSReq, MessageType.CertPoll, MessageType.GetCert, MessageType.GetCRL)


def _csr(key: rsa.RSAPrivateKey, cn: str, sans: tuple[str, ...] = ()) -> x509.CertificateSigningRequest:
    b = (x509.CertificateSigningRequestBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .add_attribute(AttributeOID.CHALLENGE_PASSWORD, b"secret123"))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), False)
    return b.sign(key, hashes.SHA256())


def _build_seeds() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(pkiMessages, inner contents, envelopes)."""
    csr = _csr(CLIENT_KEY, "dev-01", ("dev-01.example.com",))
    signer = scep_client.self_signed_signer(CLIENT_KEY, csr.subject, NOW)
    opts = RequestOptions(signing_time=NOW, sender_nonce=b"n" * 16)
    ber = dataclasses.replace(opts, ber=True)
    messages = [
        scep_client.build_pkcs_req(csr, signer, CLIENT_KEY, RA_CERT, options=opts).der,
        scep_client.build_pkcs_req(csr, signer, CLIENT_KEY, RA_CERT, options=ber).der,
        scep_client.build_pkcs_req(csr, signer, CLIENT_KEY, RA_CERT, renewal=True,
                                   options=opts).der,
        scep_client.build_cert_poll(CA_CERT.subject, csr.subject, signer, CLIENT_KEY, RA_CERT,
                                    transaction_id="tx-poll", options=opts).der,
        scep_client.build_get_cert(CA_CERT.subject, 4242, signer, CLIENT_KEY, RA_CERT,
                                   options=opts).der,
        scep_client.build_get_crl(CA_CERT.subject, 4242, signer, CLIENT_KEY, RA_CERT,
                                  options=ber).der,
    ]
    messages += [(VECTORS / n).read_bytes() for n in (
        "certmonger-0.79.17-pkcsreq.der", "certmonger-0.79.17-getcertinitial.der",
        "scepclient-2.1.0-pkcsreq.der", "scepclient-2.1.0-renewalreq.der")]
    inner = [
        csr.public_bytes(Encoding.DER),
        scep_client._issuer_and_serial(CA_CERT.subject, 4242),  # noqa: SLF001
    ]
    inner.append(_IssuerAndSubject({"issuer": asn1_x509.Name.load(CA_CERT.subject.public_bytes()),
                                    "subject": asn1_x509.Name.load(csr.subject.public_bytes())
                                    }).dump())
    envelopes = [cms_envelope.encrypt(inner[0], RA_CERT, scep_codec.ContentCipher.AES128_CBC,
                                      scep_codec.KeyTransport.RSA_PKCS1V15)]
    envelopes.append(to_indefinite_ber(envelopes[0]))
    return messages, inner, envelopes


_MESSAGES, _INNER, _ENVELOPES = _build_seeds()


def _get_query(der: bytes) -> bytes:
    return b"operation=PKIOperation&message=" + urllib.parse.quote(
        base64.b64encode(der).decode(), safe="").encode()


SEEDS: list[bytes] = (
    [b"\x00" + m for m in _MESSAGES]
    + [b"\x01" + _get_query(m) for m in _MESSAGES[:2]]
    + [b"\x01message=" + base64.urlsafe_b64encode(_MESSAGES[6]).rstrip(b"=")]
    + [b"\x02" + m for m in _MESSAGES]
    + [b"\x03" + bytes([i]) + inner for i, inner in ((0, _INNER[0]), (2, _INNER[1]),
                                                      (3, _INNER[1]), (1, _INNER[2]))]
    + [b"\x04" + e for e in _ENVELOPES]
)


# --- invariants -------------------------------------------------------------------------


def _check_message(msg: scep_codec.PkiMessage) -> None:
    assert isinstance(msg.message_type, MessageType)
    assert isinstance(msg.transaction_id, str)
    assert msg.signature_verified
    assert isinstance(msg.signer_certificate, x509.Certificate)
    if msg.message_type in REQUEST_TYPES:
        assert msg.sender_nonce, "request without senderNonce accepted"
    if msg.message_type is MessageType.CertRep:
        assert msg.pki_status is not None, "CertRep without pkiStatus accepted"
    if msg.envelope_algorithms is not None:
        assert msg.enveloped_content is not None


def _fields(msg: scep_codec.PkiMessage) -> tuple:
    return (msg.message_type, msg.transaction_id, msg.transaction_id_string_type,
            msg.sender_nonce, msg.recipient_nonce, msg.pki_status, msg.fail_info,
            msg.fail_info_text, msg.signer_certificate, msg.certificates, msg.digest_algorithm,
            msg.digest_algorithm_oid, msg.signature_digest, msg.signing_time,
            msg.enveloped_content, msg.envelope_algorithms)


def _check_error(exc: ScepError) -> None:
    assert isinstance(exc.fail_info, FailInfo)
    assert exc.request is None or isinstance(exc.request, scep_codec.PkiMessage)


def _parse(data: bytes) -> scep_codec.PkiMessage | None:
    try:
        msg = scep_codec.parse_pki_message(data)
    except UndecodableRequest:
        return None
    except ScepError as exc:
        _check_error(exc)
        # A refusal that still addresses a reply carries the parsed, unverified message.
        assert isinstance(exc.request, scep_codec.PkiMessage)
        assert not exc.request.signature_verified
        assert exc.fail_info in (FailInfo.badAlg, FailInfo.badMessageCheck)
        return None
    _check_message(msg)
    return msg


def _mode_parse(data: bytes) -> None:
    msg = _parse(data)
    if msg is None:
        return
    try:
        der = normalize(data)
    except BerError as exc:
        raise AssertionError(f"parsed, but normalize refuses it: {exc}") from exc
    if der != data:
        again = _parse(der)
        assert again is not None, "BER message parses, its DER normalisation does not"
        assert _fields(again) == _fields(msg), "BER and DER parses differ"
    if scep_codec._parse_fast(data) is not None:  # noqa: SLF001 - differential vs asn1crypto
        original = scep_codec._parse_fast  # noqa: SLF001
        scep_codec._parse_fast = lambda _data: None  # noqa: SLF001
        try:
            slow = scep_codec.parse_pki_message(data)
        finally:
            scep_codec._parse_fast = original  # noqa: SLF001
        assert _fields(slow) == _fields(msg), "cms_fast and asn1crypto parses differ"


def _mode_get(data: bytes) -> None:
    for encoded in (base64.b64encode(data).decode(),
                    urllib.parse.quote(base64.b64encode(data).decode(), safe=""),
                    base64.urlsafe_b64encode(data).decode().rstrip("=")):
        assert decode_get_message(f"operation=PKIOperation&message={encoded}") == data
    query = data.decode("latin-1")
    try:
        body = decode_get_message(query)
    except UndecodableRequest:
        return
    assert isinstance(body, bytes)
    _parse(body)


def _mode_open(data: bytes) -> None:
    try:
        opened = CRYPTO._open(data, NOW)  # noqa: SLF001 - open() minus the signed FAILURE
    except UndecodableRequest:
        return
    except ScepError as exc:
        _check_error(exc)
        return
    assert isinstance(opened, Opened)
    mtype = opened.reply_to.message_type
    assert mtype in REQUEST_TYPES
    if opened.enroll is not None:
        assert mtype in (MessageType.PKCSReq, MessageType.RenewalReq)
        assert opened.refusal is None
        x509.load_der_x509_csr(opened.enroll.csr_der)
    if mtype is MessageType.GetCert:
        assert isinstance(opened.serial, int)


def _mode_inner(data: bytes) -> None:
    if not data:
        return
    mtype = INNER_TYPES[data[0] % len(INNER_TYPES)]
    try:
        inner = scep_codec.parse_inner(mtype, data[1:])
    except ScepError as exc:
        _check_error(exc)
        assert exc.fail_info in (FailInfo.badRequest, FailInfo.badAlg)
        return
    if mtype is MessageType.PKCSReq:
        assert isinstance(inner, x509.CertificateSigningRequest)
        try:
            facts = extract_csr_facts(inner)
        except CsrRejected:
            return
        assert facts is not None
        with contextlib.suppress(ValueError):  # challenge_password's documented refusal
            scep_codec.challenge_password(inner)
    elif mtype is MessageType.CertPoll:
        assert isinstance(inner, IssuerAndSubject)
        inner.subject.rfc4514_string()
        assert scep_codec.name_from_der(inner.issuer_der) == inner.issuer
    else:
        assert isinstance(inner, IssuerAndSerial)
        assert isinstance(inner.serial_number, int)
        inner.issuer.rfc4514_string()


def _mode_envelope(data: bytes) -> None:
    try:
        env = cms_envelope.load_enveloped_data(data)
        algs = cms_envelope.envelope_algorithms(env)
        assert algs is not None
        decrypted = cms_envelope.decrypt(env, RA_CERT, RA_KEY)
    except ENVELOPE_ERRORS:
        return
    assert isinstance(decrypted.content, bytes)


MODES = (_mode_parse, _mode_get, _mode_open, _mode_inner, _mode_envelope)


def one_input(data: bytes) -> None:
    if not data:
        return
    MODES[data[0] % len(MODES)](data[1:])


if __name__ == "__main__":
    from tests.fuzz._harness import run

    run("scep_message", one_input, SEEDS)
