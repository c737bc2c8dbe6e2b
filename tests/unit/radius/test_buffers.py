"""radius.buffers (the shared buffer budget) and its use by the Reassembler."""

from __future__ import annotations

import pytest

from radius import fragments as frag
from radius.buffers import BufferBudget


class TestBufferBudget:
    def test_reserve_and_release(self) -> None:
        budget = BufferBudget(1000)
        a = budget.account("nas-a")
        assert a.reserve(600) and a.reserve(300)
        assert budget.used == 900 and budget.held_by("nas-a") == 900 and a.held == 900
        a.release(300)
        assert budget.used == 600
        a.release()
        a.release()  # idempotent
        assert budget.used == 0 and budget.held_by("nas-a") == 0 and a.held == 0

    def test_largest_holder_is_refused_nothing_charged(self) -> None:
        budget = BufferBudget(1000)
        a1, a2 = budget.account("nas-a"), budget.account("nas-a")
        assert a1.reserve(800)
        assert not a2.reserve(300)
        assert budget.used == 800 and a2.held == 0 and budget.take_shed() == []

    def test_smaller_client_sheds_the_largest_holders_oldest(self) -> None:
        budget = BufferBudget(1000)
        flood = [budget.account("nas-a") for _ in range(10)]
        for account in flood:
            assert account.reserve(100)
        victim = budget.account("nas-b")
        assert victim.reserve(250)  # nas-b holds nothing: takes room from nas-a
        shed = budget.take_shed()
        assert shed == flood[:3]  # oldest first, just enough
        assert all(a.held == 0 for a in shed)
        assert budget.used == 950 and budget.held_by("nas-b") == 250
        assert budget.take_shed() == []

    def test_shares_converge_to_equal(self) -> None:
        budget = BufferBudget(1000)
        a = [budget.account("nas-a") for _ in range(10)]
        for account in a:
            account.reserve(100)
        b = [budget.account("nas-b") for _ in range(10)]
        granted = sum(account.reserve(100) for account in b)
        assert granted == 5 and budget.held_by("nas-a") == 500 == budget.held_by("nas-b")

    def test_more_than_the_whole_budget_is_refused(self) -> None:
        budget = BufferBudget(100)
        assert not budget.account("x").reserve(101)
        with pytest.raises(ValueError):
            BufferBudget(0)


def _fragment(data: bytes, more: bool, total: int | None = None) -> frag.TlsPayload:
    return frag.parse_payload(frag.build_payload(frag.FLAG_MORE if more else 0, data, total))


class TestReassemblerBudget:
    def test_reserves_announced_length_and_releases_on_completion(self) -> None:
        budget = BufferBudget(10_000)
        r = frag.Reassembler(account=budget.account("nas"))
        assert r.feed(_fragment(b"a" * 100, True, 300)) is None
        assert budget.used == 300
        assert r.feed(_fragment(b"b" * 100, True)) is None
        assert r.feed(_fragment(b"c" * 100, False)) == b"a" * 100 + b"b" * 100 + b"c" * 100
        assert budget.used == 0

    def test_single_fragment_message_is_not_charged(self) -> None:
        budget = BufferBudget(200_000)
        r = frag.Reassembler(account=budget.account("nas"))
        assert r.feed(_fragment(b"x" * 50, False)) == b"x" * 50
        assert budget.used == 0

    def test_without_length_the_maximum_is_reserved(self) -> None:
        budget = BufferBudget(200_000)
        r = frag.Reassembler(account=budget.account("nas"))
        r.feed(_fragment(b"x" * 50, True))
        assert budget.used == frag.MAX_MESSAGE

    def test_refused_when_no_room(self) -> None:
        budget = BufferBudget(1000)
        hog = budget.account("nas")
        assert hog.reserve(900)
        r = frag.Reassembler(account=budget.account("nas"))
        with pytest.raises(frag.BufferRefused):
            r.feed(_fragment(b"x" * 10, True, 500))
        assert budget.used == 900 and not r.in_progress

    def test_framing_error_releases(self) -> None:
        budget = BufferBudget(10_000)
        r = frag.Reassembler(account=budget.account("nas"))
        r.feed(_fragment(b"x" * 10, True, 500))
        with pytest.raises(frag.FragmentError):
            r.feed(_fragment(b"x" * 10, True, 400))  # L repeated with another length
        assert budget.used == 0


def test_take_peak_reports_the_high_water_mark_then_restarts_from_what_is_held() -> None:
    budget = BufferBudget(1000)
    a, b = budget.account("nas-a"), budget.account("nas-b")
    assert a.reserve(600) and b.reserve(300)
    a.release()
    assert budget.used == 300
    assert budget.take_peak() == 900  # the shell trims: 600 bytes were given back
    assert budget.take_peak() == 300
    assert b.reserve(100)
    b.release()
    assert budget.take_peak() == 400 and budget.peak == 0
