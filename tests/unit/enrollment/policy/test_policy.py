from __future__ import annotations

import hashlib
import ipaddress

import pytest
from asn1crypto import core as asn1
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from enrollment.policy import (
    CLIENT_AUTH,
    CsrReason,
    CsrRejected,
    GroupCsrPolicy,
    apply_policy,
    challenge_password_from_der,
    check_csr,
    extract_csr_facts,
    key_matches_spec,
    load_csr,
    normalize_san,
    validate_key_spec,
)


def der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


class TestFacts:
    def test_basic_facts(self, h):
        key = h.ec_key()
        csr = h.make_csr(
            key,
            sans=[
                x509.DNSName("Host.Example.COM."),
                x509.RFC822Name("Alice@Example.COM"),
                x509.UniformResourceIdentifier("tag:microsoft.com,2022-09-14:sid:S-1-5-21"),
                x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
                h.upn("alice@CORP.example"),
            ],
            ekus=[ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        )
        facts = extract_csr_facts(csr)
        assert facts.subject_cn == "dev-01.example.com"
        assert facts.sans == (
            "dns:host.example.com",
            "email:Alice@example.com",
            "uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21",
            "ip:2001:db8::1",
            "upn:alice@corp.example",
        )
        assert facts.ekus == (CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH.dotted_string)
        assert (facts.key_type, facts.key_bits, facts.key_spec) == ("ec", 256, "ec-p256")
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert facts.spki_sha256 == hashlib.sha256(spki).digest()
        assert facts.signature_valid and not facts.requests_ca
        assert facts.challenge_password is None

    def test_accepts_der_and_pem_bytes(self, h):
        csr = h.make_csr()
        assert extract_csr_facts(der(csr)).subject_cn == "dev-01.example.com"
        pem = csr.public_bytes(serialization.Encoding.PEM)
        assert extract_csr_facts(pem).subject_cn == "dev-01.example.com"

    @pytest.mark.parametrize(
        "key_name, spec",
        [(("rsa", 2048), "rsa-2048"), (("ec", "p384"), "ec-p384"), (("ed",), "ed25519")],
    )
    def test_key_specs(self, h, key_name, spec):
        key = {"rsa": lambda: h.rsa_key(2048), "ec": lambda: h.ec_key("p384"),
               "ed": h.ed_key}[key_name[0]]()
        assert extract_csr_facts(h.make_csr(key)).key_spec == spec

    def test_garbage_is_bad_format(self):
        with pytest.raises(CsrRejected) as e:
            extract_csr_facts(b"\x30\x03\x02\x01\x00")
        assert e.value.reason is CsrReason.BAD_FORMAT

    def test_oversized_is_bad_format(self):
        with pytest.raises(CsrRejected, match="bad_format"):
            load_csr(b"\x30" * (70 * 1024))

    def test_other_name_and_dirname_sans_are_labelled(self, h):
        other = x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), asn1.UTF8String("x").dump())
        dn = x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d")]))
        facts = extract_csr_facts(h.make_csr(sans=[other, dn]))
        assert facts.sans == ("othername:1.2.3.4", "dirname:CN=d")


