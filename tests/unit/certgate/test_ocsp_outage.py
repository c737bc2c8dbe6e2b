"""OCSP while the store is down: answered from this node's memory, never guessed."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import NameOID

from certgate.revocation_http import RevocationHttp
from certgate.revocations import PublishedCrl
from revocation.crl_der import build_crl_der
from revocation.issued import IssuedIndex
from revocation.snapshot import RevocationIndex
from store import StoreUnavailable

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(NOW)
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


class DownStore:
    async def get(self, serial: int) -> None:
        raise StoreUnavailable("get", "ConnectionRefusedError")


class Feed:
    def __init__(self) -> None:
        self.is_closed = False

    def closed(self) -> bool:
        return self.is_closed


def _request(ca: x509.Certificate, serial: int) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return (x509_ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(*_hashes(ca), serial, hashes.SHA1())
            .build().public_bytes(Encoding.DER))


def _hashes(ca: x509.Certificate) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    name_hash = hashes.Hash(hashes.SHA1())
    name_hash.update(ca.subject.public_bytes())
    spki = x509.load_der_x509_certificate(ca.public_bytes(Encoding.DER)).public_key()
    raw = spki.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    key_hash = hashes.Hash(hashes.SHA1())
    key_hash.update(raw)
    return name_hash.finalize(), key_hash.finalize()


def _http() -> tuple[RevocationHttp, Feed]:
    staff, staff_key = _ca("staff CA")
    crl_der = build_crl_der(staff, staff_key, [(0x20, NOW, "keyCompromise"),
                                               (0x21, NOW, "certificateHold")],
                            5, NOW, NOW + dt.timedelta(days=1))
    feed = Feed()
    runtime = SimpleNamespace(
        store=DownStore(),
        pki=SimpleNamespace(groups={"staff": SimpleNamespace(certificate=staff, key=staff_key)}),
        settings=SimpleNamespace(revocation=SimpleNamespace(ocsp_validity_minutes=60, ocsp_reuse_seconds=60)),
        groups=SimpleNamespace(names=lambda: ["staff"]),
        revoked=RevocationIndex([("staff", 0x20), ("staff", 0x21), ("staff", 0x22)]),
        issued=IssuedIndex([("staff", 0x10), ("staff", 0x20), ("staff", 0x21), ("staff", 0x22)]),
        services={"feed": feed},
    )
    crls = SimpleNamespace(current={"staff": PublishedCrl(crl_der, 5, NOW,
                                                          NOW + dt.timedelta(days=1), 2)})
    http = RevocationHttp(runtime, crls)  # type: ignore[arg-type]
    http.ca = staff  # type: ignore[attr-defined]
    return http, feed


async def _status(http: RevocationHttp, serial: int) -> x509_ocsp.OCSPResponse:
    response = await http._answer(_request(http.ca, serial))  # type: ignore[attr-defined]
    assert response.status == 200
    return x509_ocsp.load_der_ocsp_response(response.body)


async def test_known_certificates_are_answered_from_memory() -> None:
    http, _ = _http()
    good = await _status(http, 0x10)
    assert good.response_status is x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    assert good.certificate_status is x509_ocsp.OCSPCertStatus.GOOD
    revoked = await _status(http, 0x20)
    assert revoked.certificate_status is x509_ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_reason is x509.ReasonFlags.key_compromise
    assert revoked.revocation_time_utc == NOW
    held = await _status(http, 0x21)
    assert held.revocation_reason is x509.ReasonFlags.certificate_hold


async def test_what_the_node_cannot_vouch_for_is_try_later() -> None:
    http, feed = _http()
    unknown = await _status(http, 0x99)  # never seen: maybe issued elsewhere, no guess
    assert unknown.response_status is x509_ocsp.OCSPResponseStatus.TRY_LATER
    not_in_crl = await _status(http, 0x22)  # revoked, but no time/reason to give
    assert not_in_crl.response_status is x509_ocsp.OCSPResponseStatus.TRY_LATER
    feed.is_closed = True  # past outage_grace (closed): good is no longer vouched for
    assert (await _status(http, 0x10)).response_status is x509_ocsp.OCSPResponseStatus.TRY_LATER
    revoked = await _status(http, 0x20)  # revoked stays revoked
    assert revoked.certificate_status is x509_ocsp.OCSPCertStatus.REVOKED


def test_published_crl_entry_lookup() -> None:
    http, _ = _http()
    crl = http.crls.current["staff"]
    assert crl.entry(0x20) == (NOW, "keyCompromise")
    assert crl.entry(0x21) == (NOW, "certificateHold")
    assert crl.entry(0x10) is None
