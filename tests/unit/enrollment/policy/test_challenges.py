from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from enrollment import challenges as ch
from enrollment.challenges import (
    ChallengeBinding,
    ChallengeReason,
    ChallengeRejected,
    FirstUse,
    Replay,
    RetryPending,
    RetryReturnsIssued,
    StaticSecret,
    check_binding,
    new_challenge,
    parse_token,
    reuse_decision,
    verify_dynamic,
    verify_static,
)
from enrollment.policy import extract_csr_facts

SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32


@pytest.fixture
def binding(now) -> ChallengeBinding:
    return ChallengeBinding(
        group="staff",
        expires_at=now + timedelta(hours=1),
        subject_cn="dev-01.example.com",
        sans=("DNS:dev-01.example.com", "email:alice@example.com"),
        device_id="device-42",
        key_types=("ec-p256", "rsa-2048+"),
    )


def digest_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, object]]:
    """Record calls to hmac.compare_digest made by enrollment.challenges."""
    real = hmac.compare_digest
    calls: list[tuple[object, object]] = []

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(ch.hmac, "compare_digest", spy)
    return calls


def reason(exc_info: pytest.ExceptionInfo[ChallengeRejected]) -> ChallengeReason:
    return exc_info.value.reason


class TestToken:
    def test_format(self, binding, now, h):
        token, record = new_challenge(SECRET, binding, now)
        assert len(token) == 42
        assert re.fullmatch(r"[A-Z2-7]{42}", token)
        assert re.fullmatch(h.PRINTABLE, token)
        raw = base64.b32decode(token + "======")
        assert raw[:16].hex() == record.jti

    def test_record_stores_only_hash(self, binding, now):
        token, record = new_challenge(SECRET, binding, now)
        assert record.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
        assert token not in repr(record)
        assert record.used_at is None and record.binding is binding

    def test_tokens_are_unique(self, binding, now):
        assert new_challenge(SECRET, binding, now)[0] != new_challenge(SECRET, binding, now)[0]

    def test_parse_round_trip(self, binding, now):
        token, record = new_challenge(SECRET, binding, now)
        assert parse_token(SECRET, token) == record.jti

    def test_lower_case_and_whitespace_tolerated(self, binding, now):
        token, record = new_challenge(SECRET, binding, now)
        assert parse_token(SECRET, f" {token.lower()}\n") == record.jti

    def test_other_secret_rejected(self, binding, now):
        token, _ = new_challenge(OTHER_SECRET, binding, now)
        with pytest.raises(ChallengeRejected) as e:
            parse_token(SECRET, token)
        assert reason(e) is ChallengeReason.UNKNOWN_CHALLENGE

    def test_forged_mac_rejected(self, binding, now):
        token, _ = new_challenge(SECRET, binding, now)
        raw = bytearray(base64.b32decode(token + "======"))
        raw[-1] ^= 1
        forged = base64.b32encode(bytes(raw)).decode().rstrip("=")
        with pytest.raises(ChallengeRejected) as e:
            parse_token(SECRET, forged)
        assert reason(e) is ChallengeReason.UNKNOWN_CHALLENGE

    def test_jti_swap_rejected(self, binding, now):
        token, _ = new_challenge(SECRET, binding, now)
        raw = bytearray(base64.b32decode(token + "======"))
        raw[0] ^= 1
        with pytest.raises(ChallengeRejected, match="unknown_challenge"):
            parse_token(SECRET, base64.b32encode(bytes(raw)).decode().rstrip("="))

    @pytest.mark.parametrize(
        "bad",
        ["", "A" * 41, "A" * 43, "A" * 41 + "1", "A" * 41 + "_", "A" * 41 + "=", "A" * 500,
         "static-secret"],
    )
    def test_malformed_rejected(self, bad):
        with pytest.raises(ChallengeRejected) as e:
            parse_token(SECRET, bad)
        assert reason(e) is ChallengeReason.BAD_FORMAT

    def test_non_canonical_trailing_bits_rejected(self, binding, now):
        token, _ = new_challenge(SECRET, binding, now)
        # 26 bytes = 208 bits; the last char carries 3 bits + 2 padding bits that must be 0.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        last = alphabet.index(token[-1])
        assert last & 0b11 == 0
        with pytest.raises(ChallengeRejected, match="bad_format"):
            parse_token(SECRET, token[:-1] + alphabet[last | 1])

    def test_short_secret_is_our_bug(self, binding, now):
        with pytest.raises(ValueError):
            new_challenge(b"short", binding, now)

    def test_ttl_bounds(self, now):
        new_challenge(SECRET, ChallengeBinding("staff", now + timedelta(days=7)), now)
        for bad in (now, now + timedelta(days=7, seconds=1)):
            with pytest.raises(ValueError):
                new_challenge(SECRET, ChallengeBinding("staff", bad), now)

    def test_mac_compare_is_constant_time(self, binding, now, monkeypatch):
        token, _ = new_challenge(SECRET, binding, now)
        calls = digest_spy(monkeypatch)
        parse_token(SECRET, token)
        assert len(calls) == 1 and len(calls[0][0]) == 10


