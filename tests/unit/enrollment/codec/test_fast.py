"""enrollment.cms_fast: the DER fast path gives what the asn1crypto path gives, or declines."""

from __future__ import annotations

import dataclasses

import pytest

from enrollment import cms_envelope, cms_fast, scep_client, scep_codec
from enrollment.cms_ber import to_indefinite_ber
from enrollment.scep_client import RequestOptions
from enrollment.scep_types import ContentCipher, DigestAlgorithm, FailInfo, KeyTransport, ScepError

VECTORS = ("certmonger-0.79.17-pkcsreq.der", "certmonger-0.79.17-getcertinitial.der",
           "scepclient-2.1.0-pkcsreq.der", "scepclient-2.1.0-renewalreq.der")


def slow(data: bytes, monkeypatch: pytest.MonkeyPatch) -> scep_codec.PkiMessage:
    with monkeypatch.context() as m:
        m.setattr(scep_codec, "_parse_fast", lambda _data: None)
        return scep_codec.parse_pki_message(data)


def assert_same(fast: scep_codec.PkiMessage, ref: scep_codec.PkiMessage) -> None:
    for f in dataclasses.fields(scep_codec.PkiMessage):
        if f.name != "envelope":
            a, b = getattr(fast, f.name), getattr(ref, f.name)
            assert a == b and type(a) is type(b), f.name


@pytest.mark.parametrize("name", VECTORS)
def test_real_clients_take_the_fast_path(pki, name: str, monkeypatch) -> None:
    data = pki.vector(name)
    fast = scep_codec._parse_fast(data)  # noqa: SLF001
    assert fast is not None and isinstance(fast.envelope, cms_fast.FastEnvelope)
    assert_same(fast, slow(data, monkeypatch))


@pytest.mark.parametrize("cipher", list(ContentCipher))
@pytest.mark.parametrize("digest", [DigestAlgorithm.SHA1, DigestAlgorithm.SHA256,
                                    DigestAlgorithm.SHA512])
def test_generated_requests_same_message_and_content(pki, cipher, digest, monkeypatch) -> None:
    opts = RequestOptions(cipher=cipher, digest=digest, signing_time=pki.now)
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert,
                                     options=opts)
    fast = scep_codec._parse_fast(req.der)  # noqa: SLF001
    ref = slow(req.der, monkeypatch)
    assert fast is not None
    assert_same(fast, ref)
    assert (scep_codec.decrypt_inner(fast, pki.ra_cert, pki.ra_key)
            == scep_codec.decrypt_inner(ref, pki.ra_cert, pki.ra_key))


def test_oaep_envelope_is_read_by_asn1crypto(pki) -> None:
    opts = RequestOptions(key_transport=KeyTransport.RSA_OAEP_SHA256, signing_time=pki.now)
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert,
                                     options=opts)
    msg = scep_codec.parse_pki_message(req.der)
    assert not isinstance(msg.envelope, cms_fast.FastEnvelope)
    assert scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key).content


def test_ber_declines_and_still_parses(pki) -> None:
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert,
                                     options=RequestOptions(signing_time=pki.now))
    ber = to_indefinite_ber(req.der)
    assert cms_fast.parse_signed(ber) is None
    assert scep_codec._parse_fast(ber) is None  # noqa: SLF001
    msg = scep_codec.parse_pki_message(ber)
    assert msg.transaction_id == req.transaction_id
    assert scep_codec.decrypt_inner(msg, pki.ra_cert, pki.ra_key).content


def test_bad_signature_declines_then_fails_as_before(pki) -> None:
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert,
                                     options=RequestOptions(signing_time=pki.now))
    data = bytearray(req.der)
    data[-5] ^= 0x01  # inside the signature
    assert scep_codec._parse_fast(bytes(data)) is None  # noqa: SLF001
    with pytest.raises(ScepError) as err:
        scep_codec.parse_pki_message(bytes(data))
    assert err.value.fail_info is FailInfo.badMessageCheck


def test_truncated_and_garbage_decline() -> None:
    for data in (b"", b"\x30", b"\x30\x80\x00\x00", b"\x30\x03\x02\x01\x00", bytes(range(256))):
        assert cms_fast.parse_signed(data) is None
        assert cms_fast.parse_enveloped(data) is None


def test_fast_envelope_algorithms_equal_asn1crypto(pki) -> None:
    req = scep_client.build_pkcs_req(pki.csr, pki.signer, pki.client_key, pki.ra_cert,
                                     options=RequestOptions(signing_time=pki.now))
    content = scep_codec.parse_pki_message(req.der).enveloped_content
    assert content is not None
    fast = cms_fast.parse_enveloped(content)
    assert fast is not None
    assert (cms_envelope.envelope_algorithms(fast)
            == cms_envelope.envelope_algorithms(cms_envelope.load_enveloped_data(content)))
