"""The store's audit rows as a stream: on_audit after commit, and the time-range read that
`certgate audit export` pages through (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest

from store.errors import SerialConflict
from tests.store_support import NOW, make_record


async def test_on_audit_sees_committed_rows_only(site, ca) -> None:
    store = await site.open()
    seen: list[dict] = []
    store.on_audit = seen.append
    record = make_record(ca)
    await store.record_certificate(record, "cli:test", now=NOW)
    assert [r["action"] for r in seen] == ["issue"]
    assert seen[0]["serial"] == record.serial_hex and seen[0]["at"] == NOW
    with pytest.raises(SerialConflict):
        await store.record_certificate(record, "cli:test", now=NOW)  # same serial: rolled back
    assert len(seen) == 1
    await store.revoke(record.serial, "keyCompromise", "api:token#0", now=NOW)
    assert [r["action"] for r in seen] == ["issue", "revoke"]
    assert seen[1]["details"]["reason"] == "keyCompromise"


async def test_audit_between_is_a_time_range_in_order_across_pages(site, ca) -> None:
    store = await site.open()
    for i in range(7):
        await store.audit("cli:test", f"step-{i}", now=NOW + dt.timedelta(minutes=i))
    everything = [r["action"] async for r in store.audit_between(batch=3)]
    assert everything == [f"step-{i}" for i in range(7)]
    ranged = [r async for r in store.audit_between(NOW + dt.timedelta(minutes=2),
                                                   NOW + dt.timedelta(minutes=5), batch=2)]
    assert [r["action"] for r in ranged] == ["step-2", "step-3", "step-4"]
    assert ranged[0]["at"] == NOW + dt.timedelta(minutes=2)
    assert ranged[0]["actor"] == "cli:test" and ranged[0]["details"] == {}
    assert [r async for r in store.audit_between(NOW + dt.timedelta(days=1))] == []
