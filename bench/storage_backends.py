"""Storage backends side by side: SQLite vs PostgreSQL, in one run (issue #9 §6).

    .venv/bin/python bench/storage_backends.py [--only cpu,revocation,scep,startup]
        [--secs 8] [--reps 2] [--tls "1.2 1.3"] [--revocations 100] [--eapol-every 10]
        [--cli-revocations 30] [--scep-n 300] [--scep-conc 4] [--scep-reps 2]
        [--rows 1000000] [--revoked-every 10] [--fast-pg] [--keep] [--out DIR]

Starts one throwaway PostgreSQL 15 cluster (tests/pg_cluster.py, as the `postgres` user when
run as root; durable settings unless --fast-pg: fsync, synchronous_commit and
full_page_writes on) and a fresh database per measurement; SQLite is certgate's default
store in the temp dir (WAL, synchronous=FULL). Everything on 127.0.0.1 under /tmp; every
`certgate serve` started here is stopped by its PID, the cluster is destroyed at the end.

  cpu         bench/radius_load.sh --no-freeradius, alternately SQLite and PostgreSQL
              (ABBA over --reps): fresh c=2 and reauth c=32 eapol_test load per TLS
              version, server CPU-ms per auth (utime+stime of `certgate serve`). The
              PostgreSQL processes' CPU during each point is sampled separately (postmaster
              and its children), so "the hot path does not touch the database" shows as ~0.
              Goal: PostgreSQL within 5 % of SQLite.
  revocation  revocation -> reject latency. PostgreSQL: two `certgate serve` nodes on one
              database (node_name, [storage] url, the PKI dir copied to node B and named by
              [pki] dir); revoke on node A through the admin API (and a few through the
              `certgate revoke` CLI with A's config), time until node B has it. SQLite: one
              node, `certgate revoke` CLI (another process) -> the server. "Has it" is B's
              `certgate_revocation_entries{group="staff"}` gauge (set when the change feed
              applied the revocation to the in-memory index RADIUS consults), polled every
              ~2 ms; every --eapol-every-th revocation is instead timed with real eapol_test
              runs against B until one is rejected (includes >= one eapol_test run).
              Goal: p95 <= 1 s.
  scep        SCEP PKIOperation enrollments/s (prepared PKCSReqs, dynamic challenges, default
              group layout: ECDSA P-256 CA + RSA-2048 RA) with bench/scep_load.py's client:
              SQLite one node, PostgreSQL one node, PostgreSQL two nodes with the clients
              split across both (--scep-conc in total). Every reply verified.
  startup     `certgate serve` spawn -> /readyz 200 and RSS with --rows certificates, every
              --revoked-every-th revoked, on each backend (SQLite filled with sqlite3
              executemany as bench/revocation_scale.py does; PostgreSQL with asyncpg
              copy_records_to_table, then VACUUM ANALYZE as autovacuum would), started
              twice; plus each backend with an empty store.

Prints one line per measurement and a summary; results.json and the logs go to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import load_table  # noqa: E402
import revocation_scale  # noqa: E402
import scep_load  # noqa: E402

from tests.pg_cluster import PgCluster, pg_bindir  # noqa: E402
from tests.support import TOKEN, ServerProcess, free_port, run_eapol_test, write_config  # noqa: E402

ENTRIES = 'certgate_revocation_entries{group="staff"}'
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
CERTGATE = [sys.executable, "-m", "certgate"]
SCEP_GROUP = "\n[groups.ecra]\nvlan = 51\nvalidity_days = 30\n"


def pct(values: list[float], p: float) -> float:
    return scep_load.pct(values, p)


def ms(x: float) -> str:
    return f"{x * 1000:.0f}"


# -- PostgreSQL: the cluster and its CPU ---------------------------------------------------


class PgCpu:
    """Samples utime+stime of the postmaster and all its children every `interval` s."""

    def __init__(self, pg: PgCluster, interval: float = 0.2) -> None:
        self.pid = int((pg.data / "postmaster.pid").read_text().split()[0])
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> float:
        try:
            return scep_load.cpu_ms(self.pid)
        except OSError:
            return float("nan")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.now()))
            self._stop.wait(self.interval)

    def at(self, t: float) -> float:
        """CPU ms at wall time t (linear between samples)."""
        s = self.samples
        for (t0, c0), (t1, c1) in zip(s, s[1:], strict=False):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c0
        return s[-1][1] if s and t > s[-1][0] else float("nan")

    def between(self, t0: float, t1: float) -> float:
        return self.at(t1) - self.at(t0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# -- certgate nodes --------------------------------------------------------------------------


def node_config(directory: Path, name: str, url: str | None, pki: Path | None,
                extra: str = "") -> Path:
    config = write_config(directory, extra=extra)
    text = config.read_text().replace('data_dir = "var"',
                                      f'data_dir = "var"\nnode_name = "{name}"', 1)
    if url is not None:
        text += f'\n[storage]\nurl = "{url}"\n'
    if pki is not None:
        text += f'\n[pki]\ndir = "{pki}"\n'
    config.write_text(text)
    return config


class Site:
    """1 or 2 `certgate serve` nodes on one store (SQLite: 1 node only)."""

    def __init__(self, base: Path, url: str | None, nodes: int, extra: str = "") -> None:
        self.base = base
        self.url = url
        self.servers: list[ServerProcess] = []
        self.configs: list[Path] = []
        self.pki = base / "a" / "var" / "pki"
        self.root = self.pki / "root.crt"
        config_a = node_config(base / "a", "node-a", url, None, extra)
        r = subprocess.run([*CERTGATE, "--config", str(config_a), "init"], capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise SystemExit(f"certgate init failed: {r.stdout}{r.stderr}")
        self.configs.append(config_a)
        if nodes == 2:
            pki_b = base / "b" / "var" / "pki"
            shutil.copytree(self.pki, pki_b)
            self.configs.append(node_config(base / "b", "node-b", url, pki_b, extra))

    def start(self) -> Site:
        for i, config in enumerate(self.configs):
            self.servers.append(ServerProcess(config, self.base / f"serve-{'ab'[i]}.log").start(60))
        return self

    def stop(self) -> None:
        for s in self.servers:
            with contextlib.suppress(Exception):
                s.stop()


def issue_many(config: Path, n: int, prefix: str, out: Path) -> list[tuple[str, str]]:
    """n staff certificates issued in this process (issue_to_files, what `certs issue` runs),
    key + chain written to `out`; returns (cn, serial hex)."""
    from certgate.bootstrap import issue_to_files
    from certgate.settings import load_settings

    settings = load_settings(config)

    async def go() -> list[tuple[str, str]]:
        res = []
        for i in range(n):
            cn = f"{prefix}-{i}"
            serial = await issue_to_files(settings, "staff", cn, out, None, False,
                                          [f"email:{cn}@example.test"], None, "ec-p256")
            res.append((cn, format(serial, "x")))
        return res

    return asyncio.run(go())


class Http:
    """A keep-alive connection to a node's HTTP port."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def metric(self, name: str) -> float:
        status, body = self.request("GET", "/metrics")
        assert status == 200, status
        for row in body.decode().splitlines():
            if row.startswith(name + " "):
                return float(row.rsplit(" ", 1)[1])
        return 0.0