class TestBinding:
    def csr(self, h, **kw):
        kw.setdefault("sans", [x509.DNSName("dev-01.example.com")])
        return h.make_csr(**kw)

    def test_accepts_matching_csr(self, binding, now, h):
        check_binding(binding, self.csr(h), "staff", now)
        check_binding(binding, self.csr(h, key=h.rsa_key(2048)), "staff", now)
        both = [x509.DNSName("DEV-01.example.com"), x509.RFC822Name("alice@EXAMPLE.com")]
        check_binding(binding, self.csr(h, sans=both), "staff", now)
        check_binding(binding, self.csr(h, sans=[]), "staff", now)  # subset

    def test_accepts_group_object_and_facts(self, binding, now, h, pki):
        check_binding(binding, extract_csr_facts(self.csr(h)), pki.staff, now)

    def test_expired_edge(self, binding, now, h):
        check_binding(binding, self.csr(h), "staff", binding.expires_at - timedelta(seconds=1))
        with pytest.raises(ChallengeRejected) as e:
            check_binding(binding, self.csr(h), "staff", binding.expires_at)
        assert reason(e) is ChallengeReason.EXPIRED

    def test_not_yet_valid(self, now, h):
        b = ChallengeBinding("staff", now + timedelta(hours=1), not_before=now + timedelta(1))
        with pytest.raises(ChallengeRejected, match="not_yet_valid"):
            check_binding(b, self.csr(h, sans=[]), "staff", now)

    def test_wrong_group(self, binding, now, h):
        with pytest.raises(ChallengeRejected) as e:
            check_binding(binding, self.csr(h), "guest", now)
        assert reason(e) is ChallengeReason.WRONG_GROUP

    def test_subject_mismatch(self, binding, now, h):
        with pytest.raises(ChallengeRejected) as e:
            check_binding(binding, self.csr(h, cn="dev-02.example.com"), "staff", now)
        assert reason(e) is ChallengeReason.SUBJECT_MISMATCH

    def test_subject_regex(self, now, h):
        b = ChallengeBinding(
            "staff", now + timedelta(hours=1), subject_cn=r"re:dev-\d+\.example\.com"
        )
        check_binding(b, self.csr(h, sans=[]), "staff", now)
        for cn in ("dev-x.example.com", "dev-01.example.com.evil"):
            with pytest.raises(ChallengeRejected, match="subject_mismatch"):
                check_binding(b, self.csr(h, cn=cn, sans=[]), "staff", now)

    def test_missing_cn_mismatches(self, binding, now, h):
        with pytest.raises(ChallengeRejected, match="subject_mismatch"):
            check_binding(binding, self.csr(h, cn=None), "staff", now)

    def test_san_mismatch(self, binding, now, h):
        with pytest.raises(ChallengeRejected) as e:
            check_binding(binding, self.csr(h, sans=[x509.DNSName("other.example")]), "staff", now)
        assert reason(e) is ChallengeReason.SAN_MISMATCH

    def test_san_regex(self, now, h):
        b = ChallengeBinding("staff", now + timedelta(hours=1), sans=(r"re:dns:[a-z0-9-]+\.corp",))
        check_binding(b, self.csr(h, sans=[x509.DNSName("PC-7.corp")]), "staff", now)
        with pytest.raises(ChallengeRejected, match="san_mismatch"):
            check_binding(b, self.csr(h, sans=[x509.DNSName("pc.corp.evil")]), "staff", now)

    def test_key_policy(self, binding, now, h):
        for key in (h.ec_key("p384"), h.rsa_key(1024), h.ed_key()):
            with pytest.raises(ChallengeRejected) as e:
                check_binding(binding, self.csr(h, key=key), "staff", now)
            assert reason(e) is ChallengeReason.KEY_POLICY

    def test_min_rsa_bits(self, now, h):
        b = ChallengeBinding("staff", now + timedelta(hours=1), min_rsa_bits=3072)
        with pytest.raises(ChallengeRejected, match="key_policy"):
            check_binding(b, self.csr(h, key=h.rsa_key(2048), sans=[]), "staff", now)
        check_binding(b, self.csr(h, sans=[]), "staff", now)

    def test_eku_mismatch(self, now, h):
        b = ChallengeBinding("staff", now + timedelta(hours=1),
                             ekus=(ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,))
        check_binding(b, self.csr(h, sans=[]), "staff", now)
        csr = self.csr(h, sans=[], ekus=[ExtendedKeyUsageOID.SERVER_AUTH])
        with pytest.raises(ChallengeRejected, match="eku_mismatch"):
            check_binding(b, csr, "staff", now)

    def test_binding_validation(self, now):
        with pytest.raises(ValueError):
            ChallengeBinding("staff", now.replace(tzinfo=None))
        with pytest.raises(ValueError):
            ChallengeBinding("staff", now, key_types=("dsa-1024",))
        with pytest.raises(ValueError):
            ChallengeBinding("staff", now, sans=("nohost",))
        with pytest.raises(Exception):  # noqa: B017 - re.error
            ChallengeBinding("staff", now, subject_cn="re:(")
        assert ChallengeBinding("staff", now, sans=("DNS:A.b.",)).sans == ("dns:a.b",)


