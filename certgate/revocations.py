"""Revoke anywhere, effective everywhere: store (durable) -> index -> CRL -> Disconnect.

The revocation is committed and audited before anything is acknowledged; the
in-memory index is updated at once so the next RADIUS authentication sees it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from prometheus_client import Counter

from certgate.crls import CrlPublisher, PublishedCrl
from certgate.runtime import Runtime
from store import StoreUnavailable
from store.records import REVOKED, CertRecord, Change, RevokeOutcome

__all__ = ["CrlPublisher", "PublishedCrl", "RevocationService"]

log = logging.getLogger("certgate.revocation")

REVOCATIONS = Counter("certgate_revocations_total", "Certificates revoked", ["group", "reason"])

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
