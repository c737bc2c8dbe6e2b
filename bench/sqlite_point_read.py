"""CPU of one SQLite point read through aiosqlite: three trips to its thread (execute,
fetchone, cursor close: store/sqlite.py before 2026-12-08) vs one (execute_fetchall), in
the same process, alternating, 7 rounds of 1,000 reads (min and median).

    .venv/bin/python bench/sqlite_point_read.py [DB]   (default: a new temp store with 50 rows)

Process CPU (both the event loop's and aiosqlite's thread). bench/README.md "OCSP".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import open_store  # noqa: E402
from store.records import CertRecord  # noqa: E402
from store.store import CERT_COLUMNS  # noqa: E402


async def main(path: str | None) -> None:
    tmp = None
    if path is None:
        tmp = tempfile.TemporaryDirectory()
        path = f"{tmp.name}/bench.sqlite"
    st = await open_store(Path(path))
    if tmp is not None:
        now = dt.datetime.now(dt.UTC)
        for i in range(50):
            await st.record_certificate(CertRecord(
                serial=0x1000 + i, group="staff", subject=f"CN=dev-{i}", not_before=now,
                not_after=now + dt.timedelta(days=1), pem="-" * 800), "bench")
    db = st.driver._db  # the aiosqlite connection
    rows = await st.find(group="staff")
    serials = [format(r.serial, "x") for r in rows][:50]
    sql = f"SELECT {CERT_COLUMNS} FROM certificates WHERE serial=?"

    async def old(a):
        async with db.execute(sql, a) as cur:
            return await cur.fetchone()

    async def new(a):
        rows = await db.execute_fetchall(sql, a)
        return rows[0] if rows else None
    N = 1000
    res = {"3 trips (before)": [], "1 trip (now)": []}
    for _round in range(7):
        for label, f in (("3 trips (before)", old), ("1 trip (now)", new)):
            t0 = time.process_time()
            for i in range(N):
                assert await f((serials[i % len(serials)],)) is not None
            res[label].append((time.process_time() - t0) / N * 1e6)
    for k, v in res.items():
        v.sort()
        print(f"{k}: min {v[0]:.0f} median {v[len(v) // 2]:.0f} us CPU per point read")
    await st.close()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
    finally:
        sys.stdout.flush()
        os._exit(0)  # aiosqlite's thread must not keep a failed run alive
