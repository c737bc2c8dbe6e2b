"""ScepService end to end in memory: pure client -> service -> store -> CertRep -> client."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography import x509

from enrollment import scep_client
from enrollment.algorithms import LEGACY_CIPHERS, LEGACY_DIGESTS
from enrollment.challenges import StaticSecret
from enrollment.scep_client import RequestOptions
from enrollment.scep_enroll import revoke_due
from enrollment.scep_service import CA_CERT, CA_RA_CERT, ScepConfigError, ScepService
from enrollment.scep_types import (
    ContentCipher,
    DigestAlgorithm,
    FailInfo,
    KeyTransport,
    PKIStatus,
    UndecodableRequest,
)
from store import ScepStore, StoreUnavailable

from .conftest import NOW, client_key, make_csr


def certs_of(der: bytes) -> list[x509.Certificate]:
    from asn1crypto import cms

    sd = cms.ContentInfo.load(der)["content"]
    return [x509.load_der_x509_certificate(c.chosen.dump()) for c in sd["certificates"]]


async def test_caps_and_ca_certs(make_harness) -> None:
    h = await make_harness()
    assert h.service.caps().split() == ["POSTPKIOperation", "Renewal", "SHA-512", "SHA-384",
                                        "SHA-256", "SHA-224", "AES", "SCEPStandard"]
    body, ctype = h.service.ca_certs()
    # DER SET OF order (asn1crypto sorts), not insertion order: clients pick the RA by key usage
    # the root is in by default (strongSwan pki --scepca needs it)
    assert ctype == CA_RA_CERT and set(certs_of(body)) == {h.ca.ra_certificate, h.ca.certificate,
                                                           h.service.root}
    legacy = await make_harness(ciphers=LEGACY_CIPHERS, digests=LEGACY_DIGESTS, include_root=False)
    assert legacy.service.caps().split()[-4:] == ["SHA-1", "AES", "DES3", "SCEPStandard"]
    assert set(certs_of(legacy.service.ca_certs()[0])) == {h.ca.ra_certificate, h.ca.certificate}


async def test_ca_is_ra_needs_an_rsa_ca(make_harness) -> None:
    with pytest.raises(ScepConfigError, match="ca_is_ra needs an RSA group CA"):
        await make_harness(ca_is_ra=True)
    h = await make_harness("rsaca", ca_key_type="rsa", ca_is_ra=True)
    body, ctype = h.service.ca_certs()  # no root by default: one cert, x509-ca-cert (iOS)
    assert ctype == CA_CERT and x509.load_der_x509_certificate(body) == h.ca.certificate
    key = client_key(1)
    token = await h.challenge(subject_cn="dev-rsa")
    rep, _ = await h.enroll(make_csr(key, "dev-rsa", token), key)
    assert rep.status is PKIStatus.SUCCESS
    assert rep.message.signer_certificate == h.ca.certificate


async def test_dynamic_enroll_retry_and_replay(make_harness) -> None:
    h = await make_harness()
    key = client_key(0)
    token = await h.challenge(subject_cn="dev-01", sans=["dns:dev-01.example"], device_id="D1")
    csr = make_csr(key, "dev-01", token, sans=("dev-01.example",))
    rep, req = await h.enroll(csr, key)
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text
    cert = rep.certificates[0]
    assert cert.issuer == h.ca.certificate.subject
    record = await h.store.get(cert.serial_number)
    assert record is not None and record.device_id == "D1" and record.transaction_id == req.transaction_id

    # same challenge, transactionID and key: the same certificate again
    again, _ = await h.enroll(csr, key, transaction_id=req.transaction_id)
    assert again.status is PKIStatus.SUCCESS and again.certificates[0] == cert
    # another key (another transactionID): replay
    other = client_key(2)
    rep, _ = await h.enroll(make_csr(other, "dev-01", token, sans=("dev-01.example",)), other)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info is FailInfo.badRequest
    assert rep.fail_info_text == "replay"


@pytest.mark.parametrize("options", [
    RequestOptions(ber=True, signing_time=NOW),
    RequestOptions(key_transport=KeyTransport.RSA_OAEP_SHA256, cipher=ContentCipher.AES256_CBC,
                   digest=DigestAlgorithm.SHA512, signing_time=NOW),
])
async def test_ber_and_oaep_requests(make_harness, options) -> None:
    h = await make_harness()
    key = client_key(3)
    token = await h.challenge()
    rep, _ = await h.enroll(make_csr(key, "dev-ber", token), key, options=options)
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text
    assert rep.algorithms.key_transport is options.key_transport
    assert rep.algorithms.cipher is options.cipher


@pytest.mark.parametrize("case,fail_info,text", [
    ("sha1", FailInfo.badAlg, "badAlg"),
    ("des", FailInfo.badAlg, "badAlg"),
    ("time", FailInfo.badTime, "badTime"),
    ("no_challenge", FailInfo.badRequest, "missing_challenge"),
    ("ca_true", FailInfo.badRequest, "ca_requested"),
    ("static_disabled", FailInfo.badRequest, "bad_format"),
])
async def test_refusals_are_signed_failures(make_harness, case, fail_info, text) -> None:
    h = await make_harness()
    key = client_key(4)
    token = await h.challenge()
    opts = RequestOptions(signing_time=NOW)
    csr = make_csr(key, "dev", token)
    if case == "sha1":
        opts = dataclasses.replace(opts, digest=DigestAlgorithm.SHA1)
    elif case == "des":
        opts = dataclasses.replace(opts, cipher=ContentCipher.DES_CBC)
    elif case == "time":
        opts = dataclasses.replace(opts, signing_time=NOW - dt.timedelta(days=1))
    elif case == "no_challenge":
        csr = make_csr(key, "dev", None)
    elif case == "ca_true":
        csr = make_csr(key, "dev", token, ca=True)
    elif case == "static_disabled":
        csr = make_csr(key, "dev", "some static secret")
    rep, _ = await h.enroll(csr, key, options=opts)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info is fail_info
    assert rep.fail_info_text == text
    # the refused request did not consume the challenge
    rep, _ = await h.enroll(make_csr(key, "dev", token), key)
    assert rep.status is PKIStatus.SUCCESS


async def test_legacy_group_accepts_des_sha1_and_replies_aes_sha256(make_harness) -> None:
    h = await make_harness(ciphers=LEGACY_CIPHERS, digests=LEGACY_DIGESTS)
    key = client_key(5)
    token = await h.challenge()
    opts = RequestOptions(cipher=ContentCipher.DES_CBC, digest=DigestAlgorithm.SHA1, signing_time=NOW)
    rep, _ = await h.enroll(make_csr(key, "old-dev", token), key, options=opts)
    assert rep.status is PKIStatus.SUCCESS
    assert rep.algorithms.cipher is ContentCipher.AES128_CBC
    assert rep.message.digest_algorithm is DigestAlgorithm.SHA256


async def test_undecodable_and_bad_signature(make_harness) -> None:
    h = await make_harness()
    with pytest.raises(UndecodableRequest):
        await h.service.pki_operation(b"\x30\x03\x02\x01\x01")
    key = client_key(6)
    token = await h.challenge()
    csr = make_csr(key, "dev", token)
    signer = scep_client.self_signed_signer(key, csr.subject, NOW)
    req = scep_client.build_pkcs_req(csr, signer, key, h.service.signer_cert,
                                     options=RequestOptions(signing_time=NOW))
    tampered = bytearray(req.der)
    tampered[-5] ^= 0xFF  # inside the signature value
    reply = await h.service.pki_operation(bytes(tampered))
    rep = scep_client.parse_cert_rep(reply.body, signer, key, request=req)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info is FailInfo.badMessageCheck


async def test_unexpected_error_is_a_failure_not_a_crash(make_harness, monkeypatch) -> None:
    h = await make_harness()

    async def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("bug")

    monkeypatch.setattr(h.service.enroller, "enroll", boom)
    key = client_key(7)
    rep, _ = await h.enroll(make_csr(key, "dev", "x"), key)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info is FailInfo.badRequest


async def test_store_outage_is_a_signed_failure_and_consumes_nothing(make_harness,
                                                                     monkeypatch, caplog) -> None:
    h = await make_harness()
    key = client_key(8)
    token = await h.challenge(subject_cn="dev-outage")
    csr = make_csr(key, "dev-outage", token)
    real = h.store.get_challenge

    async def down(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise StoreUnavailable("get_challenge", "ConnectionRefusedError")

    monkeypatch.setattr(h.store, "get_challenge", down)
    rep, req = await h.enroll(csr, key)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info is FailInfo.badRequest
    assert rep.fail_info_text == "store_unavailable"
    assert "Traceback" not in caplog.text and "store unavailable" in caplog.text
    monkeypatch.setattr(h.store, "get_challenge", real)  # the store is back: the retry enrolls
    rep, _ = await h.enroll(csr, key, transaction_id=req.transaction_id)
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text


async def test_static_secret(make_harness) -> None:
    h = await make_harness(challenge_modes=("static",),
                           static_secrets=(StaticSecret.from_secret("legacy-pw", iterations=1000),))
    key = client_key(8)
    assert (await h.enroll(make_csr(key, "printer", "legacy-pw"), key))[0].status is PKIStatus.SUCCESS
    rep, _ = await h.enroll(make_csr(key, "printer", "wrong"), key)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info_text == "bad_secret"


async def test_manual_approval_pending_poll_approve(make_harness) -> None:
    h = await make_harness(manual_approval=True)
    key = client_key(9)
    token = await h.challenge(subject_cn="pending-dev")
    csr = make_csr(key, "pending-dev", token)
    signer = scep_client.self_signed_signer(key, csr.subject, NOW)
    rep, req = await h.enroll(csr, key, signer=signer)
    assert rep.status is PKIStatus.PENDING
    requests = ScepStore(h.store)
    (pending,) = await requests.list_requests(status="pending")
    assert pending.transaction_id == req.transaction_id and pending.challenge_jti

    def poll() -> scep_client.ClientRequest:
        return scep_client.build_cert_poll(h.ca.certificate.subject, csr.subject, signer, key,
                                           h.service.signer_cert, transaction_id=req.transaction_id)

    p = poll()
    assert (await h.send(p, key, signer)).status is PKIStatus.PENDING
    # the challenge is reserved: another device cannot take it while the request waits
    other = client_key(10)
    rep2, _ = await h.enroll(make_csr(other, "pending-dev", token), other)
    assert rep2.status is PKIStatus.FAILURE and rep2.fail_info_text == "replay"

    await requests.decide(pending.id, True, "test", NOW)
    p = poll()
    done = await h.send(p, key, signer)
    assert done.status is PKIStatus.SUCCESS
    cert = done.certificates[0]
    # micromdm resends PKCSReq instead of polling: same state, same certificate
    again, _ = await h.enroll(csr, key, signer=signer, transaction_id=req.transaction_id)
    assert again.status is PKIStatus.SUCCESS and again.certificates[0] == cert
    row = (await requests.get_request(pending.id))
    assert row.status == "issued" and row.issued_serial == cert.serial_number
    jti_row = await h.store.get_challenge(pending.challenge_jti)
    assert jti_row.issued_serial == cert.serial_number


async def test_manual_approval_reject(make_harness) -> None:
    h = await make_harness(manual_approval=True)
    key = client_key(11)
    csr = make_csr(key, "nope", await h.challenge())
    rep, req = await h.enroll(csr, key)
    assert rep.status is PKIStatus.PENDING
    requests = ScepStore(h.store)
    (pending,) = await requests.list_requests()
    await requests.decide(pending.id, False, "test", NOW)
    rep, _ = await h.enroll(csr, key, transaction_id=req.transaction_id)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info_text == "request_rejected"


async def test_get_cert_and_get_crl(make_harness) -> None:
    h = await make_harness()
    key = client_key(12)
    rep, _ = await h.enroll(make_csr(key, "dev-gc", await h.challenge()), key)
    cert = rep.certificates[0]
    signer = scep_client.self_signed_signer(key, cert.subject, NOW)
    req = scep_client.build_get_cert(h.ca.certificate.subject, cert.serial_number, signer, key,
                                     h.service.signer_cert)
    got = await h.send(req, key, signer)
    assert got.status is PKIStatus.SUCCESS and got.certificates == (cert,)
    req = scep_client.build_get_cert(h.ca.certificate.subject, 12345, signer, key, h.service.signer_cert)
    missing = await h.send(req, key, signer)
    assert missing.status is PKIStatus.FAILURE and missing.fail_info is FailInfo.badCertId
    req = scep_client.build_get_crl(h.ca.certificate.subject, cert.serial_number, signer, key,
                                    h.service.signer_cert)
    crl = await h.send(req, key, signer)
    assert crl.status is PKIStatus.SUCCESS and crl.crls[0].issuer == h.ca.certificate.subject


async def test_renewal_by_pkcsreq_signed_with_our_cert_and_grace(make_harness) -> None:
    h = await make_harness(renewal_window=dt.timedelta(days=400),
                           superseded_grace=dt.timedelta(hours=2))
    key = client_key(13)
    rep, _ = await h.enroll(make_csr(key, "renew-me", await h.challenge()), key)
    old = rep.certificates[0]
    new_key = client_key(14)
    # Cisco/macOS pattern: PKCSReq (not RenewalReq), signed by the current certificate
    rep, _ = await h.enroll(make_csr(new_key, "renew-me", None), new_key, signer=old, signer_key=key)
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text
    new = rep.certificates[0]
    assert (await h.store.get(old.serial_number)).superseded_by == new.serial_number
    assert h.revoked == []  # grace period: still valid
    assert await revoke_due(h.store, h.service.enroller.revoke, NOW + dt.timedelta(hours=1)) == 0
    assert await revoke_due(h.store, h.service.enroller.revoke, NOW + dt.timedelta(hours=3)) == 1
    assert (await h.store.get(old.serial_number)).reason == "superseded"
    # a superseded certificate cannot renew again
    rep, _ = await h.enroll(make_csr(client_key(15), "renew-me", None), client_key(15), signer=old,
                            signer_key=key, renewal=True)
    assert rep.status is PKIStatus.FAILURE


async def test_renewal_outside_window_and_wrong_group(make_harness) -> None:
    h = await make_harness(renewal_window=dt.timedelta(days=1))
    key = client_key(16)
    rep, _ = await h.enroll(make_csr(key, "early", await h.challenge()), key)
    old = rep.certificates[0]
    rep, _ = await h.enroll(make_csr(key, "early", None), key, signer=old, renewal=True)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info_text == "outside_window"
    # a certificate of another group cannot renew here
    other = await make_harness("other", renewal_window=dt.timedelta(days=400))
    rep, _ = await other.enroll(make_csr(key, "early", None), key, signer=old, renewal=True)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info is FailInfo.badCertId


async def test_service_uses_group_ca_only(make_harness) -> None:
    h = await make_harness()
    assert isinstance(h.service, ScepService)
    assert h.service.signer_cert == h.ca.ra_certificate
    crypto = h.service.crypto.crypto[h.service.cfg.group]  # what decrypts and signs the replies
    assert crypto.signer_cert == h.ca.ra_certificate and crypto.reply_chain == (h.ca.certificate,)
