"""Tampering, wrong recipients, missing attributes: the error split
UndecodableRequest (HTTP 400) vs ScepError (signed FAILURE), and that a FAILURE
can always be built from ScepError.request."""

from __future__ import annotations

import pytest
from asn1crypto import cms

from enrollment import cms_envelope, cms_signed, scep_client, scep_codec
from enrollment.scep_types import (
    ContentCipher,
    DigestAlgorithm,
    FailInfo,
    PKIStatus,
    ScepError,
    ScepString,
    UndecodableRequest,
)


def _attr(name, value):
    return cms.CMSAttribute({"type": name, "values": [value]})


def _p(value: str) -> ScepString:
    return ScepString(name="printable_string", value=value)


def _signed(pki, content: bytes, attrs, digest=DigestAlgorithm.SHA256) -> bytes:
    return cms_signed.build_signed_data(content, pki.signer, pki.client_key, digest, attrs)


def _request(pki) -> scep_client.ClientRequest:
    return scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert)


def _answer_failure(pki, err: ScepError, req: scep_client.ClientRequest) -> None:
    """The shell's path: a FAILURE from err.request that the client accepts."""
    assert err.request is not None
    rep = scep_codec.build_cert_rep_failure(err.request, err.fail_info, pki.ra_cert, pki.ra_key)
    result = scep_client.parse_cert_rep(rep, pki.signer, pki.client_key, ra_cert=pki.ra_cert, request=req)
    assert result.status is PKIStatus.FAILURE
    assert result.fail_info is err.fail_info


class TestTampering:
    def test_tampered_signature(self, pki) -> None:
        req = _request(pki)
        der = bytearray(req.der)
        der[-1] ^= 0x01  # the SignerInfo signature is the last field
        with pytest.raises(ScepError) as err:
            scep_codec.parse_pki_message(bytes(der))
        assert err.value.fail_info is FailInfo.badMessageCheck
        assert err.value.request.signature_verified is False
        assert err.value.request.transaction_id == req.transaction_id
        _answer_failure(pki, err.value, req)

    def test_tampered_content_breaks_message_digest(self, pki) -> None:
        req = _request(pki)
        msg = scep_codec.parse_pki_message(req.der)
        tail = msg.enveloped_content[-16:]  # last ciphertext block inside eContent
        assert req.der.count(tail) == 1
        flipped = bytes([tail[0] ^ 0x01]) + tail[1:]
        with pytest.raises(ScepError, match="messageDigest") as err:
            scep_codec.parse_pki_message(req.der.replace(tail, flipped))
        assert err.value.fail_info is FailInfo.badMessageCheck
        _answer_failure(pki, err.value, req)

    def test_wrong_message_digest_attribute_with_valid_signature(self, pki) -> None:
        envelope = cms_envelope.encrypt(pki.csr.public_bytes(_der()), pki.ra_cert)
        attrs = _base_attrs()
        good = _signed(pki, envelope, attrs)
        # Re-sign a copy whose messageDigest is over other content.
        other = _signed(pki, envelope + b"x", attrs)
        sd_good = cms.ContentInfo.load(good)
        sd_other = cms.ContentInfo.load(other)
        sd_good["content"]["signer_infos"] = sd_other["content"]["signer_infos"]
        forged = sd_good.dump(force=True)
        with pytest.raises(ScepError, match="messageDigest"):
            scep_codec.parse_pki_message(forged)

    def test_content_type_attribute_must_match(self, pki) -> None:
        envelope = cms_envelope.encrypt(b"x", pki.ra_cert)
        attrs = [*_base_attrs(), _attr("content_type", "enveloped_data")]
        with pytest.raises((ScepError, UndecodableRequest)):
            scep_codec.parse_pki_message(_signed(pki, envelope, attrs))

    def test_signature_from_another_key(self, pki, other_key) -> None:
        req = scep_client.build_pkcs_req(pki.csr, pki.signer, other_key, pki.ra_cert)
        with pytest.raises(ScepError) as err:
            scep_codec.parse_pki_message(req.der)
        assert err.value.fail_info is FailInfo.badMessageCheck


