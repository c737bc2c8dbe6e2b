"""Hierarchy.load_issuer: one group's intermediate and key, the RSA primality test skipped but
the key's numbers checked, and every signature verified before a certificate is returned."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pki.errors import PkiError
from pki.hierarchy import Hierarchy, Issuer
from pki.issuance import sign_device
from pki.keys import generate_key, load_private_key, write_private_key
from pki.profiles import name

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Pki:
    dir: Path
    key_type: str = "ec-p256"
    organization: str = "test"
    root_common_name: str = "test root"
    root_validity_days: int = 3650
    intermediate_validity_days: int = 1825
    server_name: str = "radius.test"
    server_validity_days: int = 365
    ra_key_type: str = "rsa-2048"
    passphrase_env: str | None = None
    passphrase_file: Path | None = None


@dataclass(frozen=True)
class Group:
    name: str
    ca_key_type: str | None = None
    vlan: str | None = None
    filter_id: str | None = None
    class_value: str | None = None
    session_timeout: int | None = None


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Hierarchy:
    h = Hierarchy(Pki(tmp_path_factory.mktemp("pki") / "pki"))
    h.init((Group("rsa", "rsa-2048"), Group("ec")), NOW)
    return h


def _sign(issuer: Issuer) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return sign_device(key.public_key(), name("dev"), [], issuer, "http://127.0.0.1:1", 0x1234,
                       NOW, 30)


@pytest.mark.parametrize("group", ["rsa", "ec"])
def test_load_issuer_signs_verifiable_certificates(hierarchy: Hierarchy, group: str) -> None:
    issuer = hierarchy.load_issuer(group)
    assert issuer.certificate == hierarchy.load_certificates_only((Group(group),))[group]
    cert = _sign(issuer)
    cert.verify_directly_issued_by(issuer.certificate)
    assert cert.issuer == issuer.certificate.subject


def test_unknown_group_names_the_fix(hierarchy: Hierarchy) -> None:
    with pytest.raises(PkiError, match="group nope has no intermediate CA yet: run `certgate init`"):
        hierarchy.load_issuer("nope")


def _write_pem(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.unlink(missing_ok=True)
    write_private_key(path, key, None)


def test_damaged_rsa_numbers_are_refused_without_the_primality_test(tmp_path: Path) -> None:
    good = rsa.generate_private_key(65537, 2048)
    n = good.private_numbers()
    bad = rsa.RSAPrivateNumbers(n.p, n.q, n.d, n.dmp1 ^ 2, n.dmq1, n.iqmp, n.public_numbers)
    path = tmp_path / "ca.key"
    _write_pem(path, bad.private_key(unsafe_skip_rsa_key_validation=True))
    with pytest.raises(PkiError, match=r"ca.key is damaged \(its RSA numbers do not fit"):
        load_private_key(path, None, check_primes=False)
    with pytest.raises(PkiError, match="is not a PEM private key"):  # OpenSSL's full check
        load_private_key(path, None)
    _write_pem(path, good)
    assert load_private_key(path, None, check_primes=False).private_numbers() == n


def test_key_that_does_not_match_the_certificate(hierarchy: Hierarchy, tmp_path: Path) -> None:
    other = Hierarchy(Pki(tmp_path / "pki"))
    other.init((Group("rsa", "rsa-2048"),), NOW)
    key = other.group_dir("rsa") / "ca.key"
    key.unlink()
    key.write_bytes((hierarchy.group_dir("rsa") / "ca.key").read_bytes())
    key.chmod(0o600)
    with pytest.raises(PkiError, match="ca.key does not match .*ca.crt: restore the pair"):
        other.load_issuer("rsa")


def test_a_signature_that_does_not_verify_issues_nothing(hierarchy: Hierarchy) -> None:
    rsa_ca, ec_ca = hierarchy.load_issuer("rsa"), hierarchy.load_issuer("ec")
    crossed = Issuer("rsa", rsa_ca.certificate, generate_key("rsa-2048"))
    with pytest.raises(PkiError, match="group rsa: a signature by its CA key does not verify"):
        _sign(crossed)
    with pytest.raises(PkiError, match="does not verify"):
        _sign(Issuer("ec", ec_ca.certificate, generate_key("ec-p256")))


def test_encrypted_key_loads_with_its_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    key = rsa.generate_private_key(65537, 2048)
    write_private_key(path, key, b"secret passphrase")
    assert b"ENCRYPTED" in path.read_bytes()
    loaded = load_private_key(path, b"secret passphrase", check_primes=False)
    assert loaded.private_numbers() == key.private_numbers()
    with pytest.raises(PkiError, match="wrong passphrase"):
        load_private_key(path, b"wrong", check_primes=False)
    assert serialization.load_pem_private_key(path.read_bytes(), b"secret passphrase")
