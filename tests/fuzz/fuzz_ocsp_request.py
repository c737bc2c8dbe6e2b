"""Fuzz the OCSP responder core (revocation/ocsp.py). The first byte picks the form:

- even: the rest is a DER OCSPRequest (the POST body) fed to ``answer``;
- odd: the rest (latin-1) is a GET path tail: ``decode_get`` refuses it only with
  MalformedRequest (the HTTP layer answers malformedRequest), else its DER goes to
  ``answer``.

Invariants: ``answer`` never raises for peer input; malformed / unauthorized answers
are exactly the unsigned malformedRequest / unauthorized bytes; ``requested_serial``
is None only when the answer is malformed (the async shell relies on it); a
successful answer parses back with cryptography, is SUCCESSFUL, names the requested
serial, CertID hashes and algorithm, carries the status ``lookup`` gave, echoes the
nonce, and its signature verifies under the group intermediate. The PKI (EC P-256
root, two group intermediates, leaves) is built once at import; only successful
answers sign (one ECDSA signature each).
"""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import NameOID

from revocation import ocsp

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
REVOKED_AT = dt.datetime(2026, 11, 1, 8, 30, tzinfo=dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, serial: int, ca: bool) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )
    return builder.sign(issuer_key, hashes.SHA256())


ROOT_KEY = ec.derive_private_key(0x0C5B, ec.SECP256R1())
GROUP_KEYS = {"staff": ec.derive_private_key(0x5747, ec.SECP256R1()),
              "guests": ec.derive_private_key(0x6E57, ec.SECP256R1())}
INTERMEDIATES = {g: _cert(f"{g} CA", k, "root", ROOT_KEY, 100 + i, ca=True)
                 for i, (g, k) in enumerate(GROUP_KEYS.items())}
SIGNERS = ocsp.SignerTable({g: (INTERMEDIATES[g], GROUP_KEYS[g]) for g in GROUP_KEYS})
LEAF_KEY = ec.derive_private_key(0x1EAF, ec.SECP256R1())
LEAVES = [(_cert(f"leaf{s}", LEAF_KEY, "staff CA", GROUP_KEYS["staff"], s, ca=False), "staff")
          for s in (3, 4, 5)]
LEAVES.append((_cert("g7", LEAF_KEY, "guests CA", GROUP_KEYS["guests"], 7, ca=False), "guests"))
STRANGER = _cert("stranger CA", LEAF_KEY, "root", ROOT_KEY, 99, ca=True)  # no group

MALFORMED = ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
UNAUTHORIZED = ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.UNAUTHORIZED)


def _status(group: str, serial: int) -> ocsp.CertStatus:
    pick = (serial + len(group)) % 4
    if pick == 0:
        return ocsp.GOOD
    if pick == 1:
        return ocsp.Revoked(REVOKED_AT, "keyCompromise")
    if pick == 2:
        return ocsp.Revoked(REVOKED_AT, None)
    return ocsp.UNKNOWN


_EXPECTED_STATUS = {ocsp.Good: x509_ocsp.OCSPCertStatus.GOOD,
                    ocsp.Revoked: x509_ocsp.OCSPCertStatus.REVOKED,
                    ocsp.Unknown: x509_ocsp.OCSPCertStatus.UNKNOWN}


def _check_answer(der: bytes) -> None:
    asked: list[tuple[str, int]] = []

    def lookup(group: str, serial: int) -> ocsp.CertStatus:
        asked.append((group, serial))
        return _status(group, serial)

    result = ocsp.answer(der, lookup, SIGNERS, NOW)
    serial = ocsp.requested_serial(der)
    if serial is None:
        assert result.outcome is ocsp.Outcome.MALFORMED, (result.outcome, "requested_serial None")
    if result.outcome is ocsp.Outcome.MALFORMED:
        assert result.der == MALFORMED and not asked and result.serial is None
        return
    assert serial is not None and result.serial == serial, (serial, result.serial)
    if result.outcome is ocsp.Outcome.UNAUTHORIZED:
        assert result.der == UNAUTHORIZED and not asked
        return

    request = x509_ocsp.load_der_ocsp_request(der)
    assert asked == [(result.group, serial)], asked
    status = _status(result.group, serial)
    assert result.outcome.value == type(status).__name__.lower(), (result.outcome, status)
    response = x509_ocsp.load_der_ocsp_response(result.der)
    assert response.response_status is x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.serial_number == serial
    assert response.issuer_name_hash == request.issuer_name_hash
    assert response.issuer_key_hash == request.issuer_key_hash
    assert response.hash_algorithm.name == request.hash_algorithm.name
    assert response.certificate_status is _EXPECTED_STATUS[type(status)]
    assert response.next_update_utc == result.next_update == NOW + ocsp.DEFAULT_VALIDITY
    if isinstance(status, ocsp.Revoked):
        assert response.revocation_time_utc == REVOKED_AT
        expected_reason = x509.ReasonFlags.key_compromise if status.reason else None
        assert response.revocation_reason == expected_reason, response.revocation_reason
    try:
        asked_nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        asked_nonce = None
    try:
        nonce = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        nonce = None
    assert nonce == asked_nonce, (nonce, asked_nonce)
    INTERMEDIATES[result.group].public_key().verify(
        response.signature, response.tbs_response_bytes,
        ec.ECDSA(response.signature_hash_algorithm))


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode % 2 == 0:
        _check_answer(rest)
        return
    try:
        der = ocsp.decode_get(rest.decode("latin-1"))
    except ocsp.MalformedRequest:
        return
    assert der
    _check_answer(der)


def _request(cert, issuer, algorithm, nonce: bytes | None) -> bytes:
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _seeds() -> list[bytes]:
    ders = []
    for i, (leaf, group) in enumerate(LEAVES):
        issuer = INTERMEDIATES[group]
        for algorithm in (hashes.SHA1(), hashes.SHA256(), hashes.SHA512()):
            ders.append(_request(leaf, issuer, algorithm, None))
            ders.append(_request(leaf, issuer, algorithm, bytes(range(i, i + 16))))
    ders.append(_request(LEAVES[0][0], STRANGER, hashes.SHA1(), None))  # unauthorized
    ders.append(_request(LEAVES[0][0], INTERMEDIATES["staff"], hashes.SHA1(), b"\x00" * 33))
    ders.append(_request(LEAVES[1][0], INTERMEDIATES["staff"], hashes.SHA1(), b"\x01"))
    seeds = [b"\x00" + d for d in ders]
    for d in ders[:6]:
        b64 = base64.b64encode(d)
        seeds.append(b"\x01" + b64)
        seeds.append(b"\x01/" + base64.urlsafe_b64encode(d).rstrip(b"="))
        seeds.append(b"\x01" + quote(b64.decode(), safe="").encode())
    seeds += [b"\x00", b"\x00\x30\x00", b"\x01", b"\x01%zz", b"\x01MA=="]
    return seeds


SEEDS = _seeds()

if __name__ == "__main__":
    from tests.fuzz._harness import run

    run("ocsp_request", one_input, SEEDS)
