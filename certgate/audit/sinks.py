"""The sink contract shared by every audit transport (file, syslog, ...).

A sink receives finished events from the hot path (RADIUS, SCEP, admin API),
so ``emit`` must be non-blocking and must never raise: it queues the event (or
counts a drop) and returns. The I/O happens in a task started by ``start``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class AuditSink(Protocol):
    """What the audit emitter needs from a transport."""

    def emit(self, event: Mapping[str, Any]) -> None:
        """Queue one event; non-blocking, never raises (a full queue is a counted drop)."""

    def reopen(self) -> None:
        """Reopen the destination (SIGHUP, after logrotate moved the file)."""

    async def start(self) -> None:
        """Start the background writer (called once the event loop runs)."""

    async def aclose(self) -> None:
        """Flush what is queued within a short deadline, then release resources."""
