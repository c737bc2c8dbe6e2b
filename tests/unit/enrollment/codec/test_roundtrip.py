"""Client builder -> server codec -> CertRep -> client parser, every combination."""

from __future__ import annotations

import dataclasses

import pytest
from asn1crypto import cms

from enrollment import scep_client, scep_codec
from enrollment.scep_client import RequestOptions
from enrollment.scep_codec import ReplyOptions
from enrollment.scep_inner import IssuerAndSerial, IssuerAndSubject
from enrollment.scep_types import (
    ContentCipher,
    DigestAlgorithm,
    FailInfo,
    KeyTransport,
    MessageType,
    PKIStatus,
)

CIPHERS = [
    ContentCipher.AES128_CBC,
    ContentCipher.AES256_CBC,
    ContentCipher.DES3_CBC,
    ContentCipher.DES_CBC,
]
TRANSPORTS = [KeyTransport.RSA_PKCS1V15, KeyTransport.RSA_OAEP_SHA1, KeyTransport.RSA_OAEP_SHA256]
DIGESTS = [DigestAlgorithm.SHA1, DigestAlgorithm.SHA256, DigestAlgorithm.SHA512]


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("kt", TRANSPORTS)
@pytest.mark.parametrize("digest", DIGESTS)
def test_pkcsreq_round_trip(pki, cipher, kt, digest) -> None:
    opts = RequestOptions(cipher=cipher, key_transport=kt, digest=digest, signing_time=pki.now)
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert, options=opts)

    msg = scep_codec.parse_pki_message(req.der)
    assert msg.message_type is MessageType.PKCSReq
    assert msg.transaction_id == req.transaction_id
    assert msg.sender_nonce == req.sender_nonce
    assert msg.digest_algorithm is digest
    assert msg.signature_digest is digest
    assert msg.uses_sha1 is (digest is DigestAlgorithm.SHA1)
    assert msg.signing_time == pki.now
    assert msg.signer_certificate == pki.signer
    assert msg.signer_is_self_signed
    assert msg.envelope_algorithms.cipher is cipher
    assert msg.envelope_algorithms.key_transport is kt

    inner = scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
    assert inner.algorithms.cipher is cipher and inner.algorithms.key_transport is kt
    csr = scep_codec.parse_csr(inner.content, msg)
    assert csr.public_key() == pki.csr.public_key()
    assert scep_codec.challenge_password(csr) == "secret123"

    issued = pki.issue(csr)
    rep = scep_codec.build_cert_rep_success(
        msg, [issued], pki.ra_cert, pki.ra_key, ReplyOptions(algorithms=inner.algorithms)
    )
    result = scep_client.parse_cert_rep(rep, pki.signer, pki.client_key, ra_cert=pki.ra_cert, request=req)
    assert result.status is PKIStatus.SUCCESS
    assert result.certificates == (issued,)
    # Reply: same key transport; cipher floored at AES-128; digest floored at SHA-256.
    assert result.algorithms.key_transport is kt
    assert result.algorithms.cipher is (cipher if cipher.is_aes else ContentCipher.AES128_CBC)
    expected_digest = DigestAlgorithm.SHA256 if digest is DigestAlgorithm.SHA1 else digest
    assert result.message.digest_algorithm is expected_digest
    assert result.message.recipient_nonce == req.sender_nonce
    assert result.message.sender_nonce != req.sender_nonce


def test_legacy_reply_keeps_des_and_sha1(pki) -> None:
    opts = RequestOptions(cipher=ContentCipher.DES_CBC, digest=DigestAlgorithm.SHA1)
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert, options=opts)
    msg = scep_codec.parse_pki_message(req.der)
    inner = scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
    rep = scep_codec.build_cert_rep_success(
        msg,
        [pki.issue()],
        pki.ra_cert,
        pki.ra_key,
        ReplyOptions(algorithms=inner.algorithms, legacy=True),
    )
    result = scep_client.parse_cert_rep(rep, pki.signer, pki.client_key, request=req)
    assert result.algorithms.cipher is ContentCipher.DES_CBC
    assert result.message.digest_algorithm is DigestAlgorithm.SHA1


def test_renewal_req(pki, other_key) -> None:
    old_cert = pki.issue()
    new_csr = pki.make_csr(other_key, challenge=None)
    req = scep_client.build_pkcs_req(new_csr, old_cert, pki.client_key, pki.ra_cert, renewal=True)
    msg = scep_codec.parse_pki_message(req.der)
    assert msg.message_type is MessageType.RenewalReq
    assert msg.signer_certificate == old_cert
    assert not msg.signer_is_self_signed
    csr = scep_codec.parse_inner(
        msg.message_type, scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key).content, msg
    )
    assert csr.public_key() == other_key.public_key()
    assert scep_codec.challenge_password(csr) is None