class TestReuse:
    def used(self, record, now, serial=0x1234):
        from dataclasses import replace

        return replace(record, used_at=now, used_txid="tx-1", used_spki_sha256=b"k" * 32,
                       issued_serial=serial)

    def test_first_use(self, binding, now):
        _, record = new_challenge(SECRET, binding, now)
        assert reuse_decision(record, "tx-1", b"k" * 32, now) == FirstUse()

    def test_retry_returns_issued(self, binding, now):
        _, record = new_challenge(SECRET, binding, now)
        assert reuse_decision(self.used(record, now), "tx-1", b"k" * 32, now) == (
            RetryReturnsIssued(0x1234)
        )

    def test_retry_pending_without_serial(self, binding, now):
        _, record = new_challenge(SECRET, binding, now)
        assert isinstance(
            reuse_decision(self.used(record, now, None), "tx-1", b"k" * 32, now), RetryPending
        )

    @pytest.mark.parametrize("txid, spki", [("tx-2", b"k" * 32), ("tx-1", b"x" * 32)])
    def test_other_txid_or_key_is_theft(self, binding, now, txid, spki):
        _, record = new_challenge(SECRET, binding, now)
        d = reuse_decision(self.used(record, now), txid, spki, now)
        assert isinstance(d, Replay) and d.theft_suspected

    def test_retry_after_expiry_is_replay(self, binding, now):
        _, record = new_challenge(SECRET, binding, now)
        d = reuse_decision(self.used(record, now), "tx-1", b"k" * 32, binding.expires_at)
        assert isinstance(d, Replay) and not d.theft_suspected

    def test_compare_digest_used(self, binding, now, monkeypatch):
        _, record = new_challenge(SECRET, binding, now)
        calls = digest_spy(monkeypatch)
        reuse_decision(self.used(record, now), "tx-1", b"k" * 32, now)
        assert len(calls) == 2


