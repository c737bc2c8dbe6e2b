"""Per-group SCEP algorithm policy through ScepService: what is advertised is what is
accepted, every refusal is a signed badAlg naming the algorithm (log + metric), and a
SHA-1-signed CSR enrolls where sha1 is allowed."""

from __future__ import annotations

import logging
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import REGISTRY

from enrollment.algorithms import DEFAULT_CIPHERS, DEFAULT_DIGESTS
from enrollment.policy import csr_signature_valid
from enrollment.scep_client import RequestOptions
from enrollment.scep_types import ContentCipher, DigestAlgorithm, FailInfo, PKIStatus

from .conftest import NOW, client_key, make_csr, sha1_resigned


def test_sha1_csr_signature_is_checked_not_assumed(tmp_path) -> None:
    """csr_signature_valid agrees with `openssl req -verify` on a SHA-1 CSR, good or forged."""
    key = client_key(24)
    good = make_csr(key, "sha1", None, hash_alg=hashes.SHA1())
    assert csr_signature_valid(good)
    other = sha1_resigned(make_csr(key, "sha1", None), client_key(25))  # signed by another key
    assert not csr_signature_valid(other)
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    for csr, ok in ((good, True), (other, False)):
        path = tmp_path / "r.der"
        path.write_bytes(csr.public_bytes(Encoding.DER))
        r = subprocess.run([openssl, "req", "-verify", "-noout", "-inform", "DER", "-in",
                            str(path)], capture_output=True, text=True, timeout=30)
        # OpenSSL 3.0 exits 0 either way; it says which
        assert ("self-signature verify OK" in r.stdout + r.stderr) is ok, r.stdout + r.stderr


def refusals(group: str, algorithm: str) -> float:
    return REGISTRY.get_sample_value("certgate_scep_algorithm_refusals_total",
                                     {"group": group, "algorithm": algorithm}) or 0.0


@pytest.mark.parametrize("cipher,digest,csr_hash,algorithm", [
    (ContentCipher.DES3_CBC, DigestAlgorithm.SHA256, hashes.SHA256(), "des3"),
    (ContentCipher.DES_CBC, DigestAlgorithm.SHA256, hashes.SHA256(), "des"),
    (ContentCipher.AES128_CBC, DigestAlgorithm.SHA1, hashes.SHA256(), "sha1"),
    (ContentCipher.AES128_CBC, DigestAlgorithm.SHA256, hashes.SHA1(), "sha1"),  # the CSR's
])
async def test_default_group_refuses_with_bad_alg_naming_it(make_harness, caplog, cipher, digest,
                                                            csr_hash, algorithm) -> None:
    h = await make_harness("algdefault")
    key = client_key(20)
    token = await h.challenge()
    before = refusals("algdefault", algorithm)
    with caplog.at_level(logging.WARNING, logger="certgate.scep"):
        rep, _ = await h.enroll(make_csr(key, "dev", token, hash_alg=csr_hash), key,
                                options=RequestOptions(cipher=cipher, digest=digest,
                                                       signing_time=NOW))
    assert rep.status is PKIStatus.FAILURE and rep.fail_info is FailInfo.badAlg
    assert refusals("algdefault", algorithm) == before + 1
    line = next(r.getMessage() for r in caplog.records if "fail_info=badAlg" in r.getMessage())
    assert f"algorithm={algorithm} " in line and "groups.algdefault.scep" in line, line
    # the refused request consumed nothing: the same challenge enrolls with AES + SHA-256
    rep, _ = await h.enroll(make_csr(key, "dev", token), key)
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text


async def test_3des_without_des_or_sha1(make_harness) -> None:
    """The narrow change for old 3DES clients: des3 allowed, single DES and SHA-1 still not."""
    h = await make_harness("alg3des", ciphers=(*DEFAULT_CIPHERS, "des3"))
    assert "DES3" in h.service.caps().split() and "SHA-1" not in h.service.caps().split()
    key = client_key(21)
    token = await h.challenge()
    rep, _ = await h.enroll(make_csr(key, "old", token), key, options=RequestOptions(
        cipher=ContentCipher.DES3_CBC, signing_time=NOW))
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text
    assert rep.algorithms.cipher is ContentCipher.AES128_CBC  # replies floored at AES-128
    for opts in (RequestOptions(cipher=ContentCipher.DES_CBC, signing_time=NOW),
                 RequestOptions(digest=DigestAlgorithm.SHA1, signing_time=NOW)):
        token = await h.challenge()
        rep, _ = await h.enroll(make_csr(key, "old", token), key, options=opts)
        assert rep.fail_info is FailInfo.badAlg


async def test_sha1_csr_enrolls_where_sha1_is_allowed(make_harness) -> None:
    """Issue 13 §3: a SHA-1-signed CSR (what strongSwan pki --digest sha1 sends) verifies."""
    h = await make_harness("algsha1", digests=(*DEFAULT_DIGESTS, "sha1"))
    assert "SHA-1" in h.service.caps().split()
    key = client_key(22)
    token = await h.challenge(subject_cn="sha1-dev")
    csr = make_csr(key, "sha1-dev", token, hash_alg=hashes.SHA1())
    assert csr.signature_hash_algorithm.name == "sha1"
    # the cause: cryptography >= 45 answers False for any SHA-1 signature...
    assert csr.is_signature_valid is False
    assert csr_signature_valid(csr)  # ...though it is valid
    rep, _ = await h.enroll(csr, key, options=RequestOptions(digest=DigestAlgorithm.SHA1,
                                                             signing_time=NOW))
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text
    assert rep.certificates[0].public_key() == key.public_key()
    # and the reply is SHA-256, not SHA-1
    assert rep.message.digest_algorithm is DigestAlgorithm.SHA256


async def test_restricted_group_advertises_and_accepts_exactly_its_lists(make_harness) -> None:
    h = await make_harness("algnarrow", ciphers=("aes256",), digests=("sha512",))
    assert h.service.caps().split() == ["POSTPKIOperation", "Renewal", "SHA-512", "AES"]
    key = client_key(23)
    token = await h.challenge()
    ok = RequestOptions(cipher=ContentCipher.AES256_CBC, digest=DigestAlgorithm.SHA512,
                        signing_time=NOW)
    rep, _ = await h.enroll(make_csr(key, "n", token, hash_alg=hashes.SHA512()), key, options=ok)
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text
    token = await h.challenge()
    rep, _ = await h.enroll(make_csr(key, "n", token), key, options=ok)  # CSR signed SHA-256
    assert rep.fail_info is FailInfo.badAlg


async def test_an_algorithm_certgate_does_not_implement_is_counted_as_other(make_harness) -> None:
    """An EC signer certificate: the reply could not be enveloped to it (RSA key transport
    only), so badAlg, labelled algorithm="other"."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from enrollment import scep_client

    h = await make_harness("algother")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr(key, "ec-dev", None)
    signer = scep_client.self_signed_signer(key, csr.subject, NOW)
    req = scep_client.build_pkcs_req(csr, signer, key, h.service.signer_cert,
                                     options=RequestOptions(signing_time=NOW))
    before = refusals("algother", "other")
    reply = await h.service.pki_operation(req.der)
    assert reply.result == "failure" and reply.reason == "badAlg"
    assert refusals("algother", "other") == before + 1
