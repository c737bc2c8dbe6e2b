"""Recorded PKCSReqs from real clients (tests/vectors/scep/README.md)."""

from __future__ import annotations

import pytest

from enrollment import scep_client, scep_codec
from enrollment.scep_types import (
    ContentCipher,
    DigestAlgorithm,
    FailInfo,
    KeyTransport,
    MessageType,
    PKIStatus,
)


class TestScepclient210:
    """micromdm scepclient 2.1.0 (Debian `scep`), POST, caps ignored."""

    @pytest.fixture
    def msg(self, pki):
        return scep_codec.parse_pki_message(pki.vector("scepclient-2.1.0-pkcsreq.der"))

    def test_header(self, pki, msg) -> None:
        assert msg.message_type is MessageType.PKCSReq
        assert msg.digest_algorithm is DigestAlgorithm.SHA1  # despite SHA-256 in caps
        assert msg.signature_algorithm == "sha1_rsa"
        assert msg.uses_sha1
        assert msg.signer_is_self_signed
        assert msg.signer_certificate.subject.rfc4514_string() == "CN=SCEP SIGNER,O=scep-client"
        assert len(msg.sender_nonce) == 16
        assert msg.signing_time is not None

    def test_transaction_id_format(self, pki, msg) -> None:
        key = pki.load_key("scepclient-2.1.0-client.key.pem")
        # base64(SHA-256(PKCS#1 RSAPublicKey)[:20]), not SHA-1 of the SPKI.
        assert msg.transaction_id == scep_client.transaction_id_for(key.public_key())
        assert msg.transaction_id == "9DWaQaZPrRGFHw4j5pPoKBADxJY="

    def test_single_des_envelope_to_every_getcacert_cert(self, pki, msg) -> None:
        assert msg.envelope_algorithms.cipher is ContentCipher.DES_CBC  # despite AES in caps
        assert msg.envelope_algorithms.key_transport is KeyTransport.RSA_PKCS1V15
        inner = scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
        assert inner.algorithms.cipher is ContentCipher.DES_CBC
        with pytest.raises(scep_codec.ScepError) as err:
            scep_codec.check_algorithms(msg, inner.algorithms)
        assert err.value.fail_info is FailInfo.badAlg

    def test_csr(self, pki, msg) -> None:
        csr = scep_codec.parse_csr(scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key).content)
        assert csr.subject.rfc4514_string() == "CN=dev-01,OU=MDM,O=scep-client,C=US"
        assert scep_codec.challenge_password(csr) == "secret123"
        key = pki.load_key("scepclient-2.1.0-client.key.pem")
        assert csr.public_key() == key.public_key() == msg.signer_certificate.public_key()

    def test_reply_readable_with_the_client_key(self, pki, msg) -> None:
        inner = scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
        csr = scep_codec.parse_csr(inner.content)
        issued = pki.issue(csr)
        rep = scep_codec.build_cert_rep_success(
            msg,
            [issued],
            pki.ra_cert,
            pki.ra_key,
            scep_codec.ReplyOptions(algorithms=inner.algorithms),
        )
        key = pki.load_key("scepclient-2.1.0-client.key.pem")
        result = scep_client.parse_cert_rep(rep, msg.signer_certificate, key, ra_cert=pki.ra_cert)
        assert result.status is PKIStatus.SUCCESS
        assert result.certificates == (issued,)
        assert result.algorithms.cipher is ContentCipher.AES128_CBC  # floored, not DES
        assert result.message.digest_algorithm is DigestAlgorithm.SHA256  # floored
        assert result.message.transaction_id == msg.transaction_id
        assert result.message.recipient_nonce == msg.sender_nonce


class TestCertmonger07917:
    """certmonger 0.79.17 daemon (Debian), GET ?message=, caps AES + SHA-256."""

    @pytest.fixture
    def msg(self, pki):
        return scep_codec.parse_pki_message(pki.vector("certmonger-0.79.17-pkcsreq.der"))

    def test_header(self, msg) -> None:
        assert msg.message_type is MessageType.PKCSReq
        assert msg.digest_algorithm is DigestAlgorithm.SHA256
        assert msg.signature_algorithm == "rsassa_pkcs1v15"
        assert msg.transaction_id.isdigit()  # decimal
        assert msg.signer_certificate.version.name == "v1"  # no extensions at all
        assert msg.envelope_algorithms.cipher is ContentCipher.AES256_CBC
        assert msg.envelope_algorithms.key_transport is KeyTransport.RSA_PKCS1V15
        scep_codec.check_algorithms(msg)

    def test_csr(self, pki, msg) -> None:
        inner = scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
        csr = scep_codec.parse_csr(inner.content, msg)
        assert csr.subject.rfc4514_string() == "CN=device01.example.com"
        assert scep_codec.challenge_password(csr) == "secret123"
        key = pki.load_key("certmonger-0.79.17-client.key.pem")
        assert csr.public_key() == key.public_key() == msg.signer_certificate.public_key()

    def test_reply_readable_with_the_client_key(self, pki, msg) -> None:
        inner = scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
        issued = pki.issue(scep_codec.parse_csr(inner.content))
        rep = scep_codec.build_cert_rep_success(
            msg,
            [issued],
            pki.ra_cert,
            pki.ra_key,
            scep_codec.ReplyOptions(algorithms=inner.algorithms, ra_chain=(pki.ca_cert,)),
        )
        key = pki.load_key("certmonger-0.79.17-client.key.pem")
        result = scep_client.parse_cert_rep(rep, msg.signer_certificate, key, ra_cert=pki.ra_cert)
        assert result.certificates == (issued,)
        assert result.algorithms.cipher is ContentCipher.AES256_CBC
        assert result.message.transaction_id == msg.transaction_id


class TestCertmongerGetCertInitial:
    """certmonger's prebuilt CertPoll after a PENDING answer."""

    def test_issuer_and_subject(self, pki) -> None:
        msg = scep_codec.parse_pki_message(pki.vector("certmonger-0.79.17-getcertinitial.der"))
        assert msg.message_type is MessageType.CertPoll
        assert msg.transaction_id.isdigit()
        key = pki.load_key("certmonger-0.79.17-getcertinitial-client.key.pem")
        assert msg.signer_certificate.public_key() == key.public_key()
        inner = scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
        body = scep_codec.parse_inner(msg.message_type, inner.content, msg)
        assert body.issuer == pki.ca_cert.subject  # the CA given with -N, not the RA
        assert body.subject.rfc4514_string() == "CN=device01.example.com"
        pending = scep_codec.build_cert_rep_pending(msg, pki.ra_cert, pki.ra_key)
        result = scep_client.parse_cert_rep(pending, msg.signer_certificate, key)
        assert result.status is PKIStatus.PENDING


class TestScepclientRenewal:
    """scepclient rerun with an existing cert: RenewalReq signed by the old cert."""

    def test_renewal_req(self, pki) -> None:
        msg = scep_codec.parse_pki_message(pki.vector("scepclient-2.1.0-renewalreq.der"))
        assert msg.message_type is MessageType.RenewalReq
        assert not msg.signer_is_self_signed
        assert msg.signer_certificate.issuer == pki.ra_cert.subject
        key = pki.load_key("scepclient-2.1.0-renewal-client.key.pem")
        # Key reuse => the transactionID of the original PKCSReq, again.
        assert msg.transaction_id == scep_client.transaction_id_for(key.public_key())
        csr = scep_codec.parse_csr(scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key).content)
        assert csr.public_key() == key.public_key() == msg.signer_certificate.public_key()
        assert scep_codec.challenge_password(csr) == "x"