def test_cert_poll(pki) -> None:
    req = scep_client.build_cert_poll(
        pki.ca_cert.subject,
        pki.subject,
        pki.signer,
        pki.client_key,
        pki.ra_cert,
        transaction_id="txn-1",
    )
    msg = scep_codec.parse_pki_message(req.der)
    assert msg.message_type is MessageType.CertPoll
    body = scep_codec.parse_inner(
        msg.message_type, scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key).content, msg
    )
    assert isinstance(body, IssuerAndSubject)
    assert body.issuer == pki.ca_cert.subject
    assert body.subject == pki.subject
    assert body.issuer_der == pki.ca_cert.subject.public_bytes()

    pending = scep_codec.build_cert_rep_pending(msg, pki.ra_cert, pki.ra_key)
    result = scep_client.parse_cert_rep(pending, pki.signer, pki.client_key, request=req)
    assert result.status is PKIStatus.PENDING
    assert result.certificates == ()


def test_get_cert(pki) -> None:
    issued = pki.issue()
    req = scep_client.build_get_cert(issued.issuer, issued.serial_number, issued, pki.client_key, pki.ra_cert)
    msg = scep_codec.parse_pki_message(req.der)
    assert msg.message_type is MessageType.GetCert
    body = scep_codec.parse_inner(
        msg.message_type, scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key).content, msg
    )
    assert isinstance(body, IssuerAndSerial)
    assert body.serial_number == issued.serial_number
    assert body.issuer == issued.issuer
    rep = scep_codec.build_cert_rep_success(msg, [issued], pki.ra_cert, pki.ra_key)
    result = scep_client.parse_cert_rep(rep, issued, pki.client_key, request=req)
    assert result.certificates == (issued,)


def test_get_crl(pki) -> None:
    issued = pki.issue()
    req = scep_client.build_get_crl(
        pki.ra_cert.subject, pki.ra_cert.serial_number, issued, pki.client_key, pki.ra_cert
    )
    msg = scep_codec.parse_pki_message(req.der)
    assert msg.message_type is MessageType.GetCRL
    body = scep_codec.parse_inner(
        msg.message_type, scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key).content, msg
    )
    assert body.serial_number == pki.ra_cert.serial_number
    crl = pki.crl()
    rep = scep_codec.build_cert_rep_crl(msg, crl, pki.ra_cert, pki.ra_key)
    result = scep_client.parse_cert_rep(rep, issued, pki.client_key, request=req)
    assert result.status is PKIStatus.SUCCESS
    assert result.certificates == ()
    assert result.crls == (crl,)


def test_failure_reply(pki) -> None:
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert)
    msg = scep_codec.parse_pki_message(req.der)
    rep = scep_codec.build_cert_rep_failure(
        msg, FailInfo.badRequest, pki.ra_cert, pki.ra_key, "challenge refused"
    )
    result = scep_client.parse_cert_rep(rep, pki.signer, pki.client_key, request=req)
    assert result.status is PKIStatus.FAILURE
    assert result.fail_info is FailInfo.badRequest
    assert result.fail_info_text == "challenge refused"
    # micromdm-style empty eContent by default; RFC-literal omission on request.
    assert result.message.enveloped_content == b""
    bare = scep_codec.build_cert_rep_failure(
        msg, FailInfo.badRequest, pki.ra_cert, pki.ra_key, options=ReplyOptions(omit_content=True)
    )
    assert scep_codec.parse_pki_message(bare).enveloped_content is None


def test_transaction_id_echoed_byte_for_byte(pki) -> None:
    tx = "{6F9619FF-8B86-D011-B42D-00C04FC964FF} 12345 :-)"
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert, transaction_id=tx)
    msg = scep_codec.parse_pki_message(req.der)
    rep = scep_codec.build_cert_rep_pending(msg, pki.ra_cert, pki.ra_key)
    sd = cms.ContentInfo.load(rep)["content"]
    attrs = {a["type"].native: a for a in sd["signer_infos"][0]["signed_attrs"]}
    req_sd = cms.ContentInfo.load(req.der)["content"]
    req_attrs = {a["type"].native: a for a in req_sd["signer_infos"][0]["signed_attrs"]}
    assert attrs["scep_transaction_id"].dump() == req_attrs["scep_transaction_id"].dump()


