"""CertRep and GetCACert read by OpenSSL 3 (what certmonger and sscep link against)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization

from enrollment import scep_client, scep_codec
from enrollment.scep_codec import ReplyOptions
from enrollment.scep_types import ContentCipher, DigestAlgorithm, FailInfo, KeyTransport

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
PEM = serialization.Encoding.PEM


def _run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([OPENSSL, *args], input=stdin, capture_output=True, check=False)


@pytest.fixture
def files(tmp_path, pki):
    paths = {
        "ca": tmp_path / "ca.pem",
        "signer": tmp_path / "signer.pem",
        "client_key": tmp_path / "client.key.pem",
    }
    paths["ca"].write_bytes(pki.ca_cert.public_bytes(PEM))
    paths["signer"].write_bytes(pki.signer.public_bytes(PEM))
    paths["client_key"].write_bytes(
        pki.client_key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return {k: str(v) for k, v in paths.items()}


def _request(pki, **opts):
    req = scep_client.build_pkcs_req(
        pki.csr,
        pki.signer,
        pki.client_key,
        pki.ra_cert,
        options=scep_client.RequestOptions(**opts),
    )
    return scep_codec.parse_pki_message(req.der)


@pytest.mark.parametrize(
    ("cipher", "kt", "digest"),
    [
        (ContentCipher.AES128_CBC, KeyTransport.RSA_PKCS1V15, DigestAlgorithm.SHA256),
        (ContentCipher.AES256_CBC, KeyTransport.RSA_PKCS1V15, DigestAlgorithm.SHA512),
        (ContentCipher.AES256_CBC, KeyTransport.RSA_OAEP_SHA1, DigestAlgorithm.SHA256),
        (ContentCipher.AES128_CBC, KeyTransport.RSA_OAEP_SHA256, DigestAlgorithm.SHA256),
        (ContentCipher.DES3_CBC, KeyTransport.RSA_PKCS1V15, DigestAlgorithm.SHA1),
    ],
)
def test_openssl_verifies_and_decrypts_success(tmp_path, pki, files, cipher, kt, digest) -> None:
    msg = _request(pki, cipher=cipher, key_transport=kt, digest=digest)
    issued = pki.issue()
    rep = tmp_path / "certrep.der"
    rep.write_bytes(
        scep_codec.build_cert_rep_success(msg, [issued], pki.ra_cert, pki.ra_key, ReplyOptions(now=pki.now))
    )
    # 1. Signature, signed-attribute encoding (OpenSSL re-encodes the SET) and
    #    the RA chain to the test CA.
    verified = _run(
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        str(rep),
        "-CAfile",
        files["ca"],
        "-purpose",
        "any",
        "-attime",
        str(int(pki.now.timestamp())),
        "-binary",
    )
    assert verified.returncode == 0, verified.stderr.decode()
    # 2. The pkcsPKIEnvelope opens with the client key.
    opened = _run(
        "cms",
        "-decrypt",
        "-inform",
        "DER",
        "-recip",
        files["signer"],
        "-inkey",
        files["client_key"],
        "-binary",
        stdin=verified.stdout,
    )
    assert opened.returncode == 0, opened.stderr.decode()
    # 3. ... and holds a degenerate PKCS#7 with the issued certificate.
    certs = _run("pkcs7", "-inform", "DER", "-print_certs", "-noout", stdin=opened.stdout)
    assert certs.returncode == 0, certs.stderr.decode()
    assert "subject=CN = dev-01" in certs.stdout.decode()


def test_openssl_reads_crl_reply(pki, files) -> None:
    msg = _request(pki)
    rep = scep_codec.build_cert_rep_crl(msg, pki.crl(), pki.ra_cert, pki.ra_key)
    verified = _run(
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-CAfile",
        files["ca"],
        "-purpose",
        "any",
        "-attime",
        str(int(pki.now.timestamp())),
        "-binary",
        stdin=rep,
    )
    assert verified.returncode == 0, verified.stderr.decode()
    opened = _run(
        "cms",
        "-decrypt",
        "-inform",
        "DER",
        "-recip",
        files["signer"],
        "-inkey",
        files["client_key"],
        "-binary",
        stdin=verified.stdout,
    )
    assert opened.returncode == 0, opened.stderr.decode()
    printed = _run("pkcs7", "-inform", "DER", "-print_certs", "-noout", stdin=opened.stdout)
    assert printed.returncode == 0, printed.stderr.decode()
    assert "Certificate Revocation List" in printed.stdout.decode()
    assert "Serial Number: 1092" in printed.stdout.decode()  # 4242


@pytest.mark.parametrize("api", ["cms", "smime"])
def test_failure_reply_verifies_with_both_openssl_apis(pki, files, api) -> None:
    """`smime` is OpenSSL's PKCS7_verify(), the API certmonger uses."""
    msg = _request(pki)
    rep = scep_codec.build_cert_rep_failure(msg, FailInfo.badRequest, pki.ra_cert, pki.ra_key)
    out = _run(
        api,
        "-verify",
        "-inform",
        "DER",
        "-CAfile",
        files["ca"],
        "-purpose",
        "any",
        "-attime",
        str(int(pki.now.timestamp())),
        "-binary",
        stdin=rep,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == b""


def test_rfc_literal_failure_without_content_trips_pkcs7_verify(pki, files) -> None:
    """Why omit_content is off by default: PKCS7_verify() says 'no content'."""
    msg = _request(pki)
    rep = scep_codec.build_cert_rep_failure(
        msg,
        FailInfo.badRequest,
        pki.ra_cert,
        pki.ra_key,
        options=ReplyOptions(omit_content=True),
    )
    out = _run(
        "smime",
        "-verify",
        "-inform",
        "DER",
        "-CAfile",
        files["ca"],
        "-purpose",
        "any",
        "-attime",
        str(int(pki.now.timestamp())),
        stdin=rep,
    )
    assert out.returncode != 0
    assert b"no content" in out.stderr


def test_getcacert_degenerate_pkcs7(pki) -> None:
    der = scep_codec.degenerate_certificates([pki.ra_cert, pki.ca_cert])
    out = _run("pkcs7", "-inform", "DER", "-print_certs", "-noout", stdin=der)
    assert out.returncode == 0, out.stderr.decode()
    subjects = [line for line in out.stdout.decode().splitlines() if line.startswith("subject=")]
    assert subjects == ["subject=CN = certgate test RA", "subject=CN = certgate test CA"]