# -- cpu ------------------------------------------------------------------------------------


def part_cpu(a: argparse.Namespace, pg: PgCluster, pgcpu: PgCpu, work: Path,
             emit) -> dict:  # type: ignore[no-untyped-def]
    rows: list[dict] = []
    order = []
    for rep in range(a.reps):
        order += [("sqlite", rep), ("postgresql", rep)] if rep % 2 == 0 else \
                 [("postgresql", rep), ("sqlite", rep)]
    for backend, rep in order:
        out = work / f"radius-{backend}-{rep}"
        cmd = ["bash", str(HERE / "radius_load.sh"), "-s", str(a.secs), "-c", "2",
               "--reauth-conc", "32", "--tls", a.tls, "--no-freeradius", "--out", str(out)]
        if backend == "postgresql":
            cmd += ["--storage-url", pg.create_database("radius")]
        emit(f"cpu: rep {rep} {backend}: {' '.join(cmd[1:])}")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            emit(f"  radius_load.sh exit {r.returncode}: {r.stderr[-1500:]}")
        for f in load_table.parse(str(out / "load.txt")):
            ok = int(f["ok"])
            pg_ms = pgcpu.between(float(f["t_start"]), float(f["t_end"]))
            row = {"backend": backend, "rep": rep, "tls": f["tls"], "mode": f["mode"],
                   "conc": f["conc"], "ok": ok, "fail": int(f["fail"]),
                   "auths_per_s": float(f["auths_per_s"]),
                   "cpu_ms": float(f["server_cpu_ms_per_auth"]),
                   "pg_cpu_ms": pg_ms / ok if backend == "postgresql" and ok else 0.0,
                   "pg_cpu_total_ms": pg_ms if backend == "postgresql" else 0.0,
                   "p50": f["lat_p50_ms"], "p95": f["lat_p95_ms"],
                   "busy": f["host_busy_pct"], "load1": f.get("loadavg1", "-")}
            rows.append(row)
            emit(f"  tls={row['tls']} {row['mode']} c={row['conc']} store={backend:<10} "
                 f"ok={ok} fail={row['fail']} {row['auths_per_s']:.0f} auths/s "
                 f"p50/p95 {row['p50']}/{row['p95']} ms  server CPU {row['cpu_ms']:.2f} ms/auth"
                 + (f"  PostgreSQL CPU {row['pg_cpu_ms']:.3f} ms/auth "
                    f"({row['pg_cpu_total_ms']:.0f} ms in the point)"
                    if backend == "postgresql" else "")
                 + f"  busy {row['busy']}% load1 {row['load1']}")
    summary = []
    points = sorted({(r["tls"], r["mode"], r["conc"]) for r in rows})
    for tls, mode, conc in points:
        per = {b: [r for r in rows if (r["tls"], r["mode"], r["conc"], r["backend"])
                   == (tls, mode, conc, b)] for b in ("sqlite", "postgresql")}
        if not per["sqlite"] or not per["postgresql"]:
            continue
        sq = statistics.mean(r["cpu_ms"] for r in per["sqlite"])
        pq = statistics.mean(r["cpu_ms"] for r in per["postgresql"])
        pgc = statistics.mean(r["pg_cpu_ms"] for r in per["postgresql"])
        summary.append({"tls": tls, "mode": mode, "conc": conc, "sqlite": sq, "postgresql": pq,
                        "pg_server": pgc, "ratio": pq / sq,
                        "runs": [f"{r['cpu_ms']:.2f}" for r in per["sqlite"]] + ["|"]
                        + [f"{r['cpu_ms']:.2f}" for r in per["postgresql"]]})
    emit("cpu summary (mean over reps; server CPU-ms per auth):")
    emit("| TLS | mode | c | SQLite | PostgreSQL | PG/SQLite | PostgreSQL server processes |")
    emit("|---|---|---|---|---|---|---|")
    for s in summary:
        emit(f"| {s['tls']} | {s['mode']} | {s['conc']} | {s['sqlite']:.2f} | "
             f"{s['postgresql']:.2f} | {s['ratio']:.2f} | {s['pg_server']:.3f} |")
    if summary:
        sq = statistics.mean(s["sqlite"] for s in summary)
        pq = statistics.mean(s["postgresql"] for s in summary)
        emit(f"| all | | | {sq:.2f} | {pq:.2f} | **{pq / sq:.2f}** | |")
        emit(f"goal PostgreSQL within 5 % of SQLite: {'MET' if pq / sq <= 1.05 else 'MISSED'} "
             f"({(pq / sq - 1) * 100:+.1f} %)")
    return {"rows": rows, "summary": summary}


