"""Revoke anywhere, effective everywhere: store (durable) -> index -> CRL -> Disconnect.

The revocation is committed and audited before anything is acknowledged; the
in-memory index is updated at once so the next RADIUS authentication sees it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from prometheus_client import Counter, Gauge

from certgate.runtime import Runtime
from revocation.crl_der import build_crl_der, der_to_pem
from store import StoreUnavailable
from store.records import REVOKED, CertRecord, Change, RevokeOutcome

log = logging.getLogger("certgate.revocation")

REVOCATIONS = Counter("certgate_revocations_total", "Certificates revoked", ["group", "reason"])
CRL_NEXT_UPDATE = Gauge("certgate_crl_next_update_timestamp_seconds", "nextUpdate of the "
                        "published CRL", ["group"])
CRL_NUMBER = Gauge("certgate_crl_number", "CRL number of the published CRL", ["group"])


@dataclass
class PublishedCrl:
    der: bytes
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    _pem: bytes | None = None

    _parsed: x509.CertificateRevocationList | None = None

    @property
    def pem(self) -> bytes:
        if self._pem is None:
            self._pem = der_to_pem(self.der)
        return self._pem

    def entry(self, serial: int) -> tuple[dt.datetime, str | None] | None:
        """(revocation time, reason) of `serial` if this CRL lists it. A linear scan in
        cryptography's Rust parser: for the outage path, run it off the event loop."""
        if self._parsed is None:
            self._parsed = x509.load_der_x509_crl(self.der)
        revoked = self._parsed.get_revoked_certificate_by_serial_number(serial)
        if revoked is None:
            return None
        try:
            reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        return revoked.revocation_date_utc, reason.value if reason is not None else None