def test_reply_options_override(pki) -> None:
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert)
    msg = scep_codec.parse_pki_message(req.der)
    opts = ReplyOptions(
        cipher=ContentCipher.AES256_CBC,
        key_transport=KeyTransport.RSA_OAEP_SHA256,
        digest=DigestAlgorithm.SHA512,
        sender_nonce=b"\x01" * 16,
        now=pki.now,
        ra_chain=(pki.ca_cert,),
    )
    rep = scep_codec.build_cert_rep_success(msg, [pki.issue()], pki.ra_cert, pki.ra_key, opts)
    result = scep_client.parse_cert_rep(rep, pki.signer, pki.client_key, ra_cert=pki.ra_cert)
    assert result.algorithms.cipher is ContentCipher.AES256_CBC
    assert result.algorithms.key_transport is KeyTransport.RSA_OAEP_SHA256
    assert result.message.digest_algorithm is DigestAlgorithm.SHA512
    assert result.message.sender_nonce == b"\x01" * 16
    assert result.message.signing_time == pki.now
    assert result.message.certificates == (pki.ra_cert, pki.ca_cert)


def test_success_needs_a_certificate(pki) -> None:
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert)
    msg = scep_codec.parse_pki_message(req.der)
    with pytest.raises(ValueError, match="at least one"):
        scep_codec.build_cert_rep_success(msg, [], pki.ra_cert, pki.ra_key)


def test_ecdsa_signer_verifies_but_cannot_be_answered_encrypted(pki, ec_key) -> None:
    csr = pki.make_csr(ec_key)
    signer = scep_client.self_signed_signer(ec_key, csr.subject, pki.now)
    req = scep_client.build_pkcs_req(csr, signer, ec_key, pki.ra_cert)
    msg = scep_codec.parse_pki_message(req.der)
    assert msg.signature_algorithm == "sha256_ecdsa"
    scep_codec.parse_csr(scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key).content, msg)
    with pytest.raises(scep_codec.ScepError) as err:
        scep_codec.build_cert_rep_success(msg, [pki.issue(csr)], pki.ra_cert, pki.ra_key)
    assert err.value.fail_info is FailInfo.badAlg
    # ... but a FAILURE needs no encryption.
    scep_codec.build_cert_rep_failure(msg, FailInfo.badAlg, pki.ra_cert, pki.ra_key)


class TestPolicyHelpers:
    def _msg(self, pki, **opts):
        req = scep_client.build_pkcs_req(
            pki.csr, pki.signer, pki.client_key, pki.ra_cert, options=RequestOptions(**opts)
        )
        return scep_codec.parse_pki_message(req.der)

    def test_reply_floors(self) -> None:
        assert scep_codec.reply_digest(DigestAlgorithm.SHA1) is DigestAlgorithm.SHA256
        assert scep_codec.reply_digest(DigestAlgorithm.SHA1, legacy=True) is DigestAlgorithm.SHA1
        assert scep_codec.reply_digest(DigestAlgorithm.MD5, legacy=True) is DigestAlgorithm.SHA256
        assert scep_codec.reply_digest(DigestAlgorithm.SHA512) is DigestAlgorithm.SHA512
        assert scep_codec.reply_cipher(ContentCipher.DES_CBC) is ContentCipher.AES128_CBC
        assert scep_codec.reply_cipher(ContentCipher.DES3_CBC) is ContentCipher.AES128_CBC
        assert scep_codec.reply_cipher(ContentCipher.DES3_CBC, True) is ContentCipher.DES3_CBC
        assert scep_codec.reply_cipher(ContentCipher.AES192_CBC) is ContentCipher.AES192_CBC

    def test_check_algorithms(self, pki) -> None:
        scep_codec.check_algorithms(self._msg(pki))
        weak = self._msg(pki, digest=DigestAlgorithm.SHA1)
        with pytest.raises(scep_codec.ScepError) as err:
            scep_codec.check_algorithms(weak)
        assert err.value.fail_info is FailInfo.badAlg
        scep_codec.check_algorithms(weak, legacy=True)
        des = self._msg(pki, cipher=ContentCipher.DES3_CBC)
        with pytest.raises(scep_codec.ScepError, match="des3"):
            scep_codec.check_algorithms(des)

    def test_check_signing_time(self, pki) -> None:
        import datetime

        msg = self._msg(pki, signing_time=pki.now)
        skew = datetime.timedelta(minutes=5)
        scep_codec.check_signing_time(msg, pki.now + datetime.timedelta(minutes=4), skew)
        with pytest.raises(scep_codec.ScepError) as err:
            scep_codec.check_signing_time(msg, pki.now + datetime.timedelta(minutes=6), skew)
        assert err.value.fail_info is FailInfo.badTime
        untimed = dataclasses.replace(msg, signing_time=None)
        scep_codec.check_signing_time(untimed, pki.now + datetime.timedelta(days=9), skew)
