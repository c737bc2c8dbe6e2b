"""Inner contents: challengePassword string types (scep.md pitfall 10), Names."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import AttributeOID, NameOID

from enrollment import scep_codec
from enrollment.scep_inner import name_from_der
from enrollment.scep_types import FailInfo, MessageType, ScepError


def _csr(key, value: bytes, tag: _ASN1Type | None) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev")]))
        .add_attribute(AttributeOID.CHALLENGE_PASSWORD, value, _tag=tag)
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("tag", "value", "expected"),
    [
        (_ASN1Type.PrintableString, b"secret123", "secret123"),
        (_ASN1Type.UTF8String, "sécret".encode(), "sécret"),
        (_ASN1Type.IA5String, b"a+b/c=", "a+b/c="),
        (_ASN1Type.T61String, b"caf\xe9", "café"),
        (_ASN1Type.BMPString, "sé".encode("utf-16-be"), "sé"),
        (_ASN1Type.UniversalString, "ok".encode("utf-32-be"), "ok"),
        (_ASN1Type.VisibleString, b"vis", "vis"),
        (_ASN1Type.OctetString, b"octets", "octets"),
    ],
)
def test_challenge_password_any_string_type(ec_key, tag, value, expected) -> None:
    csr = _csr(ec_key, value, tag)
    assert scep_codec.challenge_password(csr) == expected
    assert scep_codec.challenge_password(csr.public_bytes(_der())) == expected


def test_no_challenge_password(ec_key) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev")]))
        .sign(ec_key, hashes.SHA256())
    )
    assert scep_codec.challenge_password(csr) is None


def test_name_round_trip_keeps_string_types() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ä GmbH", _ASN1Type.BMPString),
            x509.NameAttribute(NameOID.COMMON_NAME, "dev", _ASN1Type.PrintableString),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@example.com"),
        ]
    )
    again = name_from_der(name.public_bytes())
    assert again == name
    assert again.public_bytes() == name.public_bytes()


def test_csr_with_bad_signature_is_bad_request(pki) -> None:
    der = bytearray(pki.csr.public_bytes(_der()))
    der[-1] ^= 0x01
    with pytest.raises(ScepError) as err:
        scep_codec.parse_csr(bytes(der))
    assert err.value.fail_info is FailInfo.badRequest


@pytest.mark.parametrize("message_type", [MessageType.CertPoll, MessageType.GetCert, MessageType.GetCRL])
def test_garbage_inner_is_bad_request(message_type) -> None:
    with pytest.raises(ScepError) as err:
        scep_codec.parse_inner(message_type, b"\x30\x03\x02\x01\x00")
    assert err.value.fail_info is FailInfo.badRequest


def test_cert_rep_is_not_a_request() -> None:
    with pytest.raises(ScepError, match="not a request"):
        scep_codec.parse_inner(MessageType.CertRep, b"")


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def _bad_version(csr: x509.CertificateSigningRequest) -> bytes:
    der = csr.public_bytes(_der())
    at = der.index(b"\x02\x01\x00")  # CertificationRequestInfo.version v1(0)
    return der[:at] + b"\x02\x01\x04" + der[at + 3:]


def test_csr_with_an_unknown_version_is_bad_request(pki) -> None:
    # cryptography raises x509.InvalidVersion (not a ValueError) for version != 0: it
    # escaped parse_csr, so a signed PKCSReq carrying such a CSR got no CertRep at all.
    # Found by tests/fuzz/fuzz_csr_policy.py (corpus csr_policy/csr-version-4).
    with pytest.raises(ScepError, match="not a PKCS#10 request") as err:
        scep_codec.parse_inner(MessageType.PKCSReq, _bad_version(pki.csr))
    assert err.value.fail_info is FailInfo.badRequest


def _bit_string_cn(csr: x509.CertificateSigningRequest, cn: bytes) -> bytes:
    der = csr.public_bytes(_der())
    utf8 = b"\x0c" + bytes([len(cn)]) + cn
    return der.replace(utf8, b"\x03" + bytes([len(cn)]) + b"\x00" + cn[1:], 1)


def test_csr_with_a_bit_string_cn_is_bad_request(pki) -> None:
    # cryptography decodes names lazily and raises TypeError (not ValueError) for a
    # BIT STRING under an OID other than x500UniqueIdentifier. Found by
    # tests/fuzz/fuzz_csr_policy.py.
    with pytest.raises(ScepError, match="CSR subject cannot be decoded") as err:
        scep_codec.parse_inner(MessageType.PKCSReq, _bit_string_cn(pki.csr, b"dev-01"))
    assert err.value.fail_info is FailInfo.badRequest


def test_csr_with_invalid_utf8_in_its_cn_is_bad_request(pki) -> None:
    # cryptography decodes the subject lazily and raises ValueError (ParseError
    # InvalidValue) for a UTF8String that is not UTF-8: parse_csr caught only the
    # TypeError of a refused value type, so the PKCSReq got no CertRep. Found by
    # tests/fuzz/fuzz_scep_message.py after 263,348 executions (corpus
    # scep_message/invalid-utf8-cn).
    der = pki.csr.public_bytes(_der())
    cn = b"\x0c\x06dev-01"
    assert der.count(cn) == 1
    bad = der.replace(cn, b"\x0c\x06dev\xf8\x01\x02")
    with pytest.raises(ScepError, match="CSR subject cannot be decoded") as err:
        scep_codec.parse_inner(MessageType.PKCSReq, bad)
    assert err.value.fail_info is FailInfo.badRequest
