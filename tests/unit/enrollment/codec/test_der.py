"""enrollment.der writes what the asn1crypto builders wrote, byte for byte (RSA PKCS#1 v1.5
signatures are deterministic, so whole SignedData can be compared)."""

from __future__ import annotations

import datetime as dt
from functools import cache

import pytest
from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from enrollment import cms_envelope, cms_signed, der
from enrollment.scep_types import ContentCipher, DigestAlgorithm, KeyTransport, ScepString
from pki import profiles

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@cache
def pki():  # noqa: ANN201
    rk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = profiles.root_certificate(rk, "Root", "t", NOW - dt.timedelta(days=1), 3650)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = profiles.intermediate_certificate(key, "g", "t", root, rk, NOW - dt.timedelta(days=1), 30)
    return root, ca, key


def _asn1(cert) -> asn1_x509.Certificate:  # noqa: ANN001
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def reference_signed_data(content, signer_cert, key, digest, attributes, certificates, signing_time):  # noqa: ANN001, ANN201, PLR0913
    """The asn1crypto builder cms_signed used before enrollment.der."""
    attrs = list(attributes)
    attrs.append(cms.CMSAttribute({"type": "content_type", "values": ["data"]}))
    attrs.append(cms.CMSAttribute({"type": "message_digest",
                                   "values": [cms_signed.digest(digest, content or b"")]}))
    if signing_time is not None:
        attrs.append(cms.CMSAttribute({"type": "signing_time",
                                       "values": [cms.Time(name="utc_time", value=signing_time)]}))
    signed = cms.CMSAttributes([cms.CMSAttribute.load(e) for e in sorted(a.dump() for a in attrs)])
    signature, sig_name = cms_signed._sign(key, signed.dump(), digest)  # noqa: SLF001
    a_signer = _asn1(signer_cert)
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": a_signer.issuer, "serial_number": a_signer.serial_number}),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest.value}),
        "signed_attrs": signed,
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": sig_name}),
        "signature": signature,
    })
    encap: dict = {"content_type": "data"}
    if content is not None:
        encap["content"] = content
    certs = [signer_cert, *[c for c in certificates if c != signer_cert]]
    sd = cms.SignedData({"version": "v1", "digest_algorithms": [{"algorithm": digest.value}],
                         "encap_content_info": encap, "certificates": [_asn1(c) for c in certs],
                         "signer_infos": [signer_info]})
    return cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump()


@pytest.mark.parametrize("content", [None, b"", b"x" * 200, b"y" * 70000])
@pytest.mark.parametrize("chain", ["none", "root", "ca+root"])
@pytest.mark.parametrize("digest", [DigestAlgorithm.SHA256, DigestAlgorithm.SHA512])
def test_signed_data_is_byte_identical(content, chain, digest) -> None:  # noqa: ANN001
    root, ca, key = pki()
    certs = {"none": (), "root": (root,), "ca+root": (ca, root)}[chain]
    attrs = [cms.CMSAttribute({"type": "scep_message_type",
                               "values": [ScepString(name="printable_string", value="3")]}),
             cms.CMSAttribute({"type": "scep_sender_nonce", "values": [b"n" * 16]})]
    for when in (None, NOW, NOW.astimezone(dt.timezone(dt.timedelta(hours=-5)))):
        expected = reference_signed_data(content, ca, key, digest, attrs, certs, when)
        assert cms_signed.build_signed_data(content, ca, key, digest, attrs, certificates=certs,
                                            signing_time=when) == expected


def test_degenerate_is_byte_identical() -> None:
    root, ca, _ = pki()
    for certs in ([ca], [root, ca], [ca, root]):
        expected = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData({
            "version": "v1", "digest_algorithms": [], "encap_content_info": {"content_type": "data"},
            "certificates": [_asn1(c) for c in certs], "signer_infos": []})}).dump()
        assert cms_signed.degenerate_signed_data(certs) == expected


@pytest.mark.parametrize("cipher", list(ContentCipher))
@pytest.mark.parametrize("kt", list(KeyTransport))
def test_envelope_is_byte_identical(cipher, kt) -> None:  # noqa: ANN001
    _, ca, key = pki()
    ckey, iv = b"k" * cipher.key_size, b"i" * cipher.block_size
    built = cms_envelope.encrypt(b"secret" * 20, ca, cipher, kt, content_key=ckey, iv=iv)
    env = cms_envelope.load_enveloped_data(built)
    encrypted_key = env["recipient_infos"][0].chosen["encrypted_key"].native
    a_cert = _asn1(ca)
    ktri = cms.KeyTransRecipientInfo({
        "version": "v0",
        "rid": cms.RecipientIdentifier(name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber(
            {"issuer": a_cert.issuer, "serial_number": a_cert.serial_number})),
        "key_encryption_algorithm": cms_envelope._key_encryption_algorithm(kt),  # noqa: SLF001
        "encrypted_key": encrypted_key,
    })
    ciphertext = cms_envelope.encrypted_content(env)
    expected = cms.ContentInfo({"content_type": "enveloped_data", "content": cms.EnvelopedData({
        "version": "v0", "recipient_infos": [cms.RecipientInfo(name="ktri", value=ktri)],
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": cipher.value,
                                             "parameters": core.OctetString(iv)},
            "encrypted_content": ciphertext}})}).dump()
    assert built == expected
    assert cms_envelope.decrypt(built, ca, key).content == b"secret" * 20


def test_issuer_and_serial_and_lengths() -> None:
    root, ca, _ = pki()
    a = _asn1(ca)
    expected = cms.IssuerAndSerialNumber({"issuer": a.issuer, "serial_number": a.serial_number})
    assert der.issuer_and_serial(ca.public_bytes(Encoding.DER)) == expected.dump()
    for n in (0, 1, 127, 128, 255, 256, 65535, 65536, 2**24):
        assert der.octet_string(b"\0" * n) == core.OctetString(b"\0" * n).dump()
    for v in (0, 1, 127, 128, 255, 256, 2**64, 2**159 + 12345):
        assert der.integer(v) == core.Integer(v).dump()
    assert der.utc_time(NOW) == core.UTCTime(NOW).dump()
    del root