class CrlPublisher:
    """Keeps one signed CRL per group; regenerates on change and at half-life.

    Each change bumps the group's generation (`mark_dirty`, called after the durable write
    and before the acknowledgement). A regeneration records the generation it started from,
    read before the store, so its CRL lists every change up to it. A download needs the
    generation current when it arrived: when a regeneration in progress or just finished
    already covers it, the download is served from that one instead of building another.
    Under a steady stream of revocations, every waiting download thus shares the next
    rebuild: at most two rebuilds of wait, however many downloads are queued.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.validity = dt.timedelta(hours=runtime.settings.revocation.crl_validity_hours)
        self.current: dict[str, PublishedCrl] = {}
        self.rebuilds = 0  # regenerations done (tests and benchmarks read it)
        self._locks = {g: asyncio.Lock() for g in runtime.groups.names()}
        self._generation = dict.fromkeys(runtime.groups.names(), 0)
        self._built: dict[str, int] = {}  # generation the current CRL covers

    async def regenerate(self, group: str) -> PublishedCrl:
        async with self._locks[group]:
            return await self._regenerate_locked(group)

    def _stale(self, group: str, wanted: int) -> bool:
        return self.current.get(group) is None or self._built.get(group, -1) < wanted

    async def _regenerate_locked(self, group: str) -> PublishedCrl:
        generation = self._generation[group]
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        next_update = now + self.validity
        # Entries first, then the number: a CRL with a higher number never lists less.
        entries = await self.runtime.store.revoked_entries(group)
        number = await self.runtime.store.next_crl_number(group, now, next_update)
        ca = self.runtime.pki.groups[group]
        # Signing a million entries takes seconds: off the loop.
        der = await asyncio.get_running_loop().run_in_executor(
            None, build_crl_der, ca.certificate, ca.key, entries, number, now, next_update)
        count = len(entries)
        published = PublishedCrl(der, number, now, next_update, count)
        self.current[group] = published
        self._built[group] = generation
        self.rebuilds += 1
        CRL_NEXT_UPDATE.labels(group=group).set(next_update.timestamp())
        CRL_NUMBER.labels(group=group).set(number)
        log.info("CRL published group=%s number=%d entries=%d next_update=%s", group, number,
                 count, next_update.isoformat())
        return published

    async def get(self, group: str) -> PublishedCrl:
        """The current CRL; waits for a regeneration in progress, so a revocation that was
        acknowledged is always in the CRL served after it."""
        wanted = self._generation[group]
        async with self._locks[group]:
            crl = self.current.get(group)
            if self._stale(group, wanted):
                try:
                    crl = await self._regenerate_locked(group)
                except StoreUnavailable:  # still stale: retried on the next request or refresh
                    if crl is None or dt.datetime.now(dt.UTC) >= crl.next_update:
                        raise
                    log.warning("store unavailable: serving CRL number=%d group=%s until it returns",
                                crl.number, group)
            assert crl is not None
            return crl

    def mark_dirty(self, group: str | None = None) -> None:
        for name in [group] if group else self.runtime.groups.names():
            self._generation[name] += 1

    async def refresh_due(self) -> None:
        """Regenerate CRLs that changed or passed half their validity."""
        now = dt.datetime.now(dt.UTC)
        for group in self.runtime.groups.names():
            crl = self.current.get(group)
            half_life = crl.this_update + (crl.next_update - crl.this_update) / 2 if crl else None
            if crl is None or self._stale(group, self._generation[group]) or now >= half_life:
                await self.regenerate(group)


DisconnectHook = Callable[[CertRecord], Awaitable[None]]
SessionHook = DisconnectHook

HOLD = "certificateHold"


def _state(status: str, reason: str | None) -> str:
    """What the session hooks act on: final revocation, hold, or active."""
    if status != REVOKED:
        return "active"
    return "held" if reason == HOLD else "revoked"


class RevocationService:
    def __init__(self, runtime: Runtime, crls: CrlPublisher) -> None:
        self.runtime = runtime
        self.crls = crls
        # Session hooks, each with the certificate as it is now: a final revocation
        # (disconnect), a certificateHold (quarantine CoA), a released hold (CoA back).
        self.disconnect_hooks: list[SessionHook] = []
        self.hold_hooks: list[SessionHook] = []
        self.release_hooks: list[SessionHook] = []
        # the state each certificate was last acted on in this process (revoked / held /
        # active), so the watcher seeing our own write does not count or act twice, and a
        # change made elsewhere (the CLI, another node) is acted on once
        self._acted: dict[tuple[str, int], str] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def revoke(self, serial: int, reason: str, actor: str,
                     details: dict | None = None) -> RevokeOutcome | None:
        outcome = await self.runtime.store.revoke(serial, reason, actor, details=details)
        if outcome is None:
            return None
        if outcome.changed:
            self.applied(outcome.record, actor)
        return outcome

    def applied(self, record: CertRecord, actor: str | None = None) -> None:
        """Effects after the durable write: index, metrics, CRL, the sessions' CoA/Disconnect."""
        state = _state(record.status, record.reason)
        key = (record.group, record.serial)
        # the change feed may have seen this commit (and acted) while the write was returning
        fresh = self._acted.get(key) != state
        self._acted[key] = state
        if record.status == REVOKED:
            self.runtime.revoked.add(record.group, record.serial, held=state == "held")
            if fresh:
                REVOCATIONS.labels(group=record.group, reason=record.reason or "unspecified").inc()
            log.info("revoked serial=%s group=%s reason=%s actor=%s", record.serial_hex, record.group,
                     record.reason, actor)
        else:
            self.runtime.revoked.discard(record.group, record.serial)
            log.info("hold released serial=%s group=%s actor=%s", record.serial_hex,
                     record.group, actor)
        if fresh:
            self._spawn(self._sessions(record, state))
        self.crls.mark_dirty(record.group)
        self._spawn(self._refresh(record.group))

    async def _refresh(self, group: str) -> None:
        try:
            await self.crls.get(group)
        except StoreUnavailable as exc:  # rebuilt on the next download or refresh
            log.warning("CRL not rebuilt group=%s: %s", group, exc)
        except Exception:
            log.exception("CRL regeneration failed group=%s", group)

    def on_store_changes(self, changes: list[Change]) -> None:
        """Changes the watcher saw in the store (own writes included): count revocations made
        by other processes (the CLI), refresh CRLs, and act on the sessions of certificates
        revoked, held or released elsewhere."""
        touched: set[str] = set()
        for change in changes:
            key = (change.group, change.serial)
            state = _state(change.status, change.reason)
            previous = self._acted.get(key)
            if previous == state:
                continue  # ours (applied() already acted), or seen before
            touched.add(change.group)
            self._acted[key] = state
            if state != "active":
                REVOCATIONS.labels(group=change.group, reason=change.reason or "unspecified").inc()
            self._spawn(self._sessions_of(change.serial, state))
        for group in touched:
            # rebuilt now, not on the next download: the CRL is also what OCSP answers from
            # while the store is down
            self.crls.mark_dirty(group)
            self._spawn(self._refresh(group))

    async def _sessions_of(self, serial: int, state: str) -> None:
        try:
            record = await self.runtime.store.get(serial)
        except Exception:
            log.exception("changed elsewhere: serial=%x not read, sessions not updated", serial)
            return
        if record is None:
            return
        if _state(record.status, record.reason) != state:
            return  # changed again since: that change is (or will be) acted on
        log.info("%s elsewhere serial=%s group=%s reason=%s",
                 "released" if state == "active" else "revoked", record.serial_hex,
                 record.group, record.reason)
        await self._sessions(record, state)

    async def _sessions(self, record: CertRecord, state: str) -> None:
        hooks = {"revoked": ("disconnect", self.disconnect_hooks),
                 "held": ("hold", self.hold_hooks),
                 "active": ("release", self.release_hooks)}[state]
        kind, todo = hooks
        if state == "held" and not self.hold_hooks:
            kind, todo = "disconnect", self.disconnect_hooks  # no quarantine wiring: as before
        for hook in todo:
            try:
                await hook(record)
            except Exception:
                log.exception("%s hook failed serial=%s", kind, record.serial_hex)

    async def release_hold(self, serial: int, actor: str) -> CertRecord | None:
        if not await self.runtime.store.release_hold(serial, actor):
            return None
        record = await self.runtime.store.get(serial)
        assert record is not None
        self.applied(record, actor)
        return record
