"""A throwaway PKI (root -> two group intermediates -> leaves) and an openssl runner."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Real wall-clock time: openssl checks OCSP thisUpdate/nextUpdate against it.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certgate tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(subject, subject_key, issuer, issuer_key, serial, *, ca: bool, path_len=None):
    pub = subject_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(pub)
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=3650 if ca else 365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
    )
    signer_pub = (issuer_key if issuer_key is not None else subject_key).public_key()
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_pub), critical=False
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
    else:
        builder = (
            builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject.rfc4514_string().split("=")[-1])]),
                critical=False,
            )
        )
    return builder.sign(issuer_key if issuer_key is not None else subject_key, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    dir: Path
    root: x509.Certificate
    root_key: object
    staff: x509.Certificate  # group intermediate (EC P-256)
    staff_key: object
    guests: x509.Certificate  # second group intermediate (RSA 2048)
    guests_key: object
    leaf: x509.Certificate  # issued by staff
    leaf2: x509.Certificate  # issued by staff
    guest_leaf: x509.Certificate  # issued by guests

    def path(self, name: str) -> Path:
        return self.dir / name


def _write(path: Path, *certs: x509.Certificate) -> None:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert(_name("Test Root"), root_key, None, None, 1, ca=True)
    staff_key = ec.generate_private_key(ec.SECP256R1())
    staff = _cert(_name("Staff CA"), staff_key, root, root_key, 2, ca=True, path_len=0)
    guests_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    guests = _cert(_name("Guests CA"), guests_key, root, root_key, 3, ca=True, path_len=0)
    leaf = _cert(
        _name("laptop-1"),
        ec.generate_private_key(ec.SECP256R1()),
        staff,
        staff_key,
        0x1001,
        ca=False,
    )
    leaf2 = _cert(
        _name("laptop-2"),
        ec.generate_private_key(ec.SECP256R1()),
        staff,
        staff_key,
        0x1002,
        ca=False,
    )
    guest_leaf = _cert(
        _name("phone-1"),
        ec.generate_private_key(ec.SECP256R1()),
        guests,
        guests_key,
        0x2001,
        ca=False,
    )
    _write(d / "root.pem", root)
    _write(d / "staff.pem", staff)
    _write(d / "guests.pem", guests)
    _write(d / "leaf.pem", leaf)
    _write(d / "leaf2.pem", leaf2)
    _write(d / "guest_leaf.pem", guest_leaf)
    _write(d / "chain-staff.pem", staff, root)
    return Pki(d, root, root_key, staff, staff_key, guests, guests_key, leaf, leaf2, guest_leaf)


@pytest.fixture(scope="session")
def openssl():
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("openssl CLI not installed")

    def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"openssl {' '.join(map(str, args))} -> {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    return run


@pytest.fixture(scope="session")
def now() -> dt.datetime:
    """The instant the test PKI was built around (certificates valid 30 days either side)."""
    return NOW
