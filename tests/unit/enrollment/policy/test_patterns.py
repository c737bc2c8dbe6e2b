"""Challenge `re:` patterns cannot stall the event loop (issue #10 §5)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from enrollment.challenges import ChallengeBinding
from enrollment.patterns import MAX_PATTERN_LENGTH, UnsafePattern, compile_pattern, fullmatch

EXPIRES = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def test_the_catastrophic_pattern_matches_in_linear_time() -> None:
    started = time.perf_counter()
    for n in (25, 64, 1000):
        assert not fullmatch(r"(a+)+b", "a" * n)  # python's re: 2 s at n=25
        assert not fullmatch(r"(a|a)*c", "a" * n)
        assert not fullmatch(r"(.*a){20}", "a" * n + "!")
    assert time.perf_counter() - started < 0.05


def test_the_worst_allowed_pattern_against_a_long_cn_is_fast() -> None:
    worst = "(" + "[a-z]*" * 40 + ")+x"  # a pattern near the length limit, all overlapping
    assert len(worst) <= MAX_PATTERN_LENGTH
    started = time.perf_counter()
    assert not fullmatch(worst, "a" * 64)
    assert time.perf_counter() - started < 0.01


@pytest.mark.parametrize(("pattern", "why"), [
    (r"(a)\1", "no backreferences"),
    (r"dev(?=-)", "lookaround"),
    ("a" * (MAX_PATTERN_LENGTH + 1), "longer than"),
    (r"[", "not accepted"),
])
def test_unsafe_or_invalid_patterns_are_refused(pattern: str, why: str) -> None:
    with pytest.raises(UnsafePattern, match=why):
        compile_pattern(pattern)


def test_a_binding_refuses_them_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^subject: pattern"):
        ChallengeBinding("staff", EXPIRES, subject_cn=r"re:(a)\1")
    with pytest.raises(ValueError, match=r"^sans: pattern"):
        ChallengeBinding("staff", EXPIRES, sans=(r"re:dev(?!x)",))
    ok = ChallengeBinding("staff", EXPIRES, subject_cn=r"re:dev-[0-9]{1,6}")
    assert ok.subject_cn == r"re:dev-[0-9]{1,6}"


def test_ordinary_patterns_still_match() -> None:
    assert fullmatch(r"dev-[0-9]+", "dev-42") and not fullmatch(r"dev-[0-9]+", "dev-42x")
    assert fullmatch(r"dns:[a-z0-9-]+\.example\.net", "dns:host-1.example.net")
    assert not fullmatch(r".*", "x" * 2000)  # over-long values never match


def test_a_lone_surrogate_is_refused_as_an_unsafe_pattern() -> None:
    # JSON "\ud800" decodes to a lone surrogate; RE2 (UTF-8) raised UnicodeEncodeError,
    # which escaped compile_pattern and ChallengeBinding's "subject:" / "sans:" naming.
    # Found by tests/fuzz/fuzz_csr_policy.py (corpus csr_policy/lone-surrogate-pattern).
    with pytest.raises(UnsafePattern, match="not valid Unicode"):
        compile_pattern("a\udcff.*")
    with pytest.raises(ValueError, match=r"^subject: pattern .*not valid Unicode"):
        ChallengeBinding("staff", EXPIRES, subject_cn="re:dev-\ud800")
    with pytest.raises(ValueError, match=r"^sans: pattern .*not valid Unicode"):
        ChallengeBinding("staff", EXPIRES, sans=("re:\udc80",))
