"""`store.copy_store` (`certgate storage copy`): SQLite -> PostgreSQL and back, and the copy
serves the data: certificates, revocations, challenges, SCEP requests, sessions, CRL numbers,
audit, and a change feed that continues from the copied sequence."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from store import (
    DeviceEventStore,
    NotEmpty,
    ScepStore,
    SchemaMismatch,
    SessionStore,
    SourceChanged,
    copy_store,
)
from store.errors import ChallengeUnavailable
from store.records import ChallengeUse
from tests.store_support import NOW, StoreSite, make_record

HOUR = dt.timedelta(hours=1)


def _site(backend: str, request, tmp_path, name: str) -> StoreSite:
    if backend == "sqlite":
        return StoreSite("sqlite", path=tmp_path / f"{name}.sqlite")
    return StoreSite("postgresql", url=request.getfixturevalue("pg_cluster").create_database())


@pytest.fixture(params=[("sqlite", "postgresql"), ("postgresql", "sqlite"), ("sqlite", "sqlite"),
                        ("postgresql", "postgresql")],
                ids=lambda p: f"{p[0]}-to-{p[1]}")
async def sites(request, tmp_path):
    src = _site(request.param[0], request, tmp_path, "source")
    dst = _site(request.param[1], request, tmp_path, "target")
    yield src, dst
    await src.close_all()
    await dst.close_all()


async def _populate(store, ca) -> dict:
    """A small but complete PKI: every table gets rows."""
    requests, sessions = ScepStore(store), SessionStore(store)
    used, revoked, held = make_record(ca, cn="a", device_id="d1"), make_record(ca, cn="b"), \
        make_record(ca, cn="c", group="guests")
    for jti in ("used", "pending", "free"):
        await store.add_challenge(jti, "dynamic", "staff", "h", {"cn": jti}, NOW, NOW + HOUR, "t")
    await store.record_certificate(used, "scep", challenge=ChallengeUse("used", "tx1", "s"), now=NOW)
    await store.record_certificate(revoked, "cli", now=NOW)
    await store.record_certificate(held, "cli", now=NOW)
    await store.revoke(revoked.serial, "keyCompromise", "admin", NOW)
    await store.revoke(held.serial, "certificateHold", "admin", NOW)
    request = await requests.add_request("staff", "tx2", "CN=p", "spki", b"\x30\x03\x02\x01\x07",
                                         NOW, challenge=ChallengeUse("pending", "tx2", "spki"))
    await requests.schedule_revocation(used.serial, "staff", "superseded", NOW + HOUR, "t", NOW)
    await sessions.upsert_session("nas", "s1", nas_ip="127.0.0.2", nas_identifier=None,
                                  calling_station_id="aa", user_name="u", serial=used.serial,
                                  group="staff", now=NOW, stopped=False, node="box")
    for _ in range(2):
        await store.next_crl_number("staff", NOW, NOW + HOUR)
    await DeviceEventStore(store).record("d1", "device-noncompliant", "e1", NOW, NOW)
    return {"used": used, "revoked": revoked, "held": held, "request": request,
            "seq": await store.current_seq()}


async def test_copy_serves_the_data_on_the_other_backend(sites, ca) -> None:
    src_site, dst_site = sites
    source = await src_site.open()
    data = await _populate(source, ca)
    target = await dst_site.open()
    reported: list[tuple[str, int]] = []
    counts = await copy_store(source.driver, target.driver, chunk=2, every=2,
                              progress=lambda t, n: reported.append((t, n)))

    assert counts == {"audit": 9, "certificates": 3, "challenges": 3, "crl_state": 1, "meta": 1,
                      "revocations_due": 1, "scep_requests": 1, "sessions": 1,
                      "device_events": 1}
    assert ("audit", 8) in reported and ("certificates", 2) in reported
    await target.close()
    target = await dst_site.open()  # what a node started on the copy sees

    for key in ("used", "revoked", "held"):
        before, after = await source.get(data[key].serial), await target.get(data[key].serial)
        assert after == before, key
    assert await target.audit_log(limit=100) == await source.audit_log(limit=100)
    assert await DeviceEventStore(target).newest("d1") == await DeviceEventStore(source).newest("d1")
    assert (await target.get(data["revoked"].serial)).reason == "keyCompromise"
    assert await target.release_hold(data["held"].serial, "admin", NOW)  # hold stays releasable
    assert (await target.load_index(NOW)).revoked == {"staff": {data["revoked"].serial}}
    assert [r.serial for r in await target.find(device_id="d1")] == [data["used"].serial]
    assert await target.revoked_entries("staff") == await source.revoked_entries("staff")

    # challenges: the used and the reserved ones stay spent, the free one is consumable once
    new = make_record(ca, cn="free")
    with pytest.raises(ChallengeUnavailable):
        await target.record_certificate(new, "scep", challenge=ChallengeUse("used", "t", "s"))
    with pytest.raises(ChallengeUnavailable):
        await target.record_certificate(new, "scep", challenge=ChallengeUse("pending", "t", "s"))
    await target.record_certificate(new, "scep", challenge=ChallengeUse("free", "t3", "s"))
    assert (await target.get_challenge("free")).issued_serial == new.serial

    # the change feed continues after the copied position (release_hold took seq + 1)
    changes = await target.changes_since(data["seq"])
    assert [(c.seq, c.serial) for c in changes] == [
        (data["seq"] + 1, data["held"].serial), (data["seq"] + 2, new.serial)]

    requests = ScepStore(target)
    got = await requests.get_request(data["request"].id)
    assert got.csr_der == b"\x30\x03\x02\x01\x07" and got.status == "pending"
    fresh = await requests.add_request("staff", "tx9", "CN=q", "spki", b"\x30\x00", NOW)
    assert fresh.id > data["request"].id  # ids continue past the copied ones, no conflict
    assert await requests.due_revocations(NOW + 2 * HOUR) == [
        (data["used"].serial, "staff", "superseded", "t")]
    sessions = await SessionStore(target).active_sessions(data["used"].serial, node="box")
    assert [s["acct_session_id"] for s in sessions] == ["s1"]
    assert await target.next_crl_number("staff", NOW, NOW + HOUR) == 3
    await target.audit("admin", "after-copy")  # audit ids continue too
    assert (await target.audit_log(limit=1))[0]["action"] == "after-copy"


async def test_a_target_with_data_is_refused_and_left_alone(sites, ca) -> None:
    src_site, dst_site = sites
    source, target = await src_site.open(), await dst_site.open()
    await _populate(source, ca)
    await target.next_crl_number("guests", NOW, NOW + HOUR)  # one row anywhere is enough
    with pytest.raises(NotEmpty, match=r"is not empty \(crl_state has 1 row"):
        await copy_store(source.driver, target.driver)
    assert await target.find(profile=None) == [] and await target.current_seq() == 0



async def test_a_target_whose_change_sequence_moved_is_not_empty(tmp_path, ca) -> None:
    source = await StoreSite("sqlite", path=tmp_path / "s.sqlite").open()
    target = await StoreSite("sqlite", path=tmp_path / "t.sqlite").open()
    async with target.driver.transaction("t") as tx:
        await target.bump_seq(tx)
    with pytest.raises(NotEmpty, match=r"t\.sqlite is not empty \(meta has 1 row"):
        await copy_store(source.driver, target.driver)
    await source.close()
    await target.close()


async def test_a_target_with_other_tables_is_refused(tmp_path) -> None:
    source = await StoreSite("sqlite", path=tmp_path / "s.sqlite").open()
    target = await StoreSite("sqlite", path=tmp_path / "t.sqlite").open()
    async with target.driver.transaction("t") as tx:
        await tx.execute("CREATE TABLE extra (x INTEGER)")
    with pytest.raises(SchemaMismatch, match="extra only in the target"):
        await copy_store(source.driver, target.driver)
    await source.close()
    await target.close()


async def test_an_unmigrated_source_is_refused(tmp_path) -> None:
    source = await StoreSite("sqlite", path=tmp_path / "s.sqlite").open(migrate=False)
    target = await StoreSite("sqlite", path=tmp_path / "t.sqlite").open()
    with pytest.raises(SchemaMismatch, match="source .* schema v0.*storage migrate"):
        await copy_store(source.driver, target.driver)
    await source.close()
    await target.close()


async def test_a_source_written_during_the_copy_commits_nothing(tmp_path, ca) -> None:
    source = await StoreSite("sqlite", path=tmp_path / "s.sqlite").open()
    await _populate(source, ca)
    target = await StoreSite("sqlite", path=tmp_path / "t.sqlite").open()

    def another_process_writes(table: str, rows: int) -> None:
        with sqlite3.connect(tmp_path / "s.sqlite") as db:  # e.g. a revocation by the CLI
            db.execute("UPDATE meta SET value=value+1 WHERE key='change_seq'")

    with pytest.raises(SourceChanged, match=r"written during the copy \(change_seq \d+ -> \d+\)"):
        await copy_store(source.driver, target.driver, chunk=100, every=1,
                         progress=another_process_writes)
    assert await target.find(profile=None) == [] and await target.current_seq() == 0
    await source.close()
    await target.close()
