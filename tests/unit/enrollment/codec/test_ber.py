"""BER input (Apple indefinite lengths, Go constructed strings) parses; output is DER."""

from __future__ import annotations

import pytest
from asn1crypto import cms

from enrollment import cms_ber, cms_envelope, scep_client, scep_codec
from enrollment.scep_client import RequestOptions
from enrollment.scep_types import ContentCipher, KeyTransport, MessageType


@pytest.mark.parametrize("cipher", [ContentCipher.AES128_CBC, ContentCipher.DES3_CBC])
@pytest.mark.parametrize("kt", [KeyTransport.RSA_PKCS1V15, KeyTransport.RSA_OAEP_SHA256])
def test_indefinite_length_request_round_trip(pki, cipher, kt) -> None:
    opts = RequestOptions(cipher=cipher, key_transport=kt, ber=True, signing_time=pki.now)
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert, options=opts)
    assert req.der[:2] == b"\x30\x80"  # indefinite outer ContentInfo
    assert b"\x24\x80\x04" in req.der  # chunked OCTET STRING somewhere
    msg = scep_codec.parse_pki_message(req.der)
    assert msg.message_type is MessageType.PKCSReq
    assert msg.signing_time == pki.now
    inner = scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key)
    assert scep_codec.parse_csr(inner.content, msg).public_key() == pki.csr.public_key()
    # The reply is strict DER regardless.
    rep = scep_codec.build_cert_rep_success(msg, [pki.issue()], pki.ra_cert, pki.ra_key)
    assert cms.ContentInfo.load(rep).dump(force=True) == rep
    scep_client.parse_cert_rep(rep, pki.signer, pki.client_key, request=req)


def test_indefinite_ber_signed_attributes_are_checked_as_der(pki) -> None:
    """The signature covers the DER SET; a BER re-encoding on the wire still verifies."""
    req = scep_client.build_pkcs_req(
        pki.csr, pki.signer, pki.client_key, pki.ra_cert, options=RequestOptions(ber=True)
    )
    tampered = bytearray(req.der)
    nonce_at = tampered.find(req.sender_nonce)
    tampered[nonce_at] ^= 0xFF
    with pytest.raises(scep_codec.ScepError):
        scep_codec.parse_pki_message(bytes(tampered))


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + cms_ber._encode_length(len(body)) + body


def _go_style(der: bytes, chunk: int = 64) -> bytes:
    """Rebuild an envelope with encryptedContent as a definite constructed [0]."""
    info = cms.ContentInfo.load(der)
    env = info["content"]
    eci = env["encrypted_content_info"]
    ciphertext = eci["encrypted_content"].native
    chunks = b"".join(_tlv(0x04, ciphertext[i : i + chunk]) for i in range(0, len(ciphertext), chunk))
    eci_der = _tlv(
        0x30,
        eci["content_type"].dump() + eci["content_encryption_algorithm"].dump() + _tlv(0xA0, chunks),
    )
    env_der = _tlv(0x30, env["version"].dump() + env["recipient_infos"].dump() + eci_der)
    return _tlv(0x30, info["content_type"].dump() + _tlv(0xA0, env_der))


def test_go_style_constructed_encrypted_content(pki) -> None:
    """micromdm's pkcs7 writes encryptedContent as a *definite* constructed [0]."""
    go_style = _go_style(cms_envelope.encrypt(b"payload" * 40, pki.ra_cert))
    with pytest.raises(ValueError, match="constructed"):  # what asn1crypto alone says
        cms.ContentInfo.load(go_style)["content"].native  # noqa: B018
    assert cms_envelope.decrypt(go_style, pki.ra_cert, pki.ra_key).content == b"payload" * 40


def test_definite_constructed_econtent(pki) -> None:
    """A definite-length constructed OCTET STRING eContent is merged before digesting."""
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert)
    msg = scep_codec.parse_pki_message(req.der)
    env = msg.enveloped_content
    prim = _tlv(0x04, env)
    assert req.der.count(prim) == 1
    constructed = _tlv(0x24, _tlv(0x04, env[:100]) + _tlv(0x04, env[100:]))
    info = cms.ContentInfo.load(req.der)
    sd = info["content"]
    encap = _tlv(0x30, sd["encap_content_info"]["content_type"].dump() + _tlv(0xA0, constructed))
    body = (
        sd["version"].dump()
        + sd["digest_algorithms"].dump()
        + encap
        + sd["certificates"].dump()
        + sd["signer_infos"].dump()
    )
    der = _tlv(0x30, info["content_type"].dump() + _tlv(0xA0, _tlv(0x30, body)))
    again = scep_codec.parse_pki_message(der)
    assert again.enveloped_content == env


class TestTlv:
    def test_normalize_is_identity_on_der(self, pki) -> None:
        der = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert).der
        assert cms_ber.normalize(der) is der

    def test_normalize_undoes_indefinite_lengths(self) -> None:
        der = cms.IssuerAndSerialNumber({"issuer": _name(), "serial_number": 7}).dump()
        ber = cms_ber.to_indefinite_ber(der)
        assert ber != der and ber[1] == 0x80
        assert cms_ber.normalize(ber) == der

    def test_normalize_merges_universal_constructed_strings(self) -> None:
        ber = b"\x24\x80\x04\x02ab\x04\x01c\x00\x00"
        assert cms_ber.normalize(ber) == b"\x04\x03abc"
        assert cms_ber.string_value(ber) == b"abc"

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"\x30",
            b"\x30\x05\x02\x01",
            b"\x04\x80ab",
            b"\x30\x80\x02\x01\x00",
            b"\x30\x89" + b"\x01" * 9,
            b"\x1f",
        ],
    )
    def test_malformed(self, data: bytes) -> None:
        with pytest.raises(cms_ber.BerError):
            cms_ber.read_tlv(data)

    def test_deep_nesting_is_bounded(self) -> None:
        data = b"\x30\x80" * 100 + b"\x00\x00" * 100
        with pytest.raises(cms_ber.BerError, match="deep"):
            cms_ber.read_tlv(data)

    def test_high_tag_numbers(self) -> None:
        tlv = cms_ber.read_tlv(b"\x9f\x81\x01\x01\x00")
        assert tlv.tag == b"\x9f\x81\x01" and tlv.end == 5

    def test_unwrap_explicit(self) -> None:
        assert cms_ber.unwrap_explicit(b"\xa0\x03\x02\x01\x05") == b"\x02\x01\x05"


def _name():
    from asn1crypto import x509 as asn1_x509

    return asn1_x509.Name.build({"common_name": "certgate test"})
