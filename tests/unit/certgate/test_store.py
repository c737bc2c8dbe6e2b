from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pki import profiles
from pki.keys import generate_key
from revocation.inventory import CertRecord
from revocation.snapshot import RevocationIndex
from revocation.store import MIGRATIONS, ChallengeUnavailable, ChallengeUse, SerialConflict, Store
from revocation.watcher import RevocationWatcher

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca():
    key = generate_key("ec-p256")
    cert = profiles.root_certificate(key, "Test CA", "t", NOW, 365)
    return cert, key


def make_record(ca, serial: int | None = None, cn: str = "dev", group: str = "staff",
                device_id: str | None = None) -> CertRecord:
    cert_, key = ca
    leaf = profiles.device_certificate(
        ec.generate_private_key(ec.SECP256R1()).public_key(), profiles.name(cn), [], group,
        "http://x", cert_, key, serial or profiles.new_serial(), NOW, 30,
    )
    return CertRecord.from_certificate(leaf, group, device_id=device_id, issued_at=NOW)


async def test_records_survive_restart(tmp_path: Path, ca) -> None:
    path = tmp_path / "s.sqlite"
    store = await Store.open(path)
    rec = make_record(ca, device_id="d1")
    await store.record_certificate(rec, "test")
    await store.revoke(rec.serial, "keyCompromise", "test", NOW)
    await store.close()

    store = await Store.open(path)
    got = await store.get(rec.serial)
    assert got is not None and got.status == "revoked" and got.reason == "keyCompromise"
    assert got.device_id == "d1" and got.pem == rec.pem
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()
    index = RevocationIndex()
    watcher = RevocationWatcher(path, index)  # the start-up load of a serving process
    assert watcher.load_all() == 1 and index.is_revoked("staff", rec.serial) and index.version == 1
    watcher.close()


async def test_serial_is_unique(tmp_path: Path, ca) -> None:
    store = await Store.open(tmp_path / "s.sqlite")
    rec = make_record(ca, serial=12345)
    await store.record_certificate(rec, "test")
    with pytest.raises(SerialConflict):
        await store.record_certificate(make_record(ca, serial=12345), "test")
    assert len(await store.find()) == 1
    await store.close()


async def test_challenge_consumed_atomically_with_the_certificate(tmp_path: Path, ca) -> None:
    store = await Store.open(tmp_path / "s.sqlite")
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
    await store.close()


async def test_audit_is_append_only(tmp_path: Path, ca) -> None:
    path = tmp_path / "s.sqlite"
    store = await Store.open(path)
    await store.record_certificate(make_record(ca), "test")
    await store.close()
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET actor='x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit")
    conn.close()


async def test_hold_can_be_released_other_reasons_are_final(tmp_path: Path, ca) -> None:
    store = await Store.open(tmp_path / "s.sqlite")
    rec = make_record(ca)
    await store.record_certificate(rec, "test")
    await store.revoke(rec.serial, "certificateHold", "t", NOW)
    assert await store.release_hold(rec.serial, "t", NOW)
    assert (await store.get(rec.serial)).status == "active"
    await store.revoke(rec.serial, "keyCompromise", "t", NOW)
    assert not await store.release_hold(rec.serial, "t", NOW)
    again = await store.revoke(rec.serial, "unspecified", "t", NOW)
    assert again is not None and not again.changed and again.record.reason == "keyCompromise"
    await store.close()


async def test_watcher_sees_revocations_from_another_connection(tmp_path: Path, ca) -> None:
    path = tmp_path / "s.sqlite"
    store = await Store.open(path)
    recs = [make_record(ca) for _ in range(3)]
    for r in recs:
        await store.record_certificate(r, "test")
    await store.revoke(recs[0].serial, "superseded", "t", NOW)
    index = RevocationIndex()
    watcher = RevocationWatcher(path, index)
    assert watcher.load_all() == 1
    assert watcher.poll() == []  # nothing new: only a PRAGMA
    other = await Store.open(path)  # e.g. the `certgate revoke` CLI process
    await other.revoke(recs[1].serial, "keyCompromise", "cli", NOW)
    await other.close()
    assert [c.serial for c in watcher.poll()] == [recs[1].serial]
    assert index.is_revoked("staff", recs[1].serial)
    assert not index.is_revoked("staff", recs[2].serial)
    assert not index.is_revoked("guests", recs[1].serial)
    watcher.close()
    await store.close()


async def test_find_by_device_subject_and_expiry(tmp_path: Path, ca) -> None:
    store = await Store.open(tmp_path / "s.sqlite")
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
    await store.close()


async def test_sweep_deletes_only_long_expired_unused_challenges(tmp_path: Path, ca) -> None:
    store = await Store.open(tmp_path / "s.sqlite")
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
    await store.close()
