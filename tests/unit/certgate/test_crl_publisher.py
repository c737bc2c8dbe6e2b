"""CrlPublisher (certgate/crls.py) on a real SQLite store: the delta lists every revocation
acknowledged before a download; the complete CRL follows within full_crl_interval without a
rebuild from the store; a base CRL persisted on disk is taken up at start only while it
matches the store.

The soak of 2026-12-07 saw the server CPU per operation double as revocations accumulated:
each download after a revocation rebuilt and re-signed the whole CRL. Here a revocation costs
a delta and, at most once per interval, one re-signing of what is already encoded."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from types import SimpleNamespace

from cryptography import x509

from certgate.revocations import CrlPublisher
from tests.store_support import StoreSite, make_ca, make_record


def _runtime(store, ca, pki_dir=None, **revocation) -> SimpleNamespace:
    cert, key = ca
    return SimpleNamespace(
        store=store,
        pki=SimpleNamespace(groups={"staff": SimpleNamespace(certificate=cert, key=key)}),
        settings=SimpleNamespace(
            revocation=SimpleNamespace(**{"crl_validity_hours": 24, **revocation}),
            pki=SimpleNamespace(dir=pki_dir), http=SimpleNamespace(public_url="http://x")),
        groups=SimpleNamespace(names=lambda: ["staff"]),
    )


def _serials(der: bytes) -> dict[int, str | None]:
    out = {}
    for entry in x509.load_der_x509_crl(der):
        try:
            out[entry.serial_number] = entry.extensions.get_extension_for_class(
                x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            out[entry.serial_number] = None
    return out


async def _records(store, ca, first: int, n: int):
    records = [make_record(ca, serial=first + i) for i in range(n)]
    for record in records:
        await store.record_certificate(record, "test")
    return records


def test_every_delta_download_lists_every_acknowledged_revocation(tmp_path) -> None:
    async def scenario() -> None:
        site = StoreSite("sqlite", path=tmp_path / "store.db")
        store = await site.open()
        try:
            ca = make_ca()
            records = await _records(store, ca, 0x1000, 40)
            crls = CrlPublisher(_runtime(store, ca, full_crl_interval=30))
            base = await crls.get("staff")
            acknowledged: set[int] = set()
            downloads = 0
            done = False

            async def revoker() -> None:
                nonlocal done
                for record in records:
                    await store.revoke(record.serial, "keyCompromise", "test")
                    crls.mark_dirty("staff")  # what RevocationService.applied does
                    acknowledged.add(record.serial)
                    await asyncio.sleep(0.002)
                done = True

            async def downloader() -> None:
                nonlocal downloads
                while not done:
                    before = set(acknowledged)
                    delta = x509.load_der_x509_crl((await crls.get_delta("staff")).der)
                    assert delta.extensions.get_extension_for_class(
                        x509.DeltaCRLIndicator).value.crl_number == base.number
                    listed = {entry.serial_number for entry in delta}
                    assert before <= listed, sorted(before - listed)
                    downloads += 1
                    await asyncio.sleep(0)

            started = time.monotonic()
            await asyncio.gather(revoker(), *(downloader() for _ in range(12)))
            assert downloads > 2 * len(records)
            # the complete CRL was served at once, never rebuilt from the store again, and
            # not re-signed during the 30 s interval
            full = await crls.get("staff")
            assert full.number == base.number and time.monotonic() - started < 10
            assert crls.rebuilds == 1 and crls.full_signed == 1
            # ... until the interval passes: then it lists everything, from what it had
            final = await crls.regenerate("staff")
            assert set(_serials(final.der)) == {r.serial for r in records}
            assert crls.rebuilds == 1
            await crls.close()
        finally:
            await site.close_all()

    asyncio.run(scenario())


def test_complete_crl_follows_within_the_interval(tmp_path) -> None:
    async def scenario() -> None:
        site = StoreSite("sqlite", path=tmp_path / "store.db")
        store = await site.open()
        try:
            ca = make_ca()
            records = await _records(store, ca, 0x2000, 3)
            crls = CrlPublisher(_runtime(store, ca, full_crl_interval=0.5))
            first = await crls.get("staff")
            await store.revoke(records[0].serial, "keyCompromise", "test")
            revoked_at = time.monotonic()
            crls.mark_dirty("staff")
            while records[0].serial not in _serials((await crls.get("staff")).der):
                assert time.monotonic() - revoked_at < 3, "complete CRL not updated"
                await asyncio.sleep(0.05)
            full = await crls.get("staff")
            assert full.number > first.number
            freshest = x509.load_der_x509_crl(full.der).extensions.get_extension_for_class(
                x509.FreshestCRL).value
            assert freshest[0].full_name[0].value == "http://x/crl/delta/staff.crl"
            assert crls.rebuilds == 1
            await crls.close()
        finally:
            await site.close_all()

    asyncio.run(scenario())


def test_interval_zero_downloads_wait_for_a_complete_crl(tmp_path) -> None:
    async def scenario() -> None:
        site = StoreSite("sqlite", path=tmp_path / "store.db")
        store = await site.open()
        try:
            ca = make_ca()
            records = await _records(store, ca, 0x3000, 5)
            crls = CrlPublisher(_runtime(store, ca, full_crl_interval=0))
            await crls.get("staff")
            for record in records:
                await store.revoke(record.serial, "superseded", "test")
                crls.mark_dirty("staff")
                assert record.serial in _serials((await crls.get("staff")).der)
            assert crls.rebuilds == 1
            await crls.close()
        finally:
            await site.close_all()

    asyncio.run(scenario())


def test_a_released_hold_is_removed_by_the_delta_and_a_big_delta_makes_a_new_base(tmp_path) -> None:
    async def scenario() -> None:
        site = StoreSite("sqlite", path=tmp_path / "store.db")
        store = await site.open()
        try:
            ca = make_ca()
            records = await _records(store, ca, 0x4000, 6)
            held = records[0].serial
            await store.revoke(held, "certificateHold", "test")
            crls = CrlPublisher(_runtime(store, ca, full_crl_interval=60,
                                         delta_crl_max_entries=3))
            base = await crls.get("staff")
            assert _serials(base.der) == {held: "certificateHold"}
            assert await store.release_hold(held, "test")
            crls.mark_dirty("staff")
            delta = await crls.get_delta("staff")
            assert _serials(delta.der) == {held: "removeFromCRL"}
            for record in records[1:5]:
                await store.revoke(record.serial, "keyCompromise", "test")
            crls.mark_dirty("staff")
            assert len(_serials((await crls.get_delta("staff")).der)) == 5
            await crls.refresh_due()  # delta past delta_crl_max_entries: a new base
            new_base = await crls.get_base("staff")
            assert new_base.number > base.number
            assert set(_serials(new_base.der)) == {r.serial for r in records[1:5]}
            delta = x509.load_der_x509_crl((await crls.get_delta("staff")).der)
            assert len(delta) == 0
            assert delta.extensions.get_extension_for_class(
                x509.DeltaCRLIndicator).value.crl_number == new_base.number
            await crls.close()
        finally:
            await site.close_all()

    asyncio.run(scenario())


def test_persisted_base_is_taken_up_while_it_matches_the_store(tmp_path) -> None:
    async def scenario() -> None:
        site = StoreSite("sqlite", path=tmp_path / "store.db")
        store = await site.open()
        pki = tmp_path / "pki"
        try:
            ca = make_ca()
            records = await _records(store, ca, 0x5000, 6)
            for record in records[:3]:
                await store.revoke(record.serial, "keyCompromise", "test")
            await store.revoke(records[3].serial, "certificateHold", "test")
            first = CrlPublisher(_runtime(store, ca, pki))
            base = await first.get("staff")
            await first.close()
            files = sorted(p.name for p in (pki / "crl").iterdir())
            assert files == ["staff.base.crl", "staff.base.json"]
            for name in files:
                assert stat.S_IMODE(os.stat(pki / "crl" / name).st_mode) == 0o644
            # changes while it was down: one revoked, the hold released
            await store.revoke(records[4].serial, "affiliationChanged", "test")
            assert await store.release_hold(records[3].serial, "test")

            again = CrlPublisher(_runtime(store, ca, pki))
            await again.refresh_due()
            assert (again.reused, again.rebuilds) == (1, 0)
            assert (await again.get_base("staff")).der == base.der
            assert _serials((await again.get_delta("staff")).der) == {
                records[4].serial: "affiliationChanged", records[3].serial: "removeFromCRL"}
            assert set(_serials((await again.get("staff")).der)) == {
                r.serial for r in records[:3]} | {records[4].serial}
            await again.close()

            # a revocation the feed never numbered (a store edited behind certgate's back):
            # the count no longer matches and the CRL is rebuilt from the store
            db = sqlite3.connect(tmp_path / "store.db")
            db.execute("UPDATE certificates SET status='revoked', revoked_at=1, "
                       "reason='superseded' WHERE serial=?", (f"{records[5].serial:x}",))
            db.commit()
            db.close()
            third = CrlPublisher(_runtime(store, ca, pki))
            await third.refresh_due()
            assert (third.reused, third.rebuilds) == (0, 1)
            assert records[5].serial in _serials((await third.get("staff")).der)
            await third.close()

            # another intermediate key: not taken up either
            fourth = CrlPublisher(_runtime(store, make_ca(), pki))
            await fourth.refresh_due()
            assert (fourth.reused, fourth.rebuilds) == (0, 1)
            await fourth.close()
        finally:
            await site.close_all()

    asyncio.run(scenario())


def test_store_outage_keeps_serving_until_the_store_returns(tmp_path) -> None:
    async def scenario() -> None:
        from store import StoreUnavailable

        site = StoreSite("sqlite", path=tmp_path / "store.db")
        store = await site.open()
        try:
            ca = make_ca()
            (record,) = await _records(store, ca, 0x6000, 1)
            runtime = _runtime(store, ca, full_crl_interval=0)
            crls = CrlPublisher(runtime)
            first = await crls.get("staff")
            first_delta = await crls.get_delta("staff")
            await store.revoke(record.serial, "keyCompromise", "test")

            class Down:
                def __getattr__(self, name: str):
                    async def down(*args, **kwargs):
                        raise StoreUnavailable(name, "ConnectionRefusedError")
                    return down

            runtime.store = Down()
            crls.mark_dirty("staff")
            assert (await crls.get("staff")).number == first.number  # within its nextUpdate
            assert (await crls.get_delta("staff")).number == first_delta.number
            runtime.store = store
            crls.mark_dirty("staff")
            assert record.serial in _serials((await crls.get("staff")).der)
            assert record.serial in _serials((await crls.get_delta("staff")).der)
            await crls.close()
        finally:
            await site.close_all()

    asyncio.run(scenario())
