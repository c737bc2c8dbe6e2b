"""Fan-out from the decision points to the configured sinks, and its counters.

``Audit.emit`` is what the shells call: it hands the finished event to each sink's
non-blocking ``emit`` and returns. With no sink configured it is a no-op, so the RADIUS
hot path pays one attribute lookup and a loop over an empty tuple.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter

from certgate.audit.sinks import AuditSink

log = logging.getLogger("certgate.audit")

#: result: written (delivered), dropped (queue full), error (the sink could not write it).
EVENTS = Counter("certgate_audit_events_total",
                 "Audit events by sink and result", ["sink", "result"])
RESULTS = ("written", "dropped", "error")


def counter_for(sink: str):  # noqa: ANN201 - Callable[[str], None]
    """The on_drop/on_result callback a sink reports through, its series exported at 0."""
    for result in RESULTS:
        EVENTS.labels(sink=sink, result=result)
    return lambda result: EVENTS.labels(sink=sink, result=result).inc()


class Audit:
    """The process's audit stream: a tuple of sinks."""

    def __init__(self, sinks: Sequence[AuditSink] = (), node: str | None = None) -> None:
        self.sinks = tuple(sinks)
        self.node = node

    @property
    def enabled(self) -> bool:
        return bool(self.sinks)

    def emit(self, event: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:  # a sink must not raise; if one does, the decision still stands
                log.exception("audit sink %r raised", sink)

    def emit_all(self, events: Sequence[Mapping[str, Any]]) -> None:
        for ev in events:
            self.emit(ev)

    def reopen(self) -> None:
        for sink in self.sinks:
            try:
                sink.reopen()
            except Exception:
                log.exception("audit sink %r could not reopen", sink)

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def aclose(self) -> None:
        for sink in self.sinks:
            try:
                await sink.aclose()
            except Exception:
                log.exception("audit sink %r did not close cleanly", sink)
