"""Fixtures for the SCEP codec tests: the committed test RA, a client key, a CSR."""

from __future__ import annotations

import datetime
import pathlib
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AttributeOID, NameOID

from enrollment import scep_client

VECTORS = pathlib.Path(__file__).parents[3] / "vectors" / "scep"
NOW = datetime.datetime(2026, 11, 22, 12, 0, 0, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Pki:
    ra_cert: x509.Certificate
    ra_key: rsa.RSAPrivateKey
    ca_cert: x509.Certificate
    client_key: rsa.RSAPrivateKey
    subject: x509.Name
    csr: x509.CertificateRequest
    signer: x509.Certificate  # self-signed over the CSR key (first PKCSReq)
    now: datetime.datetime = NOW
    vectors: pathlib.Path = VECTORS

    @staticmethod
    def make_csr(key, cn: str = "dev-01", challenge: str | None = "secret123"):  # noqa: ANN001, ANN205
        return make_csr(key, cn, challenge)

    def vector(self, name: str) -> bytes:
        return (self.vectors / name).read_bytes()

    def load_key(self, name: str):  # noqa: ANN201
        return load_key(name)

    def load_cert(self, name: str) -> x509.Certificate:
        return load_cert(name)

    def issue(self, csr: x509.CertificateRequest | None = None) -> x509.Certificate:
        """A device cert 'issued' by the RA key (issuance is not the codec's job)."""
        csr = csr or self.csr
        return (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.ra_cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW)
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .sign(self.ra_key, hashes.SHA256())
        )

    def crl(self) -> x509.CertificateRevocationList:
        revoked = x509.RevokedCertificateBuilder().serial_number(4242).revocation_date(NOW).build()
        return (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ra_cert.subject)
            .last_update(NOW)
            .next_update(NOW + datetime.timedelta(days=1))
            .add_revoked_certificate(revoked)
            .sign(self.ra_key, hashes.SHA256())
        )


def load_cert(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((VECTORS / name).read_bytes())


def load_key(name: str):  # noqa: ANN201 - any private key type
    return serialization.load_pem_private_key((VECTORS / name).read_bytes(), None)


def make_csr(key, cn: str = "dev-01", challenge: str | None = "secret123"):  # noqa: ANN001, ANN201
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(key, hashes.SHA256())


@pytest.fixture(scope="session")
def pki() -> Pki:
    client_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = make_csr(client_key)
    return Pki(
        ra_cert=load_cert("ra-test.cert.pem"),
        ra_key=load_key("ra-test.key.pem"),
        ca_cert=load_cert("ca-test.cert.pem"),
        client_key=client_key,
        subject=csr.subject,
        csr=csr,
        signer=scep_client.self_signed_signer(client_key, csr.subject, NOW),
    )


@pytest.fixture(scope="session")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())