# -- revocation -----------------------------------------------------------------------------


def accepted(server: ServerProcess, root: Path, certs: Path, cn: str, workdir: Path) -> bool:
    code, out = run_eapol_test(server.radius, root, certs / f"{cn}.chain.pem", certs / f"{cn}.key",
                               workdir, identity=f"{cn}@example.test", timeout=5)
    if code == 0:
        return True
    if "Access-Reject" not in out:
        raise AssertionError("eapol_test: neither accept nor reject\n" + out[-2000:])
    return False


def time_revocations(label: str, revoke, observer: ServerProcess, root: Path, certs: Path,  # type: ignore[no-untyped-def]
                     issued: list[tuple[str, str]], eapol_every: int, work: Path, emit) -> dict:
    """`revoke(serial)` returns the monotonic time of its acknowledgement (commit)."""
    poll = Http(observer.http)
    samples: list[dict] = []
    for i, (cn, serial) in enumerate(issued):
        sample = eapol_every > 0 and i % eapol_every == 0
        if sample and not accepted(observer, root, certs, cn, work / "eapol"):
            raise AssertionError(f"{cn} rejected before its revocation")
        before = poll.metric(ENTRIES)
        t0 = time.monotonic()
        t_ack = revoke(serial)
        attempts = 0
        while True:
            if sample:
                attempts += 1
                if not accepted(observer, root, certs, cn, work / "eapol"):
                    break
            elif poll.metric(ENTRIES) > before:
                break
            else:
                time.sleep(0.002)
            if time.monotonic() - t0 > 15:
                raise AssertionError(f"{label}: {cn} not rejected after 15 s")
        t_seen = time.monotonic()
        samples.append({"via": "eapol" if sample else "metric", "total": t_seen - t0,
                        "ack": t_ack - t0, "after_ack": t_seen - t_ack, "attempts": attempts})
    out = {"label": label, "n": len(samples), "samples": samples}
    for via in ("metric", "eapol"):
        got = [s for s in samples if s["via"] == via]
        if not got:
            continue
        tot = [s["total"] for s in got]
        aft = [s["after_ack"] for s in got]
        ack = [s["ack"] for s in got]
        out[via] = {"n": len(got), "p50": pct(tot, 50), "p95": pct(tot, 95), "max": max(tot),
                    "ack_p50": pct(ack, 50), "after_ack_p50": pct(aft, 50),
                    "after_ack_p95": pct(aft, 95),
                    "attempts_max": max(s["attempts"] for s in got)}
        o = out[via]
        emit(f"  {label} [{via}, n={o['n']}]: revoke->rejected p50 {ms(o['p50'])} ms, p95 "
             f"{ms(o['p95'])} ms, max {ms(o['max'])} ms; of which acknowledgement p50 "
             f"{ms(o['ack_p50'])} ms; after the acknowledgement p50 {ms(o['after_ack_p50'])} / "
             f"p95 {ms(o['after_ack_p95'])} ms"
             + (f"; eapol_test runs per sample <= {o['attempts_max']}" if via == "eapol" else ""))
    allp95 = pct([s["total"] for s in samples], 95)
    out["p95_all"] = allp95
    emit(f"  {label}: p95 over all {len(samples)}: {ms(allp95)} ms; goal p95 <= 1 s: "
         f"{'MET' if allp95 <= 1.0 else 'MISSED'}")
    return out


