"""The asyncio shell of `enrollment.admission`: one gate per SCEP group.

`async with gate.slot():` either runs the body inside the group's concurrency cap (after
waiting, at most `[scep] queue_timeout`, behind earlier requests) or raises `Shed`, which
the HTTP handler answers with 503 and Retry-After. The Retry-After the core computes gets
up to half again of random jitter, so devices shed in the same instant come back spread out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator

from certgate.http_guard import LineBudget
from enrollment.admission import SHED_REASONS, Admission, Verdict
from enrollment.metrics import SCEP_IN_PROGRESS, SCEP_QUEUE_WAIT, SCEP_QUEUED, SCEP_SHED

log = logging.getLogger("certgate.scep")


class Shed(Exception):
    """This PKIOperation was not admitted: answer 503 with `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class GroupGate:
    def __init__(self, group: str, limit: int, queue: int, max_wait: float) -> None:
        self.group = group
        self.admission = Admission(limit, queue, max_wait)
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._lines = LineBudget()
        for reason in SHED_REASONS:
            SCEP_SHED.labels(group=group, reason=reason)
        self._gauges()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        arrived = time.monotonic()
        admit = self.admission.arrive(arrived)
        if admit.verdict is Verdict.SHED:
            self._shed(admit.reason, admit.retry_after)
        if admit.verdict is Verdict.WAIT:
            await self._wait(admit.ticket, arrived)
        self._gauges()
        started = time.monotonic()
        try:
            yield
        finally:
            self.admission.finish(time.monotonic() - started)
            self._wake()

    async def _wait(self, ticket: int, arrived: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[ticket] = future
        self._gauges()
        try:
            await asyncio.wait_for(future, self.admission.max_wait)
        except TimeoutError:
            self._waiters.pop(ticket, None)
            SCEP_QUEUE_WAIT.observe(time.monotonic() - arrived)
            shed = self.admission.give_up(ticket)
            self._shed(shed.reason, shed.retry_after)
        except asyncio.CancelledError:  # the client went away while waiting
            self._waiters.pop(ticket, None)
            if future.done() and not future.cancelled():  # it had been given a slot
                self.admission.finish(None)
                self._wake()
            else:
                self.admission.give_up(ticket)
            self._gauges()
            raise
        SCEP_QUEUE_WAIT.observe(time.monotonic() - arrived)

    def _wake(self) -> None:
        """Hand freed slots to the next waiters still waiting."""
        now = time.monotonic()
        while (ticket := self.admission.start_next(now)) is not None:
            future = self._waiters.pop(ticket, None)
            if future is not None and not future.done():
                future.set_result(None)
                break
            self.admission.finish(None)  # its waiter is gone: free the slot again
        self._gauges()

    def _shed(self, reason: str, retry_after: int) -> None:
        SCEP_SHED.labels(group=self.group, reason=reason).inc()
        self._gauges()
        seconds = retry_after + random.randint(0, max(1, retry_after // 2))
        suffix = self._lines.take()
        if suffix is not None:
            log.warning("scep group=%s: PKIOperation shed (%s), 503 Retry-After %d s; %d in "
                        "progress, %d waiting%s", self.group, reason, seconds,
                        self.admission.running, self.admission.waiting, suffix)
        raise Shed(reason, seconds)

    def _gauges(self) -> None:
        SCEP_IN_PROGRESS.labels(group=self.group).set(self.admission.running)
        SCEP_QUEUED.labels(group=self.group).set(self.admission.waiting)
