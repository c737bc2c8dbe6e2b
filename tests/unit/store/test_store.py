"""The store's contract, the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from store import ChallengeUnavailable, RequestConflict, ScepStore, SerialConflict, SessionStore
from store.errors import SchemaTooNew, StoreOpenError
from store.records import ChallengeUse
from tests.store_support import NOW, make_record


async def test_records_survive_reopen(site, ca) -> None:
    store = await site.open()
    rec = make_record(ca, device_id="d1")
    await store.record_certificate(rec, "test")
    await store.revoke(rec.serial, "keyCompromise", "test", NOW)
    await store.close()

    store = await site.open()
    got = await store.get(rec.serial)
    assert got is not None and got.status == "revoked" and got.reason == "keyCompromise"
    assert got.device_id == "d1" and got.pem == rec.pem and got.revoked_at == NOW
    snapshot = await store.load_index(NOW)  # the start-up load of a serving node
    assert snapshot.revoked == {"staff": {rec.serial}}
    assert snapshot.issued == {}  # a revoked certificate is in `revoked` only
    assert snapshot.seq == 2  # issuance, revocation


async def test_start_up_index_and_inventory_counts(site, ca) -> None:
    """load_index: per group, revoked (holds too) / held / unexpired device certificates that
    are not revoked; an expired one is left out, a revoked RA certificate is revoked but
    never issued. status_counts counts device certificates only."""
    import dataclasses
    import datetime as dt

    store = await site.open()
    active, revoked, held, expired, guest = (
        make_record(ca, days=60), make_record(ca, days=60), make_record(ca, days=60),
        make_record(ca, days=10), make_record(ca, group="guests", days=60))
    ra = dataclasses.replace(make_record(ca, days=60), profile="ra")
    for rec in (active, revoked, held, expired, guest, ra):
        await store.record_certificate(rec, "test")
    await store.revoke(revoked.serial, "keyCompromise", "test", NOW)
    await store.revoke(held.serial, "certificateHold", "test", NOW)
    await store.revoke(ra.serial, "cACompromise", "test", NOW)
    snapshot = await store.load_index(NOW + dt.timedelta(days=20))
    assert snapshot.revoked == {"staff": {revoked.serial, held.serial, ra.serial}}
    assert snapshot.held == {"staff": {held.serial}}
    assert snapshot.issued == {"staff": {active.serial}, "guests": {guest.serial}}
    assert await store.status_counts() == {("staff", "active"): 2, ("staff", "revoked"): 2,
                                           ("guests", "active"): 1}
    assert await store.expiring_counts(NOW, dt.timedelta(days=30)) == {"staff": 1}


async def test_serial_is_unique(site, ca) -> None:
    store = await site.open()
    rec = make_record(ca, serial=12345)
    await store.record_certificate(rec, "test")
    with pytest.raises(SerialConflict):
        await store.record_certificate(make_record(ca, serial=12345), "test")
    assert len(await store.find()) == 1


async def test_record_signed_draws_a_new_serial_on_a_clash(site, ca) -> None:
    from store.records import Issued

    store = await site.open()
    await store.record_certificate(make_record(ca, serial=7), "test")
    serials = iter([7, 8])

    async def sign(serial: int) -> Issued:
        return Issued(b"", make_record(ca, serial=serial))

    issued = await store.record_signed(sign, lambda: next(serials), actor="t", now=NOW)
    assert issued.record.serial == 8 and await store.get(8) is not None


async def test_challenge_consumed_atomically_with_the_certificate(site, ca) -> None:
    store = await site.open()
    await store.add_challenge("j1", "dynamic", "staff", "h", {"cn": "dev"}, NOW,
                              NOW + dt.timedelta(hours=1), "test")
    use = ChallengeUse("j1", "tx1", "spki")
    first = make_record(ca)
    await store.record_certificate(first, "test", challenge=use)
    row = await store.get_challenge("j1")
    assert row.used_txid == "tx1" and row.issued_serial == first.serial
    second = make_record(ca)
    with pytest.raises(ChallengeUnavailable):
        await store.record_certificate(second, "test", challenge=use)
    assert await store.get(second.serial) is None  # rolled back: nothing half-written
    with pytest.raises(ChallengeUnavailable):  # the same jti cannot be added twice
        await store.add_challenge("j1", "dynamic", "staff", "h", {}, NOW, NOW, "test")


async def test_one_challenge_on_two_nodes_at_once_issues_exactly_one(site, ca) -> None:
    a, b = await site.open(), await site.open()
    for i in range(5):
        jti = f"race{i}"
        await a.add_challenge(jti, "dynamic", "staff", "h", {}, NOW, NOW + dt.timedelta(hours=1),
                              "t")
        recs = [make_record(ca), make_record(ca)]
        results = await asyncio.gather(
            a.record_certificate(recs[0], "a", challenge=ChallengeUse(jti, "txa", "ka")),
            b.record_certificate(recs[1], "b", challenge=ChallengeUse(jti, "txb", "kb")),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["ChallengeUnavailable", "NoneType"]
        winner = recs[results.index(None)]
        row = await b.get_challenge(jti)
        assert row.issued_serial == winner.serial
        loser = recs[1 - results.index(None)]
        assert await a.get(loser.serial) is None


async def test_audit_is_append_only(site, ca) -> None:
    store = await site.open()
    await store.record_certificate(make_record(ca), "test")
    for statement in ("UPDATE audit SET actor='x'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"):
            async with store.driver.transaction("test") as tx:
                await tx.execute(statement)
    log = await store.audit_log()
    assert [e["action"] for e in log] == ["issue"] and log[0]["actor"] == "test"


async def test_hold_can_be_released_other_reasons_are_final(site, ca) -> None:
    store = await site.open()
    rec = make_record(ca)
    await store.record_certificate(rec, "test")
    await store.revoke(rec.serial, "certificateHold", "t", NOW)
    assert await store.release_hold(rec.serial, "t", NOW)
    assert (await store.get(rec.serial)).status == "active"
    await store.revoke(rec.serial, "keyCompromise", "t", NOW)
    assert not await store.release_hold(rec.serial, "t", NOW)
    again = await store.revoke(rec.serial, "unspecified", "t", NOW)
    assert again is not None and not again.changed and again.record.reason == "keyCompromise"
    assert await store.revoke(424242, "keyCompromise", "t", NOW) is None


async def test_change_feed_orders_every_change_across_nodes(site, ca) -> None:
    a, b = await site.open(), await site.open()
    recs = [make_record(ca) for _ in range(3)]
    for r in recs:
        await a.record_certificate(r, "test")
    start = await b.current_seq()
    await b.revoke(recs[1].serial, "keyCompromise", "cli", NOW)  # another node / the CLI
    await a.revoke(recs[2].serial, "certificateHold", "t", NOW)
    await b.release_hold(recs[2].serial, "t", NOW)
    changes = await a.changes_since(start)
    assert [(c.serial, c.status) for c in changes] == [
        (recs[1].serial, "revoked"), (recs[2].serial, "active")]
    assert changes[0].reason == "keyCompromise" and changes[0].seq < changes[1].seq
    assert await a.changes_since(changes[-1].seq) == []
    assert [c.serial for c in await a.changes_since(0, limit=2)] == [r.serial for r in recs[:2]]


async def test_concurrent_writers_never_leave_a_gap_behind_the_position(site, ca) -> None:
    """A reader that applied seq N has seen every change <= N, even with writers racing."""
    nodes = [await site.open() for _ in range(3)]
    recs = [make_record(ca) for _ in range(30)]
    seen: dict[int, int] = {}
    done = False

    async def reader() -> None:
        position = 0
        while not done:
            for c in await nodes[0].changes_since(position):
                seen[c.serial] = c.seq
                position = c.seq
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    await asyncio.gather(*(nodes[i % 3].record_certificate(r, "t") for i, r in enumerate(recs)))
    done = True
    await task
    position = max(seen.values(), default=0)
    for c in await nodes[0].changes_since(position):
        seen[c.serial] = c.seq
    assert set(seen) == {r.serial for r in recs}


async def test_wait_for_change_wakes_on_another_nodes_commit(site, ca) -> None:
    a, b = await site.open(), await site.open()
    await a.wait_for_change(0.1)  # first call arms the watcher (connects the listener)
    rec = make_record(ca)
    await b.record_certificate(rec, "t")
    started = time.monotonic()
    await a.wait_for_change(5.0)
    assert time.monotonic() - started < 1.0
    assert [c.serial for c in await a.changes_since(0)] == [rec.serial]


async def test_crl_numbers_are_monotonic_across_nodes(site) -> None:
    a, b = await site.open(), await site.open()
    numbers = await asyncio.gather(*(
        (a if i % 2 else b).next_crl_number("staff", NOW, NOW + dt.timedelta(hours=1))
        for i in range(10)))
    assert sorted(numbers) == list(range(1, 11))
    assert await a.next_crl_number("guests", NOW, NOW) == 1


async def test_revoked_entries_for_the_crl(site, ca) -> None:
    store = await site.open()
    recs = [make_record(ca), make_record(ca), make_record(ca, group="guests")]
    for r in recs:
        await store.record_certificate(r, "t")
        await store.revoke(r.serial, "superseded", "t", NOW)
    entries = await store.revoked_entries("staff")
    assert sorted(e[0] for e in entries) == sorted(r.serial for r in recs[:2])
    assert all(e[1] == NOW and e[2] == "superseded" for e in entries)


async def test_find_by_device_subject_and_expiry(site, ca) -> None:
    store = await site.open()
    a = make_record(ca, cn="alpha", device_id="d1")
    b = make_record(ca, cn="beta", device_id="d2", group="guests")
    for r in (a, b):
        await store.record_certificate(r, "test")
    assert [r.serial for r in await store.find(device_id="d1")] == [a.serial]
    assert [r.serial for r in await store.find(subject_cn="beta")] == [b.serial]
    assert [r.serial for r in await store.find(group="guests")] == [b.serial]
    soon = await store.find(expiring_before=NOW + dt.timedelta(days=31))
    assert len(soon) == 2
    assert await store.find(expiring_before=NOW + dt.timedelta(days=29)) == []
    assert await store.status_counts() == {("staff", "active"): 1, ("guests", "active"): 1}
    assert await store.expiring_counts(NOW, dt.timedelta(days=31)) == {"staff": 1, "guests": 1}


async def test_sweep_deletes_only_long_expired_unused_challenges(site, ca) -> None:
    store = await site.open()
    hour = dt.timedelta(hours=1)
    await store.add_challenge("old", "dynamic", "staff", "h", {}, NOW - 72 * hour,
                              NOW - 48 * hour, "t")
    await store.add_challenge("recent", "dynamic", "staff", "h", {}, NOW - 2 * hour,
                              NOW - hour, "t")
    await store.add_challenge("used", "dynamic", "staff", "h", {}, NOW - 72 * hour,
                              NOW - 48 * hour, "t")
    await store.record_certificate(make_record(ca), "t", challenge=ChallengeUse("used", "tx", "k"),
                                   now=NOW - 60 * hour)
    assert await store.sweep_challenges(NOW) == 1
    assert await store.get_challenge("old") is None
    assert await store.get_challenge("recent") is not None  # kept a day past expiry
    assert (await store.get_challenge("used")).used_txid == "tx"  # the ledger stays


async def test_pending_request_approved_on_one_node_is_seen_on_another(site, ca) -> None:
    a, b = ScepStore(await site.open()), ScepStore(await site.open())
    await a.store.add_challenge("j", "dynamic", "staff", "h", {}, NOW, NOW, "t")
    req = await a.add_request("staff", "tx1", "CN=dev", "spki", b"\x30\x00", NOW,
                              challenge=ChallengeUse("j", "tx1", "spki"), device_id="d")
    with pytest.raises(RequestConflict):
        await b.add_request("staff", "tx1", "CN=dev", "spki", b"\x30\x00", NOW)
    assert (await b.find_request("staff", "tx1")).id == req.id
    decided = await b.decide(req.id, True, "admin", NOW, "ok")
    assert decided.status == "approved" and decided.decided_by == "admin"
    assert await b.decide(req.id, False, "admin", NOW) is None  # no longer pending
    rec = make_record(ca)
    await a.store.record_certificate(rec, "scep")
    await a.mark_issued(req.id, rec.serial)
    got = await b.get_request(req.id)
    assert got.status == "issued" and got.issued_serial == rec.serial and got.csr_der == b"\x30\x00"
    assert (await b.store.get_challenge("j")).issued_serial == rec.serial
    assert [r.id for r in await b.list_requests(status="issued", group="staff")] == [req.id]
    assert await a.expire_pending(NOW + dt.timedelta(days=1), NOW) == 0


async def test_due_revocations_keep_the_earliest_due_time(site) -> None:
    requests = ScepStore(await site.open())
    await requests.schedule_revocation(5, "staff", "superseded", NOW + dt.timedelta(days=2), "t", NOW)
    await requests.schedule_revocation(5, "staff", "superseded", NOW + dt.timedelta(days=1), "t", NOW)
    await requests.schedule_revocation(5, "staff", "superseded", NOW + dt.timedelta(days=3), "t", NOW)
    assert await requests.due_revocations(NOW + dt.timedelta(hours=25)) == [
        (5, "staff", "superseded", "t")]
    await requests.revocation_done(5)
    assert await requests.due_revocations(NOW + dt.timedelta(days=9)) == []


async def test_sessions_name_the_node_that_holds_them(site) -> None:
    sessions = SessionStore(await site.open())
    for sid, node in (("s1", "a"), ("s2", "b")):
        await sessions.upsert_session("nas", sid, nas_ip="127.0.0.2", nas_identifier=None,
                                      calling_station_id="aa", user_name="u", serial=9,
                                      group="staff", now=NOW, stopped=False, node=node)
    assert [s["acct_session_id"] for s in await sessions.active_sessions(9, node="a")] == ["s1"]
    assert len(await sessions.active_sessions(9)) == 2
    await sessions.record_disconnect("nas", "s1", "ack")
    assert await sessions.stop_sessions_of("nas", "127.0.0.2", None) == 2
    assert await sessions.active_sessions() == []


async def test_missed_disconnects_are_live_sessions_of_final_revocations(site, ca) -> None:
    """Live, never-disconnected sessions of this node whose certificate is revoked for good;
    not on hold, not stopped, not already sent a Disconnect, not another node's."""
    store = await site.open()
    sessions = SessionStore(store)
    recs = {name: make_record(ca) for name in ("gone", "held", "ok", "done", "other", "stop")}
    for rec in recs.values():
        await store.record_certificate(rec, "test")
    for name in ("gone", "done", "other", "stop"):
        await store.revoke(recs[name].serial, "keyCompromise", "test", NOW)
    await store.revoke(recs["held"].serial, "certificateHold", "test", NOW)
    for name, rec in recs.items():
        await sessions.upsert_session(
            "nas", f"s-{name}", nas_ip="127.0.0.2", nas_identifier=None,
            calling_station_id="aa", user_name="u", serial=rec.serial, group="staff", now=NOW,
            stopped=name == "stop", node="b" if name == "other" else "a")
    await sessions.record_disconnect("nas", "s-done", "timeout")
    missed = await sessions.missed_disconnects("a")
    assert [s["acct_session_id"] for s in missed] == ["s-gone"]
    assert missed[0]["group"] == "staff" and int(missed[0]["serial"], 16) == recs["gone"].serial


