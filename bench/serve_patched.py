"""`certgate serve` with the suggested CRL fixes monkeypatched in, to measure them.

    .venv/bin/python bench/serve_patched.py --config FILE

Bench-only: product code is untouched; this process patches it in memory before serving.
Used by `revocation_scale.py --patched`. The patches (README "Suggested product fixes"):

1. certgate.features.start: RADIUS starts (and the server becomes ready) before the first
   CRLs; `crls.refresh_due()` runs as a background task. CrlPublisher.get() still builds
   under the group lock on demand, so /crl callers only ever see a complete CRL.
2+3. CrlPublisher._regenerate_locked: the whole rebuild (rows through a private read-only
   sqlite3 connection, conversion, DER via bench/crl_fast.build_crl_der_fast, PEM) runs in
   one executor call, so the event loop only waits; nothing per-entry runs on it.
4. RevocationIndex keeps per-group counts (add/discard/replace), and
   certgate.app.set_revocation_gauges reads them instead of walking every entry on the
   event loop after each cross-process change.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import inspect
import logging
import sqlite3
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

log = logging.getLogger("certgate.revocation")


def _pem(der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN X509 CRL-----\n" + b"\n".join(lines) + b"\n-----END X509 CRL-----\n"


def apply_patches() -> None:
    from crl_fast import build_crl_der_fast

    from certgate import features, revocations
    from certgate.radius_wiring import start_radius

    async def start(runtime) -> None:  # type: ignore[no-untyped-def]
        crls = runtime.services["crls"]
        await start_radius(runtime)
        task = asyncio.get_running_loop().create_task(crls.refresh_due())
        runtime.services["initial-crl-task"] = task  # keep a reference

    # Fixes 1 and 4 landed in the product on 2026-11-22 (e357406, 50f522a): patch only
    # an older tree that lacks them.
    if "create_task" not in inspect.getsource(features.start):
        features.start = start
        log.warning("serve_patched: fix 1 (RADIUS before the first CRL) patched in")

    async def regenerate_locked(self, group: str):  # type: ignore[no-untyped-def]
        self._dirty.discard(group)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        next_update = now + self.validity
        number = await self.runtime.store.next_crl_number(group, now, next_update)
        ca = self.runtime.pki.groups[group]
        path = self.runtime.store.path

        def work() -> tuple[bytes, bytes, int]:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                rows = conn.execute(
                    "SELECT serial, revoked_at, reason FROM certificates "
                    "WHERE group_name=? AND status='revoked'", (group,)).fetchall()
            finally:
                conn.close()
            times: dict[int, dt.datetime] = {}
            entries = []
            for serial, at, reason in rows:
                t = times.get(at)
                if t is None:
                    t = times[at] = dt.datetime.fromtimestamp(at, dt.UTC)
                entries.append((int(serial, 16), t, reason))
            der = build_crl_der_fast(ca.certificate, ca.key, entries, number, now, next_update)
            return der, _pem(der), len(entries)

        der, pem, count = await asyncio.get_running_loop().run_in_executor(None, work)
        published = revocations.PublishedCrl(der, pem, number, now, next_update)
        self.current[group] = published
        revocations.CRL_NEXT_UPDATE.labels(group=group).set(next_update.timestamp())
        revocations.CRL_NUMBER.labels(group=group).set(number)
        log.info("CRL for %s: number %d, %d entries, next update %s (patched)", group, number,
                 count, next_update.isoformat())
        return published

    revocations.CrlPublisher._regenerate_locked = regenerate_locked

    from collections import Counter

    from certgate import app, metrics
    from revocation.snapshot import RevocationIndex

    if "_counts" in vars(RevocationIndex()):
        return  # fix 4 is in the product already
    log.warning("serve_patched: fix 4 (per-group revocation counts) patched in")

    orig_replace, orig_add, orig_discard = (RevocationIndex.replace, RevocationIndex.add,
                                            RevocationIndex.discard)

    def replace(self, entries, version):  # type: ignore[no-untyped-def]
        orig_replace(self, entries, version)
        self._counts = Counter(g for g, _ in self._revoked)

    def add(self, group, serial):  # type: ignore[no-untyped-def]
        if (group, serial) not in self._revoked:
            self.__dict__.setdefault("_counts", Counter())[group] += 1
        orig_add(self, group, serial)

    def discard(self, group, serial):  # type: ignore[no-untyped-def]
        if (group, serial) in self._revoked:
            self.__dict__.setdefault("_counts", Counter())[group] -= 1
        orig_discard(self, group, serial)

    RevocationIndex.replace, RevocationIndex.add, RevocationIndex.discard = replace, add, discard

    def set_revocation_gauges(runtime) -> None:  # type: ignore[no-untyped-def]
        counts = getattr(runtime.revoked, "_counts", Counter())
        for g in runtime.groups.names():
            metrics.REVOCATION_ENTRIES.labels(group=g).set(counts.get(g, 0))
        metrics.REVOCATION_LAST_UPDATE.set(dt.datetime.now(dt.UTC).timestamp())

    app.set_revocation_gauges = set_revocation_gauges


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    a = p.parse_args()
    apply_patches()
    from certgate.app import serve
    from certgate.settings import load_settings

    return asyncio.run(serve(load_settings(a.config)))


if __name__ == "__main__":
    raise SystemExit(main())
