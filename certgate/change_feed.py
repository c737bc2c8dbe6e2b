"""Keeps this node's in-memory view (revoked and issued certificates) in step with the store.

Every node, on SQLite or on a shared PostgreSQL, follows the store's change feed
(`Store.changes_since`): at start the whole view is loaded, then the loop waits for the
driver's wake-up (NOTIFY / data_version) or a safety interval and reads every change after its
position. A lost notification or a reconnect therefore delays a change, never loses it.

While the store is unreachable the view stays as it was: certificates seen stay accepted,
revocations seen stay rejected, and a certificate never seen is answered `None` ("unknown",
RADIUS rejects it as store_unavailable). Past `outage_grace`, `closed()` tells RADIUS to
reject everything unless `outage_mode = "open"`. Recovery is automatic: the next successful
read catches up from the position the node had.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable

from revocation.issued import IssuedIndex
from revocation.snapshot import RevocationIndex
from store import Store, StoreUnavailable
from store.records import REVOKED, Change

HOLD = "certificateHold"

log = logging.getLogger("certgate.store")

SAFETY_INTERVAL = 2.0  # seconds between reads when no wake-up came (also the health probe)
BATCH = 10_000
MAX_BACKOFF = 5.0

ChangeHook = Callable[[list[Change]], None]


class ChangeFeed:
    def __init__(self, store: Store, revoked: RevocationIndex, issued: IssuedIndex, *,
                 outage_grace: float = 900.0, outage_mode: str = "closed",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.revoked = revoked
        self.issued = issued
        self.outage_grace = outage_grace
        self.outage_mode = outage_mode
        self.clock = clock
        self.hooks: list[ChangeHook] = []  # called with changes that touch revocation
        self.on_health: Callable[[bool], None] | None = None
        self.down_since: float | None = None
        self.down_reason = ""
        self.last_caught_up: float | None = None

    @property
    def position(self) -> int:
        return self.revoked.version

    @property
    def up(self) -> bool:
        return self.down_since is None

    # -- what RADIUS and OCSP ask -----------------------------------------------------------

    def is_issued(self, group: str, serial: int) -> bool | None:
        """True if the inventory holds it (revoked or not); False if not; None if unknown
        (store down)."""
        if self.issued.is_issued(group, serial) or self.revoked.is_revoked(group, serial):
            return True
        return False if self.down_since is None else None

    def closed(self) -> bool:
        """Past the outage grace with outage_mode closed: reject every authentication."""
        return (self.down_since is not None and self.outage_mode == "closed"
                and self.clock() - self.down_since > self.outage_grace)

    # -- loading and following ------------------------------------------------------------

    async def load(self) -> None:
        snapshot = await self.store.load_index(dt.datetime.now(dt.UTC))
        self.revoked.load(snapshot.revoked, snapshot.held, snapshot.seq)
        self.issued.load(snapshot.issued)
        await self.catch_up()

    async def catch_up(self) -> list[Change]:
        """Apply every change after our position; returns those that touch revocation."""
        relevant: list[Change] = []
        while True:
            changes = await self.store.changes_since(self.position, BATCH)
            for change in changes:
                if self._apply(change):
                    relevant.append(change)
            if len(changes) < BATCH:
                break
        self._mark_up()
        self.last_caught_up = self.clock()
        if relevant:
            log.info("store changes: %d touching revocation, %d revoked in the index",
                     len(relevant), len(self.revoked))
            for hook in self.hooks:
                try:
                    hook(relevant)
                except Exception:
                    log.exception("change hook failed")
        return relevant

    def _apply(self, change: Change) -> bool:
        self.revoked.version = max(self.revoked.version, change.seq)
        if change.profile == "device":
            self.issued.add(change.group, change.serial)
        if change.status == REVOKED:
            self.revoked.add(change.group, change.serial, held=change.reason == HOLD)
            return True
        if self.revoked.is_revoked(change.group, change.serial):  # a released hold
            self.revoked.discard(change.group, change.serial)
            return True
        return False  # an issuance

    async def run(self, stop: asyncio.Event | None = None) -> None:
        backoff = 0.2
        while stop is None or not stop.is_set():
            try:
                await self.store.wait_for_change(SAFETY_INTERVAL)
                await self.catch_up()
                backoff = 0.2
            except StoreUnavailable as exc:
                self._mark_down(exc)
                self.store.health.error("feed")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except Exception:
                log.exception("change feed step failed")
                await asyncio.sleep(MAX_BACKOFF)

    def _mark_down(self, exc: StoreUnavailable) -> None:
        if self.down_since is None:
            self.down_since = self.clock()
            log.error("store unavailable (%s): deciding from what this node knows; "
                      "unknown certificates are rejected (store_unavailable)", exc.detail)
            if self.on_health is not None:
                self.on_health(False)
        self.down_reason = exc.detail

    def _mark_up(self) -> None:
        if self.down_since is not None:
            log.warning("store available again after %.1f s: caught up to change %d",
                        self.clock() - self.down_since, self.position)
            self.down_since = None
            self.down_reason = ""
            if self.on_health is not None:
                self.on_health(True)