class TestChallengePassword:
    """challengePassword in every string form clients send (scep.md pitfall 10)."""

    @pytest.mark.parametrize(
        "value",
        [
            asn1.PrintableString("Abc123 +/=").dump(),
            asn1.UTF8String("pässwörd-ü").dump(),
            asn1.IA5String("abc_def@x").dump(),
            asn1.BMPString("bmp-päss").dump(),
            asn1.OctetString("octet-päss".encode()).dump(),
            asn1.TeletexString("teletex").dump(),
            asn1.UniversalString("univ-ü").dump(),
        ],
        ids=["printable", "utf8", "ia5", "bmp", "octet", "teletex", "universal"],
    )
    def test_string_forms(self, h, value):
        csr_der = h.raw_challenge_csr([value])
        expected = asn1.load(value).native
        if isinstance(expected, bytes):
            expected = expected.decode()
        assert challenge_password_from_der(csr_der) == expected
        facts = extract_csr_facts(csr_der)
        assert facts.challenge_password == expected
        assert facts.signature_valid

    @pytest.mark.parametrize("tag", [_ASN1Type.PrintableString, _ASN1Type.UTF8String])
    def test_cryptography_built(self, h, tag):
        csr = h.make_csr(challenge="S3cret-value", challenge_tag=tag)
        assert extract_csr_facts(csr).challenge_password == "S3cret-value"

    def test_two_values_rejected(self, h):
        v = asn1.PrintableString("a").dump()
        with pytest.raises(CsrRejected, match="bad_format"):
            challenge_password_from_der(h.raw_challenge_csr([v, asn1.PrintableString("b").dump()]))

    def test_two_attributes_rejected(self, h):
        v = asn1.PrintableString("a").dump()
        with pytest.raises(CsrRejected, match="bad_format"):
            challenge_password_from_der(h.raw_challenge_csr([v], attribute_count=2))

    def test_non_string_rejected(self, h):
        with pytest.raises(CsrRejected, match="bad_format"):
            challenge_password_from_der(h.raw_challenge_csr([asn1.Integer(5).dump()]))

    def test_non_utf8_octets_rejected(self, h):
        with pytest.raises(CsrRejected, match="bad_format"):
            challenge_password_from_der(h.raw_challenge_csr([asn1.OctetString(b"\xff\xfe").dump()]))

    def test_constructed_octet_string_with_a_bad_chunk_rejected(self, h):
        # A BER constructed OCTET STRING is parsed chunk by chunk only at .native: the
        # string decoder raised ValueError instead of CsrRejected. Its callers caught it
        # (challengePassword) or never see BER (cryptography parses SANs as DER), so the
        # contract was broken but not reachable. Found by tests/fuzz/fuzz_csr_policy.py.
        from enrollment.policy import _decode_string_der

        bad = b"\x24\x80\x0c\x01A\x00\x00"  # indefinite OCTET STRING, a UTF8String chunk
        with pytest.raises(CsrRejected, match="bad_format"):
            _decode_string_der(bad)
        with pytest.raises(CsrRejected, match="bad_format"):
            challenge_password_from_der(h.raw_challenge_csr([bad]))
        assert _decode_string_der(b"\x24\x80\x04\x01A\x00\x00") == "A"

    def test_too_long_rejected(self, h):
        with pytest.raises(CsrRejected, match="bad_format"):
            challenge_password_from_der(h.raw_challenge_csr([asn1.UTF8String("a" * 5000).dump()]))


class TestPolicy:
    def reject(self, csr, policy=None) -> CsrReason:
        with pytest.raises(CsrRejected) as e:
            check_csr(csr, policy or GroupCsrPolicy())
        return e.value.reason

    def test_default_accepts_p256_and_rsa2048(self, h):
        assert check_csr(h.make_csr(h.ec_key()), GroupCsrPolicy()).key_spec == "ec-p256"
        assert check_csr(h.make_csr(h.rsa_key(2048)), GroupCsrPolicy()).key_bits == 2048
        assert check_csr(h.make_csr(h.ec_key("p384")), GroupCsrPolicy()).key_bits == 384

    def test_rsa_1024_refused(self, h):
        assert self.reject(h.make_csr(h.rsa_key(1024))) is CsrReason.KEY_SIZE

    def test_rsa_above_max_refused(self, h):
        policy = GroupCsrPolicy(rsa_min_bits=1024, rsa_max_bits=1024)
        assert self.reject(h.make_csr(h.rsa_key(2048)), policy) is CsrReason.KEY_SIZE

    def test_rsa_not_allowed(self, h):
        policy = GroupCsrPolicy(rsa_min_bits=None)
        assert self.reject(h.make_csr(h.rsa_key(2048)), policy) is CsrReason.KEY_TYPE

    def test_rsa_exponent_3_refused(self, h):
        assert self.reject(h.make_csr(h.rsa_key(2048, 3))) is CsrReason.WEAK_KEY

    def test_curve_not_allowed(self, h):
        assert self.reject(h.make_csr(h.ec_key("p521"))) is CsrReason.KEY_SIZE
        assert self.reject(h.make_csr(h.ec_key("k256"))) is CsrReason.KEY_SIZE

    def test_ec_not_allowed(self, h):
        assert self.reject(h.make_csr(), GroupCsrPolicy(ec_curve_bits=frozenset())) is (
            CsrReason.KEY_TYPE
        )

    def test_ed25519_off_by_default(self, h):
        assert self.reject(h.make_csr(h.ed_key())) is CsrReason.KEY_TYPE
        facts = check_csr(h.make_csr(h.ed_key()), GroupCsrPolicy(allow_ed25519=True))
        assert facts.key_type == "ed25519"

    def test_ca_true_refused(self, h):
        assert self.reject(h.make_csr(ca=True)) is CsrReason.CA_REQUESTED

    def test_ca_false_and_absent_accepted(self, h):
        check_csr(h.make_csr(ca=False), GroupCsrPolicy())
        check_csr(h.make_csr(ca=None), GroupCsrPolicy())

    def test_bad_signature(self, h):
        raw = bytearray(der(h.make_csr(h.rsa_key(2048))))
        raw[-5] ^= 0x01  # inside the RSA signature value
        assert self.reject(bytes(raw)) is CsrReason.BAD_SIGNATURE

    def test_eku_not_allowed(self, h):
        csr = h.make_csr(ekus=[ExtendedKeyUsageOID.CODE_SIGNING])
        assert self.reject(csr) is CsrReason.EKU_NOT_ALLOWED
        check_csr(csr, GroupCsrPolicy(allowed_ekus=None))

    def test_no_eku_accepted(self, h):
        assert check_csr(h.make_csr(ekus=()), GroupCsrPolicy()).ekus == ()

    def test_san_type_not_allowed(self, h):
        other = x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), asn1.UTF8String("x").dump())
        assert self.reject(h.make_csr(sans=[other])) is CsrReason.SAN_NOT_ALLOWED

    def test_too_many_sans(self, h):
        sans = [x509.DNSName(f"h{i}.example") for i in range(3)]
        assert self.reject(h.make_csr(sans=sans), GroupCsrPolicy(max_sans=2)) is (
            CsrReason.TOO_MANY_SANS
        )

    def test_missing_cn(self, h):
        csr = h.make_csr(cn=None, sans=[x509.DNSName("a.example")])
        assert self.reject(csr) is CsrReason.MISSING_CN
        assert check_csr(csr, GroupCsrPolicy(require_cn=False)).subject_cn is None

    def test_apply_policy_is_separate(self, h):
        facts = extract_csr_facts(h.make_csr(h.rsa_key(1024)))  # extraction does not judge
        with pytest.raises(CsrRejected):
            apply_policy(facts, GroupCsrPolicy())

    def test_reason_is_metric_label(self, h):
        with pytest.raises(CsrRejected) as e:
            check_csr(h.make_csr(ca=True), GroupCsrPolicy())
        assert str(e.value.reason) == "ca_requested"