class TestDecryption:
    def test_wrong_recipient_maps_to_bad_message_check(self, pki) -> None:
        req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ca_cert)
        msg = scep_codec.parse_pki_message(req.der)  # outer layer is fine
        with pytest.raises(ScepError) as err:
            scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
        assert err.value.fail_info is FailInfo.badMessageCheck
        assert err.value.reason == "cannot decrypt"  # nothing more for the peer
        _answer_failure(pki, err.value, req)

    def test_unsupported_cipher_maps_to_bad_alg(self, pki) -> None:
        envelope = cms_envelope.encrypt(pki.csr.public_bytes(_der()), pki.ra_cert, ContentCipher.AES128_CBC)
        aes128_cbc = bytes.fromhex("0609608648016503040102")
        aes128_ecb = bytes.fromhex("0609608648016503040101")
        der = _signed(pki, envelope.replace(aes128_cbc, aes128_ecb), _base_attrs())
        msg = scep_codec.parse_pki_message(der)
        assert msg.envelope_algorithms.cipher is None
        with pytest.raises(ScepError) as err:
            scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
        assert err.value.fail_info is FailInfo.badAlg

    def test_garbage_envelope_maps_to_bad_message_check(self, pki) -> None:
        der = _signed(pki, b"\x30\x03\x02\x01\x00", _base_attrs())
        msg = scep_codec.parse_pki_message(der)
        assert msg.envelope_algorithms is None
        with pytest.raises(ScepError) as err:
            scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
        assert err.value.fail_info is FailInfo.badMessageCheck
        # A FAILURE can still be built: nothing of the envelope is needed.
        scep_codec.build_cert_rep_failure(
            err.value.request, FailInfo.badMessageCheck, pki.ra_cert, pki.ra_key
        )

    def test_no_envelope_is_bad_request(self, pki) -> None:
        msg = scep_codec.parse_pki_message(
            cms_signed.build_signed_data(
                None, pki.signer, pki.client_key, DigestAlgorithm.SHA256, _base_attrs()
            )
        )
        with pytest.raises(ScepError) as err:
            scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
        assert err.value.fail_info is FailInfo.badRequest

    def test_bad_csr_is_bad_request(self, pki) -> None:
        req = scep_client.build_request(
            scep_codec.MessageType.PKCSReq,
            b"not a csr",
            pki.signer,
            pki.client_key,
            pki.ra_cert,
            transaction_id="t",
        )
        msg = scep_codec.parse_pki_message(req.der)
        inner = scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
        with pytest.raises(ScepError) as err:
            scep_codec.parse_csr(inner.content, msg)
        assert err.value.fail_info is FailInfo.badRequest
        assert err.value.request is msg


class TestUndecodable:
    @pytest.mark.parametrize("data", [b"", b"garbage", b"\x30\x80", b"\x30\x03\x02\x01\x00"])
    def test_not_cms(self, data: bytes) -> None:
        with pytest.raises(UndecodableRequest):
            scep_codec.parse_pki_message(data)

    def test_enveloped_data_is_not_a_pki_message(self, pki) -> None:
        with pytest.raises(UndecodableRequest):
            scep_codec.parse_pki_message(cms_envelope.encrypt(b"x", pki.ra_cert))

    def test_degenerate_has_no_signer(self, pki) -> None:
        with pytest.raises(UndecodableRequest, match="signerInfos"):
            scep_codec.parse_pki_message(scep_codec.degenerate_certificates([pki.ra_cert]))

    @pytest.mark.parametrize("missing", ["scep_message_type", "scep_transaction_id", "scep_sender_nonce"])
    def test_missing_required_attribute(self, pki, missing: str) -> None:
        attrs = [a for a in _base_attrs() if a["type"].native != missing]
        der = _signed(pki, cms_envelope.encrypt(b"x", pki.ra_cert), attrs)
        with pytest.raises(UndecodableRequest):
            scep_codec.parse_pki_message(der)

    def test_unknown_message_type(self, pki) -> None:
        attrs = [a for a in _base_attrs() if a["type"].native != "scep_message_type"]
        attrs.append(_attr("scep_message_type", _p("18")))  # UpdateReq: gone in RFC 8894
        der = _signed(pki, cms_envelope.encrypt(b"x", pki.ra_cert), attrs)
        with pytest.raises(UndecodableRequest, match="messageType|message_type"):
            scep_codec.parse_pki_message(der)

    def test_signer_certificate_missing(self, pki) -> None:
        der = _signed(pki, cms_envelope.encrypt(b"x", pki.ra_cert), _base_attrs())
        info = cms.ContentInfo.load(der)
        info["content"]["certificates"] = [
            cms.CertificateChoices(name="certificate", value=_asn1(pki.ra_cert))
        ]
        with pytest.raises(UndecodableRequest, match="signer certificate"):
            scep_codec.parse_pki_message(info.dump(force=True))

    def test_unsupported_digest_is_bad_alg(self, pki) -> None:
        der = _request(pki).der
        sha256 = bytes.fromhex("0609608648016503040201")
        sha3_256 = bytes.fromhex("0609608648016503040208")
        with pytest.raises(ScepError) as err:
            scep_codec.parse_pki_message(der.replace(sha256, sha3_256))
        assert err.value.fail_info is FailInfo.badAlg
        assert err.value.request.digest_algorithm is None
        # reply digest falls back to SHA-256
        scep_codec.build_cert_rep_failure(err.value.request, FailInfo.badAlg, pki.ra_cert, pki.ra_key)


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def _asn1(cert):
    from asn1crypto import x509 as asn1_x509

    return asn1_x509.Certificate.load(cert.public_bytes(_der()))


