"""certgate.scep_admission.GroupGate: the asyncio side of the SCEP admission core."""

from __future__ import annotations

import asyncio

import pytest

from certgate.scep_admission import GroupGate, Shed
from enrollment.metrics import SCEP_IN_PROGRESS, SCEP_QUEUED, SCEP_SHED


def _shed(group: str, reason: str) -> float:
    return SCEP_SHED.labels(group=group, reason=reason)._value.get()


def test_never_more_than_the_limit_at_once_and_the_overflow_is_shed() -> None:
    async def scenario() -> tuple[int, list[object]]:
        gate = GroupGate("adm-a", limit=2, queue=3, max_wait=5.0)
        release = asyncio.Event()
        running = peak = 0

        async def one() -> str:
            nonlocal running, peak
            async with gate.slot():
                running += 1
                peak = max(peak, running)
                await release.wait()
                running -= 1
            return "served"

        tasks = [asyncio.create_task(one()) for _ in range(8)]
        await asyncio.sleep(0.05)
        assert SCEP_IN_PROGRESS.labels(group="adm-a")._value.get() == 2
        assert SCEP_QUEUED.labels(group="adm-a")._value.get() == 3
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return peak, results

    before = _shed("adm-a", "queue_full")
    peak, results = asyncio.run(scenario())
    assert peak == 2
    assert results.count("served") == 5
    sheds = [r for r in results if isinstance(r, Shed)]
    assert len(sheds) == 3 and all(s.reason == "queue_full" and s.retry_after >= 1 for s in sheds)
    assert _shed("adm-a", "queue_full") - before == 3
    assert SCEP_IN_PROGRESS.labels(group="adm-a")._value.get() == 0
    assert SCEP_QUEUED.labels(group="adm-a")._value.get() == 0


def test_a_waiter_that_waits_too_long_is_shed_with_queue_timeout() -> None:
    async def scenario() -> None:
        gate = GroupGate("adm-b", limit=1, queue=5, max_wait=0.1)
        hold = asyncio.Event()

        async def holder() -> None:
            async with gate.slot():
                await hold.wait()

        task = asyncio.create_task(holder())
        await asyncio.sleep(0)
        with pytest.raises(Shed) as shed:
            async with gate.slot():
                raise AssertionError("must not run")
        assert shed.value.reason == "queue_timeout"
        hold.set()
        await task
        async with gate.slot():  # the slot is free again
            pass

    before = _shed("adm-b", "queue_timeout")
    asyncio.run(scenario())
    assert _shed("adm-b", "queue_timeout") - before == 1


def test_a_client_that_leaves_while_waiting_gives_its_place_up() -> None:
    async def scenario() -> list[str]:
        gate = GroupGate("adm-c", limit=1, queue=5, max_wait=5.0)
        hold = asyncio.Event()
        order: list[str] = []

        async def one(name: str) -> None:
            async with gate.slot():
                order.append(name)
                await hold.wait()

        first = asyncio.create_task(one("first"))
        await asyncio.sleep(0)
        leaver = asyncio.create_task(one("leaver"))
        last = asyncio.create_task(one("last"))
        await asyncio.sleep(0.01)
        leaver.cancel()
        await asyncio.sleep(0.01)
        hold.set()
        await asyncio.gather(first, last)
        assert gate.admission.running == 0 and gate.admission.waiting == 0
        return order

    assert asyncio.run(scenario()) == ["first", "last"]


def test_a_failing_operation_frees_its_slot() -> None:
    async def scenario() -> None:
        gate = GroupGate("adm-d", limit=1, queue=0, max_wait=1.0)
        with pytest.raises(ValueError):
            async with gate.slot():
                raise ValueError("crypto said no")
        async with gate.slot():
            assert gate.admission.running == 1
        assert gate.admission.running == 0

    asyncio.run(scenario())