def api_revoker(server: ServerProcess):  # type: ignore[no-untyped-def]
    conn = Http(server.http)

    def revoke(serial: str) -> float:
        status, body = conn.request("POST", f"/api/v1/certificates/{serial}/revoke",
                                    json.dumps({"reason": "keyCompromise"}).encode(), AUTH)
        if status != 200:
            raise AssertionError(f"revoke {serial}: {status} {body[:200]!r}")
        return time.monotonic()

    return revoke


def cli_revoker(config: Path):  # type: ignore[no-untyped-def]
    def revoke(serial: str) -> float:
        subprocess.run([*CERTGATE, "--config", str(config), "revoke", "--serial", serial,
                        "--reason", "keyCompromise", "--yes"], check=True, capture_output=True,
                       timeout=60)
        return time.monotonic()

    return revoke


def part_revocation(a: argparse.Namespace, pg: PgCluster, work: Path, emit) -> dict:  # type: ignore[no-untyped-def]
    res: dict = {}
    # PostgreSQL, two nodes
    site = Site(work / "rev-pg", pg.create_database("rev"), 2)
    try:
        site.start()
        certs = site.base / "certs"
        t0 = time.monotonic()
        issued = issue_many(site.configs[0], a.revocations + a.cli_revocations, "rev", certs)
        emit(f"revocation: PostgreSQL two nodes; issued {len(issued)} certificates in "
             f"{time.monotonic() - t0:.1f} s (in process, straight to PostgreSQL)")
        time.sleep(1.0)
        a_node, b_node = site.servers
        res["pg_api"] = time_revocations(
            "PostgreSQL admin API on A -> B", api_revoker(a_node), b_node, site.root, certs,
            issued[:a.revocations], a.eapol_every, site.base, emit)
        if a.cli_revocations:
            res["pg_cli"] = time_revocations(
                "PostgreSQL `certgate revoke` CLI (A's config) -> B", cli_revoker(site.configs[0]),
                b_node, site.root, certs, issued[a.revocations:], a.eapol_every, site.base, emit)
        for node in site.servers:
            if "Traceback" in node.log():
                emit(f"  WARNING: traceback in {node.log_path}")
    finally:
        site.stop()
    # SQLite, one node
    site = Site(work / "rev-sqlite", None, 1)
    try:
        site.start()
        certs = site.base / "certs"
        n_api = min(a.cli_revocations, a.revocations)
        issued = issue_many(site.configs[0], a.revocations + n_api, "rev", certs)
        emit(f"revocation: SQLite one node; issued {len(issued)} certificates")
        time.sleep(1.0)
        (node,) = site.servers
        res["sqlite_cli"] = time_revocations(
            "SQLite `certgate revoke` CLI -> the server", cli_revoker(site.configs[0]), node,
            site.root, certs, issued[:a.revocations], a.eapol_every, site.base, emit)
        if n_api:
            res["sqlite_api"] = time_revocations(
                "SQLite admin API -> the same server", api_revoker(node), node, site.root, certs,
                issued[a.revocations:], a.eapol_every, site.base, emit)
    finally:
        site.stop()
    if not a.keep_samples:
        for r in res.values():
            r.pop("samples", None)
    return res


