"""Inventory gauges that follow every change, not only a timer.

`certgate_certificates{group,status}` and `certgate_certificates_expiring{group,within}`
are counts over the store. They are recomputed whenever the change feed's position moves
(every issuance, revocation, hold release, from this process, the CLI or another node) and
`certgate_scep_pending_requests{group}` on a timer (pending requests are not in the feed).
Refreshes are coalesced: at most one per `MIN_INTERVAL` however fast certificates are
issued, so a bulk enrollment costs a handful of count queries, not one per certificate.
And the counts scan the table: at 3 M certificates one refresh holds SQLite's one connection
for ~3 s, which at one per second left revocations, SCEP and CRL updates queued behind it
(bench/crl_delta.py, issue 14 §3). So the gap after a refresh is also at least
`BUSY_FACTOR` times what it took: the counts get at most ~5 % of the store's time.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from certgate import metrics
from certgate.runtime import Runtime
from store import ScepStore, StoreUnavailable
from store.records import STATUSES

log = logging.getLogger("certgate.metrics")


class InventoryGauges:
    TICK_SECONDS = 0.5   # how often the feed position is looked at (a memory read)
    MIN_INTERVAL = 1.0   # at most one inventory refresh per second
    BUSY_FACTOR = 20.0   # ... and a gap of at least 20x the last refresh's duration
    PENDING_INTERVAL = 15.0

    def __init__(self, runtime: Runtime, position: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.position = position
        self.clock = clock
        self.seen: int | None = None  # feed position of the last refresh
        self.last_refresh = -self.MIN_INTERVAL
        self.gap = self.MIN_INTERVAL
        self.last_pending = -self.PENDING_INTERVAL
        self.refreshes = 0

    async def tick(self) -> None:
        now = self.clock()
        position = self.position()
        if position != self.seen and now - self.last_refresh >= self.gap:
            self.last_refresh = now
            started = time.monotonic()
            if await self.refresh_inventory():
                self.seen = position
            self.gap = max(self.MIN_INTERVAL, self.BUSY_FACTOR * (time.monotonic() - started))
        if now - self.last_pending >= self.PENDING_INTERVAL:
            self.last_pending = now
            await self.refresh_pending()

    async def refresh_inventory(self) -> bool:
        store = self.runtime.store
        now = dt.datetime.now(dt.UTC)
        try:
            counts = await store.status_counts()
            expiring = {w: await store.expiring_counts(now, d)
                        for w, d in metrics.EXPIRY_WINDOWS.items()}
        except StoreUnavailable as exc:
            log.warning("store query for inventory metrics failed: %s", exc.detail)
            return False
        for g in self.runtime.groups.names():
            for status in STATUSES:
                metrics.CERTIFICATES.labels(group=g, status=status).set(counts.get((g, status), 0))
            for w in metrics.EXPIRY_WINDOWS:
                metrics.EXPIRING.labels(group=g, within=w).set(expiring[w].get(g, 0))
        self.refreshes += 1
        return True

    async def refresh_pending(self) -> None:
        try:
            pending = await ScepStore(self.runtime.store).pending_counts()
        except StoreUnavailable as exc:
            log.warning("store query for pending requests failed: %s", exc.detail)
            return
        for g in self.runtime.groups.names():
            metrics.SCEP_PENDING.labels(group=g).set(pending.get(g, 0))
