"""The newest MDM event per device (device-noncompliant / -compliant / -removed), so webhooks
delivered out of order or twice change nothing: an event older than the device's newest is
stale, the same event_id again is a duplicate, anything else becomes the newest."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from store.store import Store, observed, ts

Outcome = Literal["newest", "duplicate", "stale"]


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    device_id: str
    event: str
    event_id: str
    at: dt.datetime  # when the MDM says it happened (millisecond precision)


def _ms(when: dt.datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("event time must be timezone-aware")
    return int(when.timestamp() * 1000)


def _event(row: tuple) -> DeviceEvent:
    device_id, event, event_id, at_ms = row
    return DeviceEvent(device_id, event, event_id,
                       dt.datetime.fromtimestamp(int(at_ms) / 1000, dt.UTC))


class DeviceEventStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.driver = store.driver

    @observed("device_event")
    async def record(self, device_id: str, event: str, event_id: str, at: dt.datetime,
                     now: dt.datetime | None = None) -> tuple[Outcome, DeviceEvent]:
        """Record an event unless the device has a newer one; (outcome, the newest event).

        Equal times: the later delivery wins (an MDM that stamps two events in one
        millisecond gives no other order). The conditional upsert keeps two nodes receiving
        two events at once from letting the older one win."""
        at_ms, received = _ms(at), ts(now or dt.datetime.now(dt.UTC))
        async with self.driver.transaction("device_event") as tx:
            row = await tx.fetchone(
                "SELECT device_id, event, event_id, event_at_ms FROM device_events "
                "WHERE device_id=?", (device_id,))
            if row is not None:
                last = _event(row)
                if last.event_id == event_id:
                    return "duplicate", last
                if int(row[3]) > at_ms:
                    return "stale", last
            won = await tx.fetchone(
                "INSERT INTO device_events (device_id, event, event_id, event_at_ms, "
                "received_at) VALUES (?,?,?,?,?) ON CONFLICT(device_id) DO UPDATE SET "
                "event=excluded.event, event_id=excluded.event_id, "
                "event_at_ms=excluded.event_at_ms, received_at=excluded.received_at "
                "WHERE device_events.event_at_ms <= excluded.event_at_ms RETURNING event_id",
                (device_id, event, event_id, at_ms, received))
            if won is None:  # a newer one committed meanwhile (another node)
                row = await tx.fetchone(
                    "SELECT device_id, event, event_id, event_at_ms FROM device_events "
                    "WHERE device_id=?", (device_id,))
                assert row is not None
                return "stale", _event(row)
        return "newest", DeviceEvent(device_id, event, event_id,
                                     dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC))

    @observed("device_event")
    async def newest(self, device_id: str) -> DeviceEvent | None:
        async with self.driver.reader("device_event") as tx:
            row = await tx.fetchone(
                "SELECT device_id, event, event_id, event_at_ms FROM device_events "
                "WHERE device_id=?", (device_id,))
        return _event(row) if row is not None else None