def _base_attrs():
    return [
        _attr("scep_message_type", _p("19")),
        _attr("scep_transaction_id", _p("tx-1")),
        _attr("scep_sender_nonce", b"\x07" * 16),
    ]


def test_cipher_floor_reported_for_policy(pki) -> None:
    opts = scep_client.RequestOptions(cipher=ContentCipher.DES_CBC)
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert, options=opts)
    msg = scep_codec.parse_pki_message(req.der)
    assert msg.envelope_algorithms.cipher is ContentCipher.DES_CBC
    with pytest.raises(ScepError) as err:
        scep_codec.check_algorithms(msg)
    assert err.value.fail_info is FailInfo.badAlg


def test_subject_key_identifier_signer(pki) -> None:
    """SignerInfo v3 with sid = subjectKeyIdentifier (the sid is not signed)."""
    from asn1crypto import x509 as asn1_x509

    req = _request(pki)
    info = cms.ContentInfo.load(req.der)
    si = info["content"]["signer_infos"][0]
    ski = asn1_x509.Certificate.load(pki.signer.public_bytes(_der())).public_key.sha1
    si["version"] = "v3"
    si["sid"] = cms.SignerIdentifier(name="subject_key_identifier", value=ski)
    msg = scep_codec.parse_pki_message(info.dump(force=True))
    assert msg.signer_certificate == pki.signer


def test_econtent_must_be_an_octet_string(pki) -> None:
    info = cms.ContentInfo.load(_request(pki).der)
    der = info.dump()
    env = cms.ContentInfo.load(scep_codec.parse_pki_message(der).enveloped_content)
    # PKCS#7 v1.5 style: eContent [0] holds the EnvelopedData itself, no OCTET STRING.
    encap = info["content"]["encap_content_info"]
    inner = env.dump()
    from enrollment.cms_ber import _encode_length

    wrapped = b"\xa0" + _encode_length(len(inner)) + inner
    body = encap["content_type"].dump() + wrapped
    new_encap = b"\x30" + _encode_length(len(body)) + body
    assert der.count(encap.dump()) == 1
    sd = info["content"]
    sd_body = (
        sd["version"].dump()
        + sd["digest_algorithms"].dump()
        + new_encap
        + sd["certificates"].dump()
        + sd["signer_infos"].dump()
    )
    sd_der = b"\x30" + _encode_length(len(sd_body)) + sd_body
    exp = b"\xa0" + _encode_length(len(sd_der)) + sd_der
    top_body = info["content_type"].dump() + exp
    with pytest.raises(UndecodableRequest, match="OCTET STRING"):
        scep_codec.parse_pki_message(b"\x30" + _encode_length(len(top_body)) + top_body)


def test_size_cap(pki) -> None:
    der = _request(pki).der
    with pytest.raises(UndecodableRequest, match="exceeds"):
        scep_codec.parse_pki_message(der, max_size=len(der) - 1)
    scep_codec.parse_pki_message(der, max_size=len(der))


class TestAsn1Real:
    """asn1crypto's Real has no .native: reading or re-encoding a REAL raised
    AttributeError out of parse_pki_message (no answer at all) instead of
    UndecodableRequest (HTTP 400). Found by tests/fuzz/fuzz_scep_message.py (corpus
    scep_message/real-in-certificate)."""

    def test_real_in_an_unknown_signed_attribute(self, pki) -> None:
        from asn1crypto import core

        attrs = [*_base_attrs(), cms.CMSAttribute(
            {"type": "1.2.3.4", "values": [core.Any.load(b"\x09\x01\x80")]})]
        der = _signed(pki, b"content", attrs)
        with pytest.raises(UndecodableRequest, match="unsupported value"):
            scep_codec.parse_pki_message(der)

    def test_real_in_a_certificate_that_needs_re_encoding(self, pki) -> None:
        der = _request(pki).der
        signer = pki.signer.public_bytes(_der())
        # sha256WithRSAEncryption's NULL parameters -> REAL: cryptography refuses the
        # certificate, the BER fallback re-encodes it with asn1crypto.
        bad = signer.replace(b"\x01\x01\x0b\x05\x00", b"\x01\x01\x0b\x09\x00")
        assert bad != signer and der.count(signer) == 1
        with pytest.raises(UndecodableRequest):
            scep_codec.parse_pki_message(der.replace(signer, bad))