async def test_a_newer_schema_is_refused(site) -> None:
    store = await site.open()
    version = await store.schema_version()
    async with store.driver.transaction("test") as tx:
        if site.backend == "sqlite":
            await tx.execute(f"PRAGMA user_version={version + 1}")
        else:
            await tx.execute("UPDATE schema_version SET version=?", (version + 1,))
    await store.close()
    with pytest.raises(SchemaTooNew, match="newer than this certgate"):
        await site.open()
    assert issubclass(SchemaTooNew, StoreOpenError)


async def test_two_nodes_migrating_at_once_both_start(site) -> None:
    stores = await asyncio.gather(site.open(), site.open())
    versions = {await s.schema_version() for s in stores}
    assert len(versions) == 1


async def test_sqlite_store_files_are_owner_only_whatever_the_umask(tmp_path, ca) -> None:
    import os
    import stat

    from store import open_store

    old = os.umask(0o000)
    try:
        path = tmp_path / "fresh" / "var" / "certgate.sqlite"
        store = await open_store(path)
        await store.record_certificate(make_record(ca), "test")  # WAL and SHM now exist
        for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        await store.close()
        os.chmod(path, 0o644)  # left so by an older certgate: tightened at the next open
        store = await open_store(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        await store.close()
    finally:
        os.umask(old)


async def test_debug_logging_never_shows_statement_parameters(tmp_path, caplog) -> None:
    import logging

    from store import open_store
    from tests.store_support import NOW as now

    caplog.set_level(logging.DEBUG)
    store = await open_store(tmp_path / "s.sqlite")
    try:
        from enrollment.challenge_store import create_dynamic

        created = await create_dynamic(store, b"s" * 32, "staff", now=now, actor="test",
                                       subject_cn="secret-device-7")
        await store.get_challenge(created.jti)
    finally:
        await store.close()
    assert "secret-device-7" not in caplog.text and created.token not in caplog.text
    assert "executing" not in caplog.text


async def test_sqlite_scan_and_watch_on_a_path_with_uri_characters(tmp_path, ca) -> None:
    """'?' and '#' in the store path are part of the file name for the read-only
    connections (scan, change watch), not URI syntax."""
    from store import open_store

    odd = tmp_path / "odd dir?#x"
    store = await open_store(odd / "s.sqlite")
    try:
        await store.record_certificate(make_record(ca), "test")
        assert await store.status_counts() == {("staff", "active"): 1}
        await store.driver.wait_for_change(0.01)  # opens the watch connection
    finally:
        await store.close()