class TestVerifyDynamic:
    def test_first_use_checks_binding(self, binding, now, h):
        token, record = new_challenge(SECRET, binding, now)
        csr = h.make_csr(sans=[x509.DNSName("dev-01.example.com")])
        assert verify_dynamic(SECRET, token, record, csr, "staff", "tx", now) == FirstUse()
        with pytest.raises(ChallengeRejected, match="wrong_group"):
            verify_dynamic(SECRET, token, record, csr, "guest", "tx", now)

    def test_unknown_record(self, binding, now, h):
        token, _ = new_challenge(SECRET, binding, now)
        with pytest.raises(ChallengeRejected) as e:
            verify_dynamic(SECRET, token, None, h.make_csr(), "staff", "tx", now)
        assert reason(e) is ChallengeReason.UNKNOWN_CHALLENGE

    def test_record_of_another_token(self, binding, now, h):
        token, _ = new_challenge(SECRET, binding, now)
        _, other = new_challenge(SECRET, binding, now)
        with pytest.raises(ChallengeRejected, match="unknown_challenge"):
            verify_dynamic(SECRET, token, other, h.make_csr(), "staff", "tx", now)

    def test_replay_raises(self, binding, now, h):
        from dataclasses import replace

        token, record = new_challenge(SECRET, binding, now)
        csr = h.make_csr(sans=[x509.DNSName("dev-01.example.com")])
        facts = extract_csr_facts(csr)
        used = replace(record, used_at=now, used_txid="tx", used_spki_sha256=facts.spki_sha256,
                       issued_serial=7)
        assert verify_dynamic(SECRET, token, used, facts, "staff", "tx", now) == (
            RetryReturnsIssued(7)
        )
        with pytest.raises(ChallengeRejected) as e:
            verify_dynamic(SECRET, token, used, facts, "staff", "tx-other", now)
        assert reason(e) is ChallengeReason.REPLAY


class TestStaticSecret:
    def test_verify(self):
        s = StaticSecret.from_secret("legacy-s3cret", iterations=1000)
        assert s.verify("legacy-s3cret")
        assert not s.verify("legacy-s3cre")
        assert not s.verify("")
        assert not s.verify("x" * 5000)
        assert b"legacy" not in s.digest and "legacy" not in s.encoded()

    def test_encoded_round_trip(self):
        s = StaticSecret.from_secret("pw", iterations=1000)
        t = StaticSecret.from_encoded(s.encoded())
        assert t == s and t.verify("pw")
        assert s.encoded().startswith("pbkdf2-sha256$1000$")

    @pytest.mark.parametrize("bad", ["", "md5$1$a$b", "pbkdf2-sha256$x$a$b", "pbkdf2-sha256$1$!$b"])
    def test_bad_encoding(self, bad):
        with pytest.raises(ValueError):
            StaticSecret.from_encoded(bad)

    def test_salted(self):
        a = StaticSecret.from_secret("pw", iterations=1000)
        b = StaticSecret.from_secret("pw", iterations=1000)
        assert a.salt != b.salt and a.digest != b.digest

    def test_constant_time(self, monkeypatch):
        s = StaticSecret.from_secret("pw", iterations=1000)
        calls = digest_spy(monkeypatch)
        s.verify("nope")
        assert len(calls) == 1

    def test_rotation_checks_all(self, monkeypatch):
        old = StaticSecret.from_secret("old", iterations=1000)
        new = StaticSecret.from_secret("new", iterations=1000)
        verify_static([old, new], "old")
        verify_static([old, new], "new")
        with pytest.raises(ChallengeRejected) as e:
            verify_static([old, new], "other")
        assert reason(e) is ChallengeReason.BAD_SECRET
        seen = []
        monkeypatch.setattr(StaticSecret, "verify", lambda self, c: seen.append(self) or True)
        verify_static([old, new], "old")
        assert seen == [old, new]  # no early exit
