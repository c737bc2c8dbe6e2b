"""Revocation at 1 M entries with delta CRLs (issue 14 §3): certgate serve on a SQLite store
holding N revoked + M issued device certificates generated directly into the store.

    .venv/bin/python bench/crl_delta.py [--revoked 1000000] [--issued 2000000]
                                        [--revocations 100] [--rate 5] [--keep]

Measures, in a temp directory (every process started here is stopped by its PID):

  (1) start-up to /readyz and to the first complete CRL served, and RSS, without a persisted
      CRL (rebuilt from the store) and with the base CRL persisted by the previous run
      (<pki dir>/crl/staff.base.crl), alternated twice
  (2) `--revocations` revocations through the admin API at `--rate` per second, each followed
      by downloads of /crl/delta/staff.crl until it lists the serial (a relying party using
      deltas): revocation -> in the fetched delta, p50/p95/max
  (3) the server's CPU per revocation during (2), idle CPU over as long subtracted
  (4) after the last revocation: time until the complete CRL /crl/staff.crl lists it
      (its staleness bound is [revocation] full_crl_interval + signing)

Targets (issue 14 §3): in the fetched CRL within 2 s, CPU per revocation <= 100 ms and not
growing with the table; start-up <= 5 s to /readyz with 1 M revoked + 2 M issued, RSS <= 600 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from revocation_scale import Instance, fill  # noqa: E402  (bench/revocation_scale.py)

TOKEN = "bench-admin-token-0123456789"
BULK_BASE = 1 << 120  # fill()'s serials: BULK_BASE + i * 7919


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(inst: Instance, path: str, timeout: float = 120) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{inst.http_port}{path}", timeout=timeout) as r:
        return r.read()


def revoke(inst: Instance, serial: int) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{inst.http_port}/api/v1/certificates/{serial:x}/revoke",
        data=json.dumps({"reason": "keyCompromise"}).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200, r.status


def lists(der: bytes, serial: int) -> bool:
    from cryptography import x509

    return x509.load_der_x509_crl(der).get_revoked_certificate_by_serial_number(serial) is not None


def start_once(inst: Instance, label: str) -> dict[str, float]:
    before = inst.log.stat().st_size if inst.log.exists() else 0
    t_ready = inst.start(timeout=600)
    t0 = time.monotonic()
    size = len(get(inst, "/crl/staff.crl", timeout=600))
    crl_s = t_ready + time.monotonic() - t0
    rss = inst.rss_mb()
    with inst.log.open("rb") as f:
        f.seek(before)
        log = f.read().decode(errors="replace")
    taken = "persisted CRL taken up group=staff" in log
    print(f"  {label:>10}: /readyz {t_ready:6.2f} s, first complete CRL {crl_s:6.2f} s "
          f"({size / 1e6:.1f} MB), RSS {rss:5.0f} MB, persisted CRL taken up: {taken}",
          flush=True)
    return {"ready": t_ready, "crl": crl_s, "rss": rss}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--revoked", type=int, default=1_000_000)
    p.add_argument("--issued", type=int, default=2_000_000, help="active device certificates")
    p.add_argument("--revocations", type=int, default=100)
    p.add_argument("--rate", type=float, default=5.0, help="revocations per second")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--reuse", type=Path, help="a directory kept by --keep: skip fill and (1)")
    p.add_argument("--skip", type=int, default=0, help="with --reuse: victims already revoked")
    p.add_argument("--startup-runs", type=int, default=None,
                   help="(1) repetitions (default 2; 0 with --reuse)")
    a = p.parse_args()
    total = a.revoked + a.issued
    every = max(1, round(total / a.revoked))
    if a.reuse:
        work = a.reuse
        inst = Instance.__new__(Instance)
        vars(inst).update(json.loads((work / "instance.json").read_text()))
        inst.dir, inst.config, inst.store = Path(inst.dir), Path(inst.config), Path(inst.store)
        inst.pki, inst.log, inst.proc = Path(inst.pki), Path(inst.log), None
    else:
        work = Path(tempfile.mkdtemp(prefix="certgate-crldelta."))
        inst = Instance(work / "big")
        (work / "instance.json").write_text(json.dumps(
            {k: str(v) if isinstance(v, Path) else v for k, v in vars(inst).items()
             if k != "proc"}))
    try:
        crl_dir = inst.dir / "var" / "pki" / "crl"
        if not a.reuse:
            inst.init()
            print(f"fill: {total:,} device certificates, every {every}th revoked ...", flush=True)
            fill_s = fill(inst.store, total, revoked_every=every)
            print(f"fill: {fill_s:.1f} s, store {inst.store.stat().st_size / 1e6:.0f} MB",
                  flush=True)
        print("(1) start-up", flush=True)
        runs: dict[str, list[dict[str, float]]] = {"rebuilt": [], "persisted": []}
        reps = a.startup_runs if a.startup_runs is not None else (0 if a.reuse else 2)
        for _rep in range(reps):
            for label in ("rebuilt", "persisted"):
                if label == "rebuilt":
                    shutil.rmtree(crl_dir, ignore_errors=True)
                runs[label].append(start_once(inst, label))
                deadline = time.monotonic() + 120
                while not (crl_dir / "staff.base.json").exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
                inst.stop()
        for label, rs in runs.items():
            if not rs:
                continue
            print(f"  {label}: /readyz {min(r['ready'] for r in rs):.2f}-"
                  f"{max(r['ready'] for r in rs):.2f} s, first complete CRL "
                  f"{min(r['crl'] for r in rs):.2f}-{max(r['crl'] for r in rs):.2f} s, RSS "
                  f"{max(r['rss'] for r in rs):.0f} MB max")

        inst.start(timeout=600)
        get(inst, "/crl/staff.crl", timeout=600)
        get(inst, "/crl/delta/staff.crl")
        assert inst.proc is not None
        pid = inst.proc.pid
        time.sleep(2.0)
        span = a.revocations / a.rate
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(span)
        idle_cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)

        print(f"(2) {a.revocations} revocations at {a.rate}/s via the admin API, each fetched "
              "in /crl/delta/staff.crl", flush=True)
        victims = [BULK_BASE + i * 7919 for i in range(total)
                   if i % every != 0][a.skip:a.skip + a.revocations]
        latencies: list[float] = []
        c0, t0 = cpu_seconds(pid), time.monotonic()
        for n, serial in enumerate(victims):
            due = t0 + n / a.rate
            time.sleep(max(0.0, due - time.monotonic()))
            start = time.monotonic()
            revoke(inst, serial)
            while not lists(get(inst, "/crl/delta/staff.crl"), serial):
                if time.monotonic() - start > 30:
                    raise SystemExit(f"{serial:x} not in the delta after 30 s")
            latencies.append(time.monotonic() - start)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(pid) - c0
        last = victims[-1]
        t_last = time.monotonic()
        while not lists(get(inst, "/crl/staff.crl"), last):
            time.sleep(0.1)
        full_lag = time.monotonic() - t_last
        latencies.sort()
        p95 = latencies[int(len(latencies) * 0.95) - 1]
        print(f"  revocation -> in the fetched delta: p50 {statistics.median(latencies) * 1e3:.0f}"
              f" ms, p95 {p95 * 1e3:.0f} ms, max {latencies[-1] * 1e3:.0f} ms (target 2 s)")
        per = (cpu - idle_cpu * wall) / len(victims)
        print(f"(3) server CPU {cpu:.2f} s over {wall:.1f} s for {len(victims)} revocations "
              f"(incl. the delta downloads), idle {idle_cpu * 100:.1f} % subtracted: "
              f"{per * 1e3:.1f} ms per revocation (target <= 100 ms)")
        print(f"(4) last revocation in the complete CRL after {full_lag:.2f} s more "
              f"(bound: full_crl_interval 5 s + signing)")
        delta_size = len(get(inst, "/crl/delta/staff.crl"))
        print(f"  delta CRL now {delta_size / 1e3:.1f} kB; RSS {inst.rss_mb():.0f} MB")
        inst.stop()
    finally:
        inst.stop()
        if a.keep or a.reuse:
            print(f"kept {work} (--reuse {work} --skip {a.skip + a.revocations})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
