"""Keys, CSRs and a small CA hierarchy for the enrollment policy tests.

CSRs whose challengePassword uses a string type cryptography cannot emit are
assembled with a tiny independent DER writer + asn1crypto primitives and signed
with cryptography, so the parser under test is checked against bytes it did not
produce.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from types import ModuleType

import pytest
from asn1crypto import core as asn1
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime(2026, 11, 2, 12, 0, 0, tzinfo=UTC)
PRINTABLE = r"^[A-Za-z0-9 '()+,\-./:=?]+$"
UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


@cache
def ec_key(curve: str = "p256") -> ec.EllipticCurvePrivateKey:
    curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1(),
              "k256": ec.SECP256K1()}
    return ec.generate_private_key(curves[curve])


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@cache
def rsa_key(bits: int = 2048, exponent: int = 65537) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=exponent, key_size=bits)


@cache
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _hash_for(key: object) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def upn(value: str) -> x509.OtherName:
    return x509.OtherName(UPN_OID, asn1.UTF8String(value).dump())


def make_csr(
    key: object | None = None,
    *,
    cn: str | None = "dev-01.example.com",
    sans: Sequence[x509.GeneralName] = (),
    ekus: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    ca: bool | None = False,
    challenge: str | None = None,
    challenge_tag: x509.name._ASN1Type | None = None,
    extra_attrs: Sequence[str] = (),
) -> x509.CertificateSigningRequest:
    key = key or ec_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    if challenge is not None:
        kw = {"_tag": challenge_tag} if challenge_tag is not None else {}
        builder = builder.add_attribute(
            x509.oid.AttributeOID.CHALLENGE_PASSWORD, challenge.encode(), **kw
        )
    return builder.sign(key, _hash_for(key))  # type: ignore[arg-type]


# --- independent DER writer for CSRs with arbitrary challengePassword encodings ---


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def raw_challenge_csr(
    challenge_values_der: Sequence[bytes],
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    cn: str = "dev-01.example.com",
    attribute_count: int = 1,
) -> bytes:
    """DER CSR (ecdsa-with-SHA256) whose challengePassword SET holds the given DER values."""
    key = key or ec_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]).public_bytes()
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    oid = asn1.ObjectIdentifier("1.2.840.113549.1.9.7").dump()
    attr = tlv(0x30, oid + tlv(0x31, b"".join(challenge_values_der)))
    cri = tlv(0x30, asn1.Integer(0).dump() + subject + spki + tlv(0xA0, attr * attribute_count))
    sig = key.sign(cri, ec.ECDSA(hashes.SHA256()))
    alg = tlv(0x30, asn1.ObjectIdentifier("1.2.840.10045.4.3.2").dump())
    return tlv(0x30, cri + alg + tlv(0x03, b"\x00" + sig))


# --- CA hierarchy ---


def _cert(
    subject: str,
    key: object,
    issuer: x509.Certificate | None,
    issuer_key: object,
    *,
    ca: bool,
    not_before: datetime,
    not_after: datetime,
    issuer_name: x509.Name | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or (issuer.subject if issuer else name))
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return b.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]


class Pki:
    """root → staff / guest intermediates; device certs issued by staff."""

    def __init__(self) -> None:
        from pki.groups import Group, GroupTable

        start = NOW - timedelta(days=400)
        end = NOW + timedelta(days=4000)
        self.root_key = ec_key("p384")
        self.root = _cert("Root", self.root_key, None, self.root_key, ca=True,
                          not_before=start, not_after=end)
        self.staff_key = new_ec_key()
        self.staff_ca = _cert("Staff CA", self.staff_key, self.root, self.root_key, ca=True,
                              not_before=start, not_after=end)
        self.guest_key = new_ec_key()
        self.guest_ca = _cert("Guest CA", self.guest_key, self.root, self.root_key, ca=True,
                              not_before=start, not_after=end)
        self.staff = Group("staff", self.staff_ca)
        self.guest = Group("guest", self.guest_ca)
        self.groups = GroupTable([self.staff, self.guest])

    def device(
        self,
        cn: str = "dev-01.example.com",
        *,
        key: object | None = None,
        not_before: datetime = NOW - timedelta(days=300),
        not_after: datetime = NOW + timedelta(days=65),
        issuer: str = "staff",
    ) -> x509.Certificate:
        ca, ca_key = {
            "staff": (self.staff_ca, self.staff_key),
            "guest": (self.guest_ca, self.guest_key),
        }[issuer]
        return _cert(cn, key or ec_key(), ca, ca_key, ca=False,
                     not_before=not_before, not_after=not_after)

    def self_signed(self, cn: str = "dev-01.example.com") -> x509.Certificate:
        key = ec_key()
        return _cert(cn, key, None, key, ca=False, not_before=NOW - timedelta(hours=1),
                     not_after=NOW + timedelta(days=1))

    def rogue(self, cn: str = "dev-01.example.com") -> x509.Certificate:
        """Issuer DN copied from the staff CA, signed by an unrelated key."""
        rogue_key = new_ec_key()
        return _cert(cn, ec_key(), None, rogue_key, ca=False, issuer_name=self.staff_ca.subject,
                     not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=30))


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki()


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture(scope="session")
def h() -> ModuleType:
    """The helpers above (test modules cannot import conftest under --import-mode=importlib)."""
    return sys.modules[__name__]
