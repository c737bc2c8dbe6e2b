"""ScepStore.pending_counts: pending SCEP requests per group (the metrics gauge)."""

from __future__ import annotations

from store import ScepStore
from tests.store_support import NOW


async def test_pending_counts_per_group(site) -> None:
    scep = ScepStore(await site.open())
    assert await scep.pending_counts() == {}
    ids = []
    for group, txid in (("staff", "t1"), ("staff", "t2"), ("guests", "t3")):
        req = await scep.add_request(group, txid, f"CN={txid}", "00" * 32, b"csr", NOW)
        ids.append(req.id)
    assert await scep.pending_counts() == {"staff": 2, "guests": 1}
    assert await scep.decide(ids[0], True, "admin", NOW) is not None
    assert await scep.decide(ids[2], False, "admin", NOW) is not None
    assert await scep.pending_counts() == {"staff": 1}
