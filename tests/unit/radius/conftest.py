"""Fixtures for the RADIUS/EAP-TLS unit tests: a throwaway ECDSA P-256 PKI.

Layout (all keys P-256):

    root ── staff CA ── staff-ok, staff-expired, staff-revoked, staff-serveronly, staff-cnonly
         ├─ guests CA ── guests-ok
         ├─ other CA (not a group) ── other-ok
         └─ server (serverAuth, SAN DNS radius.test)
    rogue root ── rogue staff CA (same DNs as root / staff CA, unrelated keys) ── rogue-ok

Certificates are valid around the real clock because OpenSSL checks validity at the
real time during the handshake.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki.groups import Group, GroupTable, ReplyAttributes
from radius.options import RadiusClient
from revocation.snapshot import RevocationIndex

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
SECRET = b"testing123"


def _name(cn: str, org: str = "certgate test") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: list[x509.Certificate] = field(default_factory=list)  # intermediates to send

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write NAME.pem (leaf + chain) and NAME.key; return their paths."""
        cert_path = directory / f"{name}.pem"
        key_path = directory / f"{name}.key"
        cert_path.write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [self.cert, *self.chain])
        )
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


def _ca(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: Issued | None,
    path_len: int | None,
) -> Issued:
    issuer_name = issuer.cert.subject if issuer else subject
    issuer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 10 * DAY)
        .not_valid_after(NOW + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    cert = builder.sign(issuer_key, hashes.SHA256())
    return Issued(cert, key, [])


def _leaf(
    issuer: Issued,
    cn: str,
    *,
    eku: list[x509.ObjectIdentifier],
    san: list[x509.GeneralName] | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key, [issuer.cert])


@dataclass
class TestPki:
    root: Issued
    staff_ca: Issued
    guests_ca: Issued
    other_ca: Issued
    rogue_root: Issued
    rogue_ca: Issued
    server: Issued
    clients: dict[str, Issued]
    groups: GroupTable
    revoked: RevocationIndex

    def write_bundle(self, directory: Path) -> dict[str, Path]:
        """PEM files for external tools (eapol_test)."""
        out: dict[str, Path] = {}
        ca = directory / "root.pem"
        ca.write_bytes(self.root.cert.public_bytes(serialization.Encoding.PEM))
        out["ca"] = ca
        for name, issued in self.clients.items():
            out[f"{name}.pem"], out[f"{name}.key"] = issued.write(directory, name)
        return out


def build_pki() -> TestPki:
    root = _ca(_name("certgate Test Root"), _key(), None, 1)
    staff = _ca(_name("certgate staff CA"), _key(), root, 0)
    guests = _ca(_name("certgate guests CA"), _key(), root, 0)
    other = _ca(_name("certgate other CA"), _key(), root, 0)
    rogue_root = _ca(_name("certgate Test Root"), _key(), None, 1)
    rogue_ca = _ca(_name("certgate staff CA"), _key(), rogue_root, 0)

    client_auth = [ExtendedKeyUsageOID.CLIENT_AUTH]
    server = _leaf(
        root,
        "radius.test",
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
        san=[x509.DNSName("radius.test")],
    )
    server.chain = []
    clients = {
        "staff-ok": _leaf(
            staff, "alice", eku=client_auth, san=[x509.RFC822Name("alice@example.test")]
        ),
        "staff-cnonly": _leaf(staff, "bob-laptop", eku=client_auth),
        "staff-expired": _leaf(
            staff,
            "carol",
            eku=client_auth,
            not_before=NOW - 30 * DAY,
            not_after=NOW - DAY,
        ),
        "staff-notyet": _leaf(
            staff, "dave", eku=client_auth, not_before=NOW + DAY, not_after=NOW + 30 * DAY
        ),
        "staff-revoked": _leaf(staff, "eve", eku=client_auth),
        "staff-serveronly": _leaf(staff, "frank", eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
        "guests-ok": _leaf(
            guests, "guest-1", eku=client_auth, san=[x509.DNSName("guest-1.example.test")]
        ),
        "other-ok": _leaf(other, "mallory", eku=client_auth),
        "rogue-ok": _leaf(
            rogue_ca, "alice", eku=client_auth, san=[x509.RFC822Name("alice@example.test")]
        ),
    }
    groups = GroupTable(
        [
            Group(
                "staff",
                staff.cert,
                ReplyAttributes(
                    vlan="10", filter_id="staff-acl", class_value="cg-staff", session_timeout=3600
                ),
            ),
            Group("guests", guests.cert, ReplyAttributes(vlan="20")),
        ]
    )
    revoked = RevocationIndex([("staff", clients["staff-revoked"].cert.serial_number)])
    return TestPki(
        root, staff, guests, other, rogue_root, rogue_ca, server, clients, groups, revoked
    )


_PKI: TestPki | None = None


@pytest.fixture(scope="session")
def pki() -> TestPki:
    global _PKI
    if _PKI is None:
        _PKI = build_pki()
    return _PKI


@pytest.fixture
def client() -> RadiusClient:
    return RadiusClient("nas1", ipaddress.ip_network("127.0.0.0/8"), SECRET)


@pytest.fixture
def dictionary_path() -> str:
    return str(Path(__file__).resolve().parents[3] / "config" / "dictionary.certgate")
