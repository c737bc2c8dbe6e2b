"""EnvelopedData: every cipher x key transport, OpenSSL interop both ways, errors."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import serialization

from enrollment import cms_envelope
from enrollment.scep_types import ContentCipher, KeyTransport, UnsupportedAlgorithm

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
PAYLOAD = b"certgate envelope payload " * 7


@pytest.mark.parametrize("cipher", list(ContentCipher))
@pytest.mark.parametrize("kt", list(KeyTransport))
def test_round_trip(pki, cipher: ContentCipher, kt: KeyTransport) -> None:
    der = cms_envelope.encrypt(PAYLOAD, pki.ra_cert, cipher, kt)
    opened = cms_envelope.decrypt(der, pki.ra_cert, pki.ra_key)
    assert opened.content == PAYLOAD
    assert opened.algorithms.cipher is cipher
    assert opened.algorithms.key_transport is kt


def test_oaep_sha1_uses_default_parameters(pki) -> None:
    der = cms_envelope.encrypt(PAYLOAD, pki.ra_cert, key_transport=KeyTransport.RSA_OAEP_SHA1)
    env = cms.ContentInfo.load(der)["content"]
    kea = env["recipient_infos"][0].chosen["key_encryption_algorithm"]
    assert kea["algorithm"].dotted == "1.2.840.113549.1.1.7"
    assert kea["parameters"].dump() == b"\x30\x00"


def test_output_is_der(pki) -> None:
    der = cms_envelope.encrypt(PAYLOAD, pki.ra_cert)
    assert cms.ContentInfo.load(der).dump(force=True) == der


def test_wrong_recipient(pki, other_key) -> None:
    der = cms_envelope.encrypt(PAYLOAD, pki.signer)  # to the client, not the RA
    with pytest.raises(cms_envelope.DecryptionFailed):
        cms_envelope.decrypt(der, pki.ra_cert, pki.ra_key)


def test_wrong_key_same_cert(pki, other_key) -> None:
    der = cms_envelope.encrypt(PAYLOAD, pki.ra_cert)
    with pytest.raises(cms_envelope.DecryptionFailed):
        cms_envelope.decrypt(der, pki.ra_cert, other_key)


def test_tampered_ciphertext_fails_uniformly(pki) -> None:
    der = bytearray(cms_envelope.encrypt(PAYLOAD, pki.ra_cert, ContentCipher.AES128_CBC))
    der[-1] ^= 0x01  # last ciphertext block -> bad padding (almost always)
    with pytest.raises(cms_envelope.DecryptionFailed):
        cms_envelope.decrypt(bytes(der), pki.ra_cert, pki.ra_key)


def test_unknown_cipher_is_unsupported(pki) -> None:
    der = cms_envelope.encrypt(PAYLOAD, pki.ra_cert, ContentCipher.AES128_CBC)
    aes128_cbc = bytes.fromhex("0609608648016503040102")
    aes128_ecb = bytes.fromhex("0609608648016503040101")  # same length, not supported
    assert der.count(aes128_cbc) == 1
    with pytest.raises(UnsupportedAlgorithm, match="2.16.840.1.101.3.4.1.1"):
        cms_envelope.decrypt(der.replace(aes128_cbc, aes128_ecb), pki.ra_cert, pki.ra_key)


def test_not_an_envelope() -> None:
    with pytest.raises(cms_envelope.MalformedEnvelope):
        cms_envelope.load_enveloped_data(b"\x30\x03\x02\x01\x00")


def test_algorithms_reported_without_decrypting(pki) -> None:
    der = cms_envelope.encrypt(PAYLOAD, pki.ra_cert, ContentCipher.DES3_CBC, KeyTransport.RSA_OAEP_SHA256)
    algs = cms_envelope.envelope_algorithms(cms_envelope.load_enveloped_data(der))
    assert algs.cipher is ContentCipher.DES3_CBC
    assert algs.key_transport is KeyTransport.RSA_OAEP_SHA256
    assert algs.supported


def _write(tmp_path, pki) -> tuple[str, str]:
    cert = tmp_path / "ra.pem"
    key = tmp_path / "ra.key.pem"
    cert.write_bytes(pki.ra_cert.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        pki.ra_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert), str(key)


@needs_openssl
@pytest.mark.parametrize("cipher", list(ContentCipher))
@pytest.mark.parametrize(
    "kt", [KeyTransport.RSA_PKCS1V15, KeyTransport.RSA_OAEP_SHA1, KeyTransport.RSA_OAEP_SHA256]
)
def test_openssl_decrypts_ours(tmp_path, pki, cipher, kt) -> None:
    cert, key = _write(tmp_path, pki)
    src = tmp_path / "env.der"
    src.write_bytes(cms_envelope.encrypt(PAYLOAD, pki.ra_cert, cipher, kt))
    cmd = [OPENSSL, "cms", "-decrypt", "-inform", "DER", "-in", str(src)]
    cmd += ["-recip", cert, "-inkey", key]
    if cipher is ContentCipher.DES_CBC:  # OpenSSL 3 moved single DES to "legacy"
        cmd += ["-provider", "legacy", "-provider", "default"]
    out = subprocess.run(cmd, capture_output=True, check=False)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == PAYLOAD


@needs_openssl
@pytest.mark.parametrize(
    ("flag", "expected_cipher"),
    [
        ("-aes128", ContentCipher.AES128_CBC),
        ("-aes256", ContentCipher.AES256_CBC),
        ("-des3", ContentCipher.DES3_CBC),
    ],
)
@pytest.mark.parametrize(
    ("keyopts", "expected_kt"),
    [
        ([], KeyTransport.RSA_PKCS1V15),
        (["-keyopt", "rsa_padding_mode:oaep"], KeyTransport.RSA_OAEP_SHA1),
        (
            [
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-keyopt",
                "rsa_mgf1_md:sha256",
            ],
            KeyTransport.RSA_OAEP_SHA256,
        ),
    ],
)
def test_we_decrypt_openssl(tmp_path, pki, flag, expected_cipher, keyopts, expected_kt) -> None:
    cert, _ = _write(tmp_path, pki)
    src = tmp_path / "plain"
    src.write_bytes(PAYLOAD)
    cmd = [OPENSSL, "cms", "-encrypt", "-binary", "-outform", "DER", "-in", str(src), flag]
    cmd += ["-recip", cert, *keyopts]
    out = subprocess.run(cmd, capture_output=True, check=False)
    assert out.returncode == 0, out.stderr.decode()
    opened = cms_envelope.decrypt(out.stdout, pki.ra_cert, pki.ra_key)
    assert opened.content == PAYLOAD
    assert opened.algorithms.cipher is expected_cipher
    assert opened.algorithms.key_transport is expected_kt