class TestConfigShapes:
    def test_from_key_types(self):
        p = GroupCsrPolicy.from_key_types({"ec": [256, 384], "rsa": 3072}, max_validity_days=90)
        assert p.ec_curve_bits == {256, 384} and p.rsa_min_bits == 3072
        assert p.max_validity_days == 90 and not p.allow_ed25519

    @pytest.mark.parametrize(
        "bad", [{"dsa": 2048}, {"rsa": 1024}, {"ec": [255]}, {"ec": 256}]
    )
    def test_from_key_types_rejects(self, bad):
        with pytest.raises(ValueError):
            GroupCsrPolicy.from_key_types(bad)

    def test_key_spec_grammar(self, h):
        rsa = extract_csr_facts(h.make_csr(h.rsa_key(2048)))
        ec = extract_csr_facts(h.make_csr(h.ec_key()))
        assert key_matches_spec(rsa, "rsa-2048") and key_matches_spec(rsa, "RSA-2048+")
        assert not key_matches_spec(rsa, "rsa-3072+") and not key_matches_spec(rsa, "rsa-3072")
        assert key_matches_spec(ec, "ec-p256") and not key_matches_spec(ec, "ec-p384")
        assert not key_matches_spec(ec, "rsa-2048+")
        for bad in ("rsa-big", "ec-p999", "dsa"):
            with pytest.raises(ValueError):
                validate_key_spec(bad)

    @pytest.mark.parametrize(
        "raw, norm",
        [("DNS:Host.Example.", "dns:host.example"), ("ip:10.0.0.001", None),
         ("ip:::ffff:1.2.3.4", "ip:::ffff:102:304"), ("uri:HTTP://X", "uri:HTTP://X")],
    )
    def test_normalize_san(self, raw, norm):
        if norm is None:
            with pytest.raises(ValueError):
                normalize_san(raw)
        else:
            assert normalize_san(raw) == norm


def test_csr_with_a_bit_string_cn_is_bad_format(h):
    # cryptography raises TypeError for a BIT STRING name value under the CN OID when
    # .subject is first read: it escaped extract_csr_facts. Found by
    # tests/fuzz/fuzz_csr_policy.py.
    raw = der(h.make_csr(h.ec_key()))
    cn = b"dev-01.example.com"
    raw = raw.replace(b"\x0c\x12" + cn, b"\x03\x12\x00" + cn[1:], 1)
    with pytest.raises(CsrRejected, match="malformed CSR") as err:
        extract_csr_facts(raw)
    assert err.value.reason is CsrReason.BAD_FORMAT


def test_csr_with_an_unknown_version_is_bad_format(h):
    # x509.InvalidVersion is not a ValueError: it escaped load_csr / extract_csr_facts.
    # Found by tests/fuzz/fuzz_csr_policy.py (corpus csr_policy/csr-version-4).
    raw = der(h.make_csr(h.ec_key()))
    at = raw.index(b"\x02\x01\x00")
    raw = raw[:at] + b"\x02\x01\x04" + raw[at + 3:]
    with pytest.raises(CsrRejected) as err:
        extract_csr_facts(raw)
    assert err.value.reason is CsrReason.BAD_FORMAT
