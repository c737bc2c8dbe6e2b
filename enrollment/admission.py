"""Admission of SCEP PKIOperations per group: a concurrency cap, a bounded wait, a retryable no.

An enrollment storm (a profile assigned to every device at once) must not turn into
thousands of requests parked on the crypto workers, each holding a connection and memory,
nor into refusals a device cannot tell from a policy FAILURE. Each group admits at most
`limit` PKIOperations at a time; up to `queue` more wait, first come first served, for at
most `max_wait` seconds. A request that finds the queue full, or waits too long, is shed
*before* anything is read from or written to the store (its one-time challenge is still
unused), and the HTTP shell answers 503 with a Retry-After: HTTP's "overloaded, come back
then" (RFC 9110 §15.6.4; SCEP runs over plain HTTP and RFC 8894 adds no busy answer of its
own), so a retry of the very same request succeeds.

The Retry-After is the time the current backlog needs at the measured service rate, so a
storm's second wave arrives when there is room instead of all at once a fixed five
seconds later. This module is pure: time is passed in, nothing awaits; the asyncio shell
(`certgate.scep_http`) parks a future per waiting ticket.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

SHED_REASONS = ("queue_full", "queue_timeout")


class Verdict(Enum):
    START = "start"  # run now; call finish() when done
    WAIT = "wait"  # parked: wait for start_next() to name the ticket, at most max_wait s
    SHED = "shed"  # answer 503 with retry_after


@dataclass(frozen=True)
class Admit:
    verdict: Verdict
    ticket: int
    retry_after: int = 0  # seconds (SHED only)
    reason: str = ""  # one of SHED_REASONS (SHED only)


class Admission:
    """One group's admission state: counts, the wait queue, a service-time estimate."""

    def __init__(self, limit: int, queue: int, max_wait: float, *,
                 initial_service_time: float = 0.05, max_retry_after: int = 60) -> None:
        if limit < 1 or queue < 0 or max_wait <= 0:
            raise ValueError("limit >= 1, queue >= 0, max_wait > 0 required")
        self.limit = limit
        self.queue = queue
        self.max_wait = max_wait
        self.max_retry_after = max_retry_after
        self.service_time = initial_service_time  # EWMA of seconds per PKIOperation
        self.running = 0
        self._waiting: OrderedDict[int, float] = OrderedDict()  # ticket -> arrival time
        self._next_ticket = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def arrive(self, now: float) -> Admit:
        """A PKIOperation arrives: start it, park it, or shed it."""
        self._next_ticket += 1
        ticket = self._next_ticket
        if self.running < self.limit and not self._waiting:
            self.running += 1
            return Admit(Verdict.START, ticket)
        if len(self._waiting) >= self.queue:
            return Admit(Verdict.SHED, ticket, self.retry_after(), "queue_full")
        self._waiting[ticket] = now
        return Admit(Verdict.WAIT, ticket)

    def give_up(self, ticket: int) -> Admit:
        """A parked ticket waited max_wait (or its client left): drop it, shed it."""
        self._waiting.pop(ticket, None)
        return Admit(Verdict.SHED, ticket, self.retry_after(), "queue_timeout")

    def finish(self, service_time: float | None) -> None:
        """A started PKIOperation is done (answered or failed) after `service_time` seconds,
        or gave its slot back unused (None: no sample for the estimate)."""
        if self.running <= 0:
            raise RuntimeError("finish() without a started operation")
        self.running -= 1
        if service_time is not None:
            self.service_time += 0.2 * (max(service_time, 0.0) - self.service_time)

    def start_next(self, now: float) -> int | None:
        """The parked ticket to start now (its slot taken), or None. Tickets parked longer
        than max_wait are skipped: their waiters time out on their own."""
        while self._waiting and self.running < self.limit:
            ticket, arrived = self._waiting.popitem(last=False)
            if now - arrived <= self.max_wait:
                self.running += 1
                return ticket
        return None

    def retry_after(self) -> int:
        """Seconds until the present backlog (running + parked) is served, at least 1."""
        backlog = self.running + len(self._waiting) + 1
        seconds = math.ceil(backlog * self.service_time / self.limit)
        return max(1, min(self.max_retry_after, seconds))
