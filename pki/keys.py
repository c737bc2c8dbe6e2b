"""Private keys: generation, 0600 files, optional passphrase encryption.

Keys are never logged; errors name the file and the fix, never the content.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from pki.errors import PkiError

PrivateKey = CertificateIssuerPrivateKeyTypes


def generate_key(key_type: str) -> PrivateKey:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise ValueError(f"unknown key type {key_type!r}")


def describe_key(key: object) -> str:
    """'ec-p256', 'rsa-2048', ... for public or private keys."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}.get(
            key.curve.name, f"ec-{key.curve.name}"
        )
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    return type(key).__name__


def write_private_key(path: Path, key: PrivateKey, passphrase: bytes | None) -> None:
    """Write a PKCS#8 PEM key with mode 0600 from the first byte; never overwrite."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_private_key(path: Path, passphrase: bytes | None, *, check_primes: bool = True
                     ) -> PrivateKey:
    """A 0600 PEM key. `check_primes=False` (one-shot CLI signing) skips OpenSSL's primality
    test of an RSA key's p and q (~0.2 s per RSA-3072 key) but still checks that its numbers
    fit together (`_check_rsa_numbers`, microseconds); the signer then verifies what it signed
    (pki.issuance), so a damaged key file cannot produce a certificate."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PkiError(
            f"key file {path} is missing: run `certgate init` or restore it from backup"
        ) from None
    except OSError as exc:
        raise PkiError(f"cannot read key file {path}: {exc.strerror}") from None
    encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0]
    if encrypted and not passphrase:
        raise PkiError(
            f"key file {path} is encrypted: set [pki] passphrase_env or passphrase_file"
        )
    try:
        key = serialization.load_pem_private_key(data, passphrase if encrypted else None,
                                                 unsafe_skip_rsa_key_validation=not check_primes)
    except ValueError:
        if encrypted:
            raise PkiError(
                f"wrong passphrase for key file {path}: check [pki] passphrase_env/passphrase_file"
            ) from None
        raise PkiError(f"key file {path} is not a PEM private key") from None
    except TypeError:
        raise PkiError(f"key file {path} could not be decrypted") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PkiError(
            f"key file {path} has mode {mode:o}: run `chmod 600 {path}` (CA keys must be 0600)"
        )
    if not check_primes and isinstance(key, rsa.RSAPrivateKey) and not _check_rsa_numbers(key):
        raise PkiError(f"key file {path} is damaged (its RSA numbers do not fit together): "
                       "restore it from backup")
    return key  # type: ignore[return-value]


def _check_rsa_numbers(key: rsa.RSAPrivateKey) -> bool:
    """RSA_check_key without the primality tests: n = pq, the CRT exponents and coefficient
    agree with d, and e·d ≡ 1 modulo p-1 and q-1."""
    priv = key.private_numbers()
    pub = priv.public_numbers
    p, q = priv.p, priv.q
    if p <= 1 or q <= 1 or p * q != pub.n:
        return False
    return (priv.dmp1 == priv.d % (p - 1) and priv.dmq1 == priv.d % (q - 1)
            and pub.e * priv.dmp1 % (p - 1) == 1 and pub.e * priv.dmq1 % (q - 1) == 1
            and priv.iqmp * q % p == 1)