def test_undecodable_signer_key_is_bad_alg(pki) -> None:
    # cryptography parses a certificate's key lazily: public_key() raised ValueError out
    # of cms_signed.verify_rsa / verify_signature (no answer at all). Found by
    # tests/fuzz/fuzz_scep_message.py (corpus scep_message/undecodable-signer-key).
    req = _request(pki)
    from cryptography.hazmat.primitives.serialization import PublicFormat

    spki = pki.signer.public_key().public_bytes(_der(), PublicFormat.SubjectPublicKeyInfo)
    bit_string = spki[spki.index(b"\x03\x82"):]
    assert req.der.count(bit_string) == 1
    bad = bit_string[:5] + b"\xf0" + bit_string[6:]  # the RSAPublicKey SEQUENCE tag -> private
    with pytest.raises(ScepError, match="signer key cannot be decoded") as err:
        scep_codec.parse_pki_message(req.der.replace(bit_string, bad))
    assert err.value.fail_info is FailInfo.badAlg


def test_signer_certificate_name_cryptography_cannot_decode_is_undecodable(pki) -> None:
    # cryptography decodes names lazily and raises TypeError for a BIT STRING under the
    # CN OID (found in CSRs by tests/fuzz/fuzz_csr_policy.py). The client-made signer
    # certificate is refused at parse time (cms_signed.load_certificate on the fast
    # path, asn1crypto's DirectoryString on the other), never later from .subject.
    der = _request(pki).der
    signer = pki.signer.public_bytes(_der())
    cn = b"dev-01"
    utf8 = b"\x0c" + bytes([len(cn)]) + cn
    assert signer.count(utf8) == 2  # issuer and subject
    bad = signer.replace(utf8, b"\x03" + bytes([len(cn)]) + b"\x00" + cn[1:])
    with pytest.raises(UndecodableRequest):
        scep_codec.parse_pki_message(der.replace(signer, bad))


def test_signer_certificate_with_an_invalid_version_is_undecodable(pki) -> None:
    # x509.InvalidVersion is not a ValueError: a certificate version of 43 in the
    # pkiMessage's certificates escaped load_signed_data (no answer at all). Found by
    # tests/fuzz/fuzz_scep_message.py (corpus scep_message/certificate-version-43).
    der = _request(pki).der
    signer = pki.signer.public_bytes(_der())
    v3 = b"\xa0\x03\x02\x01\x02"
    assert signer.count(v3) == 1
    with pytest.raises(UndecodableRequest):
        scep_codec.parse_pki_message(der.replace(signer, signer.replace(v3, b"\xa0\x03\x02\x01\x2b")))


def test_object_descriptor_in_an_envelope_is_malformed(pki) -> None:
    # asn1crypto's ObjectDescriptor (like its Real) has no .native: one in the content
    # encryption algorithm's parameters raised AttributeError out of
    # load_enveloped_data. Found by tests/fuzz/fuzz_scep_message.py (corpus
    # scep_message/object-descriptor-in-envelope).
    iv = bytes(range(16))
    der = cms_envelope.encrypt(b"payload", pki.ra_cert, iv=iv)
    aes_and_iv = b"\x65\x03\x04\x01\x2a\x04\x10" + iv  # ...aes256-CBC OID, OCTET STRING IV
    assert der.count(aes_and_iv) == 1
    # an unknown cipher OID (parameters parsed as Any) with an ObjectDescriptor in them
    bad = der.replace(aes_and_iv, b"\x65\x03\x04\x01\x7f\x07\x10" + iv)
    with pytest.raises(cms_envelope.MalformedEnvelope, match="ObjectDescriptor"):
        cms_envelope.load_enveloped_data(bad)


def test_signer_info_signature_with_a_wrong_tag_is_undecodable(pki) -> None:
    # asn1crypto parses a SignerInfo's fields on first access: a signature that is not an
    # OCTET STRING raised ValueError from verify_signature (parse_pki_message, no answer).
    # The fields verification reads are now parsed in load_signed_data. Found by
    # tests/fuzz/fuzz_scep_message.py after 52,624 executions (corpus
    # scep_message/signature-wrong-tag).
    der = _request(pki).der
    si = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    sig = si["signature"]
    encoded = sig.dump()
    assert der.count(encoded) == 1
    with pytest.raises(UndecodableRequest):
        scep_codec.parse_pki_message(der.replace(encoded, b"\x00" + encoded[1:]))
