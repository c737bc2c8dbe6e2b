"""enrollment.admission: the per-group concurrency cap, the bounded wait, the Retry-After."""

from __future__ import annotations

import pytest

from enrollment.admission import Admission, Verdict


def test_starts_up_to_the_limit_then_parks_then_sheds_when_the_queue_is_full() -> None:
    a = Admission(limit=2, queue=2, max_wait=10.0)
    verdicts = [a.arrive(0.0).verdict for _ in range(5)]
    assert verdicts == [Verdict.START, Verdict.START, Verdict.WAIT, Verdict.WAIT, Verdict.SHED]
    assert (a.running, a.waiting) == (2, 2)


def test_a_freed_slot_goes_to_the_oldest_waiter_first() -> None:
    a = Admission(limit=1, queue=5, max_wait=10.0)
    a.arrive(0.0)
    first, second = a.arrive(0.1), a.arrive(0.2)
    assert a.start_next(0.3) is None  # no slot free yet
    a.finish(0.05)
    assert a.start_next(0.3) == first.ticket
    assert a.start_next(0.3) is None  # the slot is taken again
    a.finish(0.05)
    assert a.start_next(0.4) == second.ticket
    assert (a.running, a.waiting) == (1, 0)


def test_newcomers_queue_behind_waiters_even_when_a_slot_is_free() -> None:
    """No overtaking: a slot freed a moment ago belongs to the oldest waiter."""
    a = Admission(limit=1, queue=5, max_wait=10.0)
    a.arrive(0.0)
    waiter = a.arrive(0.1)
    a.finish(0.05)  # the shell calls start_next right after; a newcomer in between waits
    assert a.arrive(0.2).verdict is Verdict.WAIT
    assert a.start_next(0.2) == waiter.ticket


def test_a_waiter_past_max_wait_is_skipped_and_its_give_up_sheds_it() -> None:
    a = Admission(limit=1, queue=5, max_wait=1.0)
    a.arrive(0.0)
    stale, fresh = a.arrive(0.0), a.arrive(1.5)
    a.finish(0.05)
    assert a.start_next(2.0) == fresh.ticket  # stale waited 2 s > max_wait
    shed = a.give_up(stale.ticket)
    assert (shed.verdict, shed.reason) == (Verdict.SHED, "queue_timeout")
    assert shed.retry_after >= 1


def test_retry_after_grows_with_the_backlog_and_the_service_time() -> None:
    a = Admission(limit=2, queue=1000, max_wait=30.0, initial_service_time=0.5)
    for _ in range(2):
        a.arrive(0.0)
    short = a.retry_after()
    for _ in range(100):
        a.arrive(0.0)
    long = a.retry_after()
    assert short == 1 and long == 26  # ceil(103 * 0.5 / 2)
    for _ in range(30):  # the operations got slower: 2 s each
        a.finish(2.0)
        assert a.start_next(0.0) is not None
        a.arrive(0.0)
    assert a.retry_after() > long
    assert a.retry_after() <= a.max_retry_after


def test_a_slot_given_back_unused_does_not_skew_the_estimate() -> None:
    a = Admission(limit=1, queue=1, max_wait=1.0, initial_service_time=0.2)
    a.arrive(0.0)
    a.finish(None)
    assert a.service_time == 0.2 and a.running == 0
    with pytest.raises(RuntimeError):
        a.finish(0.1)


def test_queue_zero_sheds_everything_beyond_the_limit() -> None:
    a = Admission(limit=1, queue=0, max_wait=1.0)
    assert a.arrive(0.0).verdict is Verdict.START
    shed = a.arrive(0.0)
    assert (shed.verdict, shed.reason) == (Verdict.SHED, "queue_full")


@pytest.mark.parametrize("args", [(0, 1, 1.0), (1, -1, 1.0), (1, 1, 0.0)])
def test_nonsense_limits_are_refused(args: tuple[int, int, float]) -> None:
    with pytest.raises(ValueError):
        Admission(*args)
