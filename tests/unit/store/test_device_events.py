"""store.device_events on SQLite and PostgreSQL: the newest event per device wins; an older
one delivered late is stale, the same event_id again a duplicate."""

from __future__ import annotations

import datetime as dt

from store import DeviceEventStore

T0 = dt.datetime(2026, 12, 7, 15, 0, 0, tzinfo=dt.UTC)
MS = dt.timedelta(milliseconds=1)


async def test_newest_duplicate_stale(site) -> None:
    store = await site.open()
    events = DeviceEventStore(store)
    assert await events.newest("dev-1") is None
    outcome, newest = await events.record("dev-1", "device-noncompliant", "e1", T0)
    assert outcome == "newest" and (newest.event_id, newest.at) == ("e1", T0)
    assert (await events.record("dev-1", "device-noncompliant", "e1", T0))[0] == "duplicate"
    outcome, newest = await events.record("dev-1", "device-compliant", "e2", T0 + MS)
    assert outcome == "newest" and newest.event == "device-compliant"
    # the non-compliant event of a millisecond before, delivered late: changes nothing
    outcome, newest = await events.record("dev-1", "device-noncompliant", "e0", T0)
    assert outcome == "stale" and newest.event_id == "e2"
    # equal times: the later delivery wins
    assert (await events.record("dev-1", "device-noncompliant", "e3", T0 + MS))[0] == "newest"
    last = await events.newest("dev-1")
    assert last is not None and (last.event, last.event_id, last.at) == (
        "device-noncompliant", "e3", T0 + MS)
    assert await events.newest("dev-2") is None  # per device
    other = await site.open()  # another node / process sees it
    seen = await DeviceEventStore(other).newest("dev-1")
    assert seen is not None and seen.event_id == "e3"