# -- scep -----------------------------------------------------------------------------------


def part_scep(a: argparse.Namespace, pg: PgCluster, pgcpu: PgCpu, work: Path, emit) -> dict:  # type: ignore[no-untyped-def]
    warm = 20
    keys = scep_load.client_keys(a.scep_n + 2 * warm, emit)
    results: list[dict] = []
    configs = [("sqlite", 1), ("postgresql", 1), ("postgresql", 2)]
    for rep in range(a.scep_reps):
        for backend, nodes in (configs if rep % 2 == 0 else configs[::-1]):
            label = f"{backend} x{nodes}"
            url = pg.create_database("scep") if backend == "postgresql" else None
            site = Site(work / f"scep-{backend}-{nodes}-{rep}", url, nodes, SCEP_GROUP)
            try:
                site.start()
                servers = [scep_load.Server("certgate", s.proc, s.server_host, s.server_port,
                                            {"ecra": "/scep/ecra/pkiclient.exe"})
                           for s in _with_host_port(site.servers)]
                # warm-up: each node's SCEP workers, its connection pool
                for i, srv in enumerate(servers):
                    items = scep_load.prepare(srv, "ecra", keys[a.scep_n + i * warm:
                                                                 a.scep_n + (i + 1) * warm], TOKEN)
                    scep_load.fire(srv, "ecra", items, 2, 30, False)
                items = scep_load.prepare(servers[0], "ecra", keys[:a.scep_n], TOKEN)
                share = [items[i::nodes] for i in range(nodes)]
                conc = max(1, a.scep_conc // nodes)
                out: list[scep_load.LoadResult] = [None] * nodes  # type: ignore[list-item]

                def run(i: int, srv: scep_load.Server, part: list, conc: int = conc,
                        out: list = out) -> None:
                    out[i] = scep_load.fire(srv, "ecra", part, conc, a.scep_secs, False)

                t0w = time.time()
                threads = [threading.Thread(target=run, args=(i, srv, share[i]))
                           for i, srv in enumerate(servers)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                t1w = time.time()
                done = sum(r.done for r in out)
                ok = sum(r.ok for r in out)
                secs = max(r.seconds for r in out)
                lat = [x for r in out for x in r.latencies]
                cpu = sum(r.cpu_ms for r in out)
                pg_ms = pgcpu.between(t0w, t1w) if backend == "postgresql" else 0.0
                row = {"backend": backend, "nodes": nodes, "rep": rep, "done": done, "ok": ok,
                       "secs": secs, "rate": done / secs if secs else 0.0,
                       "p50": pct(lat, 50), "p95": pct(lat, 95),
                       "cpu_ms": cpu / done if done else float("nan"),
                       "pg_cpu_ms": pg_ms / done if done else 0.0,
                       "per_node": [f"{r.done / r.seconds:.0f}" for r in out if r.seconds],
                       "failures": {k: v for r in out for k, v in r.failures.items()},
                       "load1": os.getloadavg()[0]}
                results.append(row)
                emit(f"scep: {label:<14} rep {rep} c={conc * nodes} n={done} ok={ok} "
                     f"{row['rate']:6.1f} enroll/s (per node {'/'.join(row['per_node'])}) "
                     f"p50 {row['p50'] * 1000:.1f} ms p95 {row['p95'] * 1000:.1f} ms  certgate CPU "
                     f"{row['cpu_ms']:.2f} ms/enroll (all nodes, incl. SCEP workers)"
                     + (f"  PostgreSQL CPU {row['pg_cpu_ms']:.2f} ms/enroll"
                        if backend == "postgresql" else "")
                     + f"  load1 {row['load1']:.1f}"
                     + (f"  failures {row['failures']}" if row["failures"] else ""))
                for srv in site.servers:
                    if "Traceback" in srv.log():
                        emit(f"  WARNING: traceback in {srv.log_path}")
            finally:
                site.stop()
    emit("scep summary (mean over reps):")
    emit("| store | nodes | enroll/s | p50 ms | p95 ms | certgate CPU ms/enroll | "
         "PostgreSQL CPU ms/enroll | failures |")
    emit("|---|---|---|---|---|---|---|---|")
    summary = []
    for backend, nodes in configs:
        got = [r for r in results if (r["backend"], r["nodes"]) == (backend, nodes)]
        if not got:
            continue
        s = {"backend": backend, "nodes": nodes,
             "rate": statistics.mean(r["rate"] for r in got),
             "rates": [round(r["rate"]) for r in got],
             "p50": statistics.mean(r["p50"] for r in got),
             "p95": statistics.mean(r["p95"] for r in got),
             "cpu_ms": statistics.mean(r["cpu_ms"] for r in got),
             "pg_cpu_ms": statistics.mean(r["pg_cpu_ms"] for r in got),
             "failures": sum(r["done"] - r["ok"] for r in got)}
        summary.append(s)
        emit(f"| {backend} | {nodes} | {s['rate']:.0f} ({'/'.join(map(str, s['rates']))}) | "
             f"{s['p50'] * 1000:.1f} | {s['p95'] * 1000:.1f} | {s['cpu_ms']:.2f} | "
             f"{s['pg_cpu_ms']:.2f} | {s['failures']} |")
    return {"rows": results, "summary": summary}


def _with_host_port(servers: list[ServerProcess]) -> list[ServerProcess]:
    for s in servers:
        host, port = s.http.removeprefix("http://").rsplit(":", 1)
        s.server_host, s.server_port = host, int(port)  # type: ignore[attr-defined]
    return servers


# -- startup --------------------------------------------------------------------------------

COLUMNS = ("serial", "group_name", "profile", "subject", "sans", "device_id", "not_before",
           "not_after", "status", "revoked_at", "reason", "superseded_by", "issued_at", "source",
           "spki_sha256", "transaction_id", "change_seq", "pem")


def fill_pg(url: str, rows: int, revoked_every: int, group: str = "staff") -> dict:
    """The rows revocation_scale.fill writes to SQLite, with COPY (one transaction)."""
    import asyncpg

    async def go() -> dict:
        conn = await asyncpg.connect(url)
        try:
            now = int(time.time())
            reasons = ("keyCompromise", "superseded", "cessationOfOperation", None)
            base = 1 << 120
            seq0 = int(await conn.fetchval("SELECT value FROM meta WHERE key='change_seq'"))

            def gen():  # type: ignore[no-untyped-def]
                for i in range(rows):
                    revoked = i % revoked_every == 0
                    yield (format(base + i * 7919, "x"), group, "device", f"CN=bulk-{i}", "[]",
                           None, now - 86400 * 30, now + 86400 * 335,
                           "revoked" if revoked else "active",
                           now - (i % 86400) if revoked else None,
                           reasons[i % 4] if revoked else None, None, now - 86400 * 30, "bench",
                           None, None, seq0 + i + 1, "-")

            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table("certificates", records=gen(), columns=COLUMNS)
                await conn.execute("UPDATE meta SET value=greatest(value, $1) "
                                   "WHERE key='change_seq'", seq0 + rows)
            fill_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            await conn.execute("VACUUM ANALYZE certificates")
            vacuum_s = time.perf_counter() - t0
            size = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
            return {"fill_s": fill_s, "vacuum_s": vacuum_s, "size_mb": size / 1e6}
        finally:
            await conn.close()

    return asyncio.run(go())


def start_measure(inst: revocation_scale.Instance, label: str, emit) -> dict:  # type: ignore[no-untyped-def]
    secs = inst.start(timeout=300)
    rss = inst.rss_mb()
    t_crl0 = time.monotonic()
    size = revocation_scale.crl_size(inst)
    crl_at = time.time() - inst.t_start
    phases = revocation_scale.log_phases(inst.log.read_text(), inst.t_start)
    rss_crl = inst.rss_mb()
    inst.stop()
    n = 1
    while inst.log.with_suffix(f".{n}.log").exists():
        n += 1
    inst.log.rename(inst.log.with_suffix(f".{n}.log"))  # the next start's phases from its own log
    emit(f"  {label:<34}: /readyz after {secs:6.2f} s, RSS {rss:5.0f} MB (after the first staff "
         f"CRL: {rss_crl:4.0f} MB); first staff CRL served after {crl_at:6.2f} s "
         f"({size / 1e6:.1f} MB, waited {time.monotonic() - t_crl0:.1f} s); log (s since spawn): "
         + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
    return {"readyz_s": secs, "rss_mb": rss, "rss_after_crl_mb": rss_crl, "crl_s": crl_at,
            "crl_mb": size / 1e6, "phases": phases}


def part_startup(a: argparse.Namespace, pg: PgCluster, work: Path, emit) -> dict:  # type: ignore[no-untyped-def]
    res: dict = {}
    revoked = len(range(0, a.rows, a.revoked_every))
    for backend in ("sqlite", "postgresql"):
        extra = ""
        if backend == "postgresql":
            url = pg.create_database("startup")
            extra = f'\n[storage]\nurl = "{url}"\n'
        inst = revocation_scale.Instance(work / f"startup-{backend}", extra)
        inst.init()
        r: dict = {"empty": start_measure(inst, f"{backend} empty store", emit)}
        emit(f"startup: filling {backend} with {a.rows:,} certificates ({revoked:,} revoked) ...")
        if backend == "sqlite":
            fill_s = revocation_scale.fill(inst.store, a.rows, revoked_every=a.revoked_every)
            r["fill"] = {"fill_s": fill_s, "size_mb": inst.store.stat().st_size / 1e6}
        else:
            r["fill"] = fill_pg(url, a.rows, a.revoked_every)
        emit(f"  fill: {r['fill']}")
        for n in (1, 2):
            r[f"full_{n}"] = start_measure(inst, f"{backend} {a.rows:,} ({revoked:,} revoked) #{n}",
                                           emit)
        res[backend] = r
    emit("startup summary:")
    emit("| store | certificates | /readyz s (1st / 2nd start) | RSS MB | first staff CRL s |")
    emit("|---|---|---|---|---|")
    for backend, r in res.items():
        e = r["empty"]
        emit(f"| {backend} | empty | {e['readyz_s']:.2f} | {e['rss_mb']:.0f} | {e['crl_s']:.2f} |")
        f1, f2 = r["full_1"], r["full_2"]
        emit(f"| {backend} | {a.rows:,}, {revoked:,} revoked | {f1['readyz_s']:.2f} / "
             f"{f2['readyz_s']:.2f} | {f1['rss_mb']:.0f} / {f2['rss_mb']:.0f} | "
             f"{f1['crl_s']:.2f} / {f2['crl_s']:.2f} |")
    return res


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="cpu,revocation,scep,startup")
    p.add_argument("--secs", type=int, default=8, help="seconds per radius_load.sh point")
    p.add_argument("--reps", type=int, default=2, help="radius_load.sh runs per backend (ABBA)")
    p.add_argument("--tls", default="1.2 1.3")
    p.add_argument("--revocations", type=int, default=100)
    p.add_argument("--cli-revocations", type=int, default=30)
    p.add_argument("--eapol-every", type=int, default=10)
    p.add_argument("--keep-samples", action="store_true")
    p.add_argument("--scep-n", type=int, default=300)
    p.add_argument("--scep-conc", type=int, default=4)
    p.add_argument("--scep-secs", type=float, default=30)
    p.add_argument("--scep-reps", type=int, default=2)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--revoked-every", type=int, default=10)
    p.add_argument("--fast-pg", action="store_true",
                   help="PostgreSQL with fsync/synchronous_commit/full_page_writes off")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    parts = a.only.split(",")
    bindir = pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin)")
    work = Path(tempfile.mkdtemp(prefix="certgate-storage-bench.", dir="/tmp"))
    out = a.out or work / "out"
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "storage_backends.txt").open("a")

    def emit(line: str) -> None:
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    started = time.monotonic()
    pg = PgCluster(bindir, free_port(), fast=a.fast_pg).init().start()
    pgcpu = PgCpu(pg)
    ver = pg.psql("SHOW server_version").strip()
    mode = "fast: fsync off" if a.fast_pg else "durable: fsync on, synchronous_commit on"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    emit(f"PostgreSQL {ver} at {pg.url()} ({mode}); work {work}; {os.cpu_count()} CPUs, "
         f"load1 {os.getloadavg()[0]:.2f}; git {head}")
    results: dict = {"args": {k: str(v) for k, v in vars(a).items()}, "pg": ver}
    try:
        for part in parts:
            t0 = time.monotonic()
            if part == "cpu":
                results["cpu"] = part_cpu(a, pg, pgcpu, work, emit)
            elif part == "revocation":
                results["revocation"] = part_revocation(a, pg, work, emit)
            elif part == "scep":
                results["scep"] = part_scep(a, pg, pgcpu, work, emit)
            elif part == "startup":
                results["startup"] = part_startup(a, pg, work, emit)
            else:
                raise SystemExit(f"unknown part {part!r}")
            emit(f"[{part}: {time.monotonic() - t0:.0f} s]")
    finally:
        pgcpu.stop()
        pg.destroy()
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
        emit(f"total {time.monotonic() - started:.0f} s; results {out}/results.json")
        log.close()
        if not a.keep:
            if a.out is None:
                out = Path(tempfile.mkdtemp(prefix="certgate-storage-bench-out.", dir="/tmp"))
                shutil.copytree(work / "out", out, dirs_exist_ok=True)
            shutil.rmtree(work, ignore_errors=True)
            print(f"work dir {work} removed; output in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
