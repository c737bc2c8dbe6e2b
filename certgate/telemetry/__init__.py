"""Telemetry wiring of `certgate serve`: series exported at 0 from the start (labels) and
inventory gauges that follow the store's change feed (inventory)."""

from __future__ import annotations

from certgate.change_feed import ChangeFeed
from certgate.runtime import Runtime
from certgate.telemetry.inventory import InventoryGauges
from certgate.telemetry.labels import zero_series

__all__ = ["InventoryGauges", "install", "zero_series"]


def install(runtime: Runtime, feed: ChangeFeed) -> InventoryGauges:
    """Called once by `serve` before its periodic tasks start."""
    s = runtime.settings
    zero_series(runtime.groups.names(), [c.name for c in s.radius.clients],
                issuance_groups=[g.name for g in s.groups if g.issuance_check is not None])
    gauges = InventoryGauges(runtime, lambda: feed.position)
    runtime.services.setdefault("periodic", []).append(
        (gauges.TICK_SECONDS, gauges.tick, "inventory-gauges"))
    return gauges
