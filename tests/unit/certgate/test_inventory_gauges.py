"""certgate.telemetry.inventory: the inventory gauges follow the change feed's position,
at most one refresh per second, over a real SQLite store."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import REGISTRY

from certgate.telemetry.inventory import InventoryGauges
from store import open_store
from tests.store_support import make_ca, make_record

GROUP = "zi-inventory"  # a name no other test uses: the registry is process-wide


def active() -> float | None:
    return REGISTRY.get_sample_value("certgate_certificates",
                                     {"group": GROUP, "status": "active"})


async def test_refresh_when_the_feed_moves_coalesced(tmp_path) -> None:
    store = await open_store(path=tmp_path / "s.sqlite", timeout=5.0)
    try:
        ca = make_ca()
        now = [100.0]
        position = [0]
        runtime = SimpleNamespace(store=store, groups=SimpleNamespace(names=lambda: [GROUP]))
        gauges = InventoryGauges(runtime, lambda: position[0], clock=lambda: now[0])
        # only MIN_INTERVAL here: the gap after a slow refresh (BUSY_FACTOR x its real
        # duration) would make this test depend on how loaded the machine is
        gauges.BUSY_FACTOR = 0.0

        await gauges.tick()  # first tick: refresh at once
        assert active() == 0 and gauges.refreshes == 1
        await gauges.tick()  # nothing moved: no query
        assert gauges.refreshes == 1

        await store.record_certificate(make_record(ca, group=GROUP, cn="a"), "test")
        position[0] = 1
        now[0] += 0.5
        await gauges.tick()  # moved, but the last refresh was 0.5 s ago: coalesced
        assert active() == 0 and gauges.refreshes == 1
        await store.record_certificate(make_record(ca, group=GROUP, cn="b"), "test")
        position[0] = 2
        now[0] += 0.5
        await gauges.tick()  # one refresh covers both issuances
        assert active() == 2 and gauges.refreshes == 2
        now[0] += 5
        await gauges.tick()
        assert gauges.refreshes == 2
    finally:
        await store.close()
