"""Enrollment storm (issue 14 §4): N SCEP enrollments arriving within W seconds, and RADIUS
latency idle vs during the storm.

    .venv/bin/python bench/scep_storm.py [--n 1000] [--window 10] [--rate 20] [--keep]
                                         [--max-concurrent 4] [--max-queued 200]

Set-up (not timed; bench/scep_load.py's helpers): certgate with its default SCEP layout for
the storm group (ECDSA P-256 group CA + RSA-2048 RA, `[scep]` admission at its defaults unless
given), N RSA-2048 client keys (cached), one dynamic challenge per device from the admin API,
one PKCSReq per device built with enrollment/scep_client.py.

The storm is open loop: device i starts at i * W / N seconds, each from its own loopback
address (127.0.x.y, as devices behind a controller have their own addresses), on a new TCP
connection; a 503 is honoured (sleep Retry-After, then the very same request again); any other
answer than 200 + SUCCESS, or a connection error, is a failure. A RADIUS probe (EAP-TLS 1.2,
full handshake, its own process, open loop at --rate) runs once idle and once during the storm.

Prints: enrolled / failures / 503s seen (and Retry-After range) / time until the last device
had its certificate / server CPU; RADIUS p50/p95 idle vs storm and their ratio; certgate's
own shed counters. Exit 0 when every device enrolled and nothing failed.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scep_load as sl  # noqa: E402

GROUP_PHASE = "ecra_pkiop"  # certgate's default SCEP layout


def source_address(i: int) -> str:
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def storm(server: sl.Server, items: list[sl.Enrollment], window: float, deadline_s: float
          ) -> dict:
    path = server.paths[GROUP_PHASE] + "?operation=PKIOperation"
    headers = {"Content-Type": "application/x-pki-message"}
    lock = threading.Lock()
    statuses: Counter[str] = Counter()
    retry_afters: list[int] = []
    finished: list[float] = []
    start = time.monotonic() + 0.2
    deadline = start + deadline_s

    def device(i: int, e: sl.Enrollment) -> None:
        scheduled = start + i * window / len(items)
        time.sleep(max(0.0, scheduled - time.monotonic()))
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=60,
                                              source_address=(source_address(i), 0))
            try:
                conn.request("POST", path, body=e.request.der, headers=headers)
                r = conn.getresponse()
                body, status, after = r.read(), r.status, r.getheader("Retry-After")
            except Exception as exc:  # noqa: BLE001 - a failure, reported
                e.error = f"{type(exc).__name__}: {exc}"[:120]
                with lock:
                    statuses["connection error"] += 1
                return
            finally:
                conn.close()
            with lock:
                statuses[str(status)] += 1
            if status == 503 and after is not None and after.isdigit():
                with lock:
                    retry_afters.append(int(after))
                time.sleep(int(after))
                continue
            e.reply, e.http_status = body, status
            with lock:
                finished.append(time.monotonic() - start)
            return
        e.error = "deadline"

    cpu0 = sl.cpu_ms(server.pid)
    with ThreadPoolExecutor(len(items)) as pool:
        for f in [pool.submit(device, i, e) for i, e in enumerate(items)]:
            f.result()
    seconds = time.monotonic() - start
    time.sleep(0.3)
    ok, why = sl.verify(items)
    return {"ok": ok, "why": why, "statuses": statuses, "retry_afters": retry_afters,
            "last": max(finished, default=float("nan")), "seconds": seconds,
            "cpu_ms": sl.cpu_ms(server.pid) - cpu0,
            "p95_done": sl.pct(finished, 95)}


def metric_sum(server: sl.Server, prefix: str) -> float:
    _, body, _ = server.get("/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
               if line.startswith(prefix))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--window", type=float, default=10.0, help="arrivals spread over W s")
    ap.add_argument("--rate", type=float, default=20.0, help="RADIUS probe auths/s")
    ap.add_argument("--max-concurrent", type=int, default=None)
    ap.add_argument("--max-queued", type=int, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not 1 <= args.n <= 62500:
        ap.error("--n must be 1..62500 (one loopback address each)")
    work = Path(tempfile.mkdtemp(prefix="certgate-bench-storm."))

    def log(msg: str) -> None:
        print(f"# {msg}", file=sys.stderr, flush=True)

    extra = ""
    if args.max_concurrent is not None:
        extra += f"max_concurrent = {args.max_concurrent}\n"
    if args.max_queued is not None:
        extra += f"max_queued = {args.max_queued}\n"
    cg = None
    try:
        keys = sl.client_keys(args.n, log)
        cg, radius = sl.start_certgate(work, log, scep_extra=extra)
        t0 = time.monotonic()
        items = sl.prepare(cg, GROUP_PHASE, keys, radius["token"])
        log(f"{args.n} challenges + pkiMessages prepared in {time.monotonic() - t0:.1f}s")
        print(f"# loadavg at start: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
        idle = sl.radius_idle(cg, radius, args.rate, args.window)
        print(idle.line(args.rate), flush=True)
        box: dict = {}
        thread = threading.Thread(target=lambda: box.update(storm(cg, items, args.window, 120)))
        thread.start()
        time.sleep(0.3)
        c0, b0 = sl.cpu_ms(cg.pid), time.monotonic()
        probe = sl.run_probe(radius, args.rate, args.window)
        probe.wait(args.window + 60)
        during = sl.collect_probe(probe, f"during storm of {args.n}", None,
                                  sl.cpu_ms(cg.pid) - c0, time.monotonic() - b0)
        thread.join()
        print(during.line(args.rate), flush=True)
        ratio = sl.pct(during.latencies, 95) / sl.pct(idle.latencies, 95)
        print(f"radius p95 storm / idle = {ratio:.2f}  (target <= 2)")
        r = box
        ra = r["retry_afters"]
        print(f"storm n={args.n} in {args.window:g} s: enrolled {r['ok']}  failures "
              f"{sum(r['why'].values())} {dict(r['why'])}  answers {dict(r['statuses'])}  "
              f"Retry-After {min(ra, default=0)}..{max(ra, default=0)} s  last certificate at "
              f"{r['last']:.1f} s (p95 {r['p95_done']:.1f} s)  server CPU "
              f"{r['cpu_ms'] / max(r['ok'], 1):.1f} ms/enrollment", flush=True)
        label = '{group="' + GROUP_PHASE.replace("_", "") + '"'
        shed = metric_sum(cg, "certgate_scep_shed_total" + label)
        issued = metric_sum(cg, "certgate_certificates_issued_total" + label)
        print(f"certgate: certgate_scep_shed_total = {shed:g}  "
              f"certgate_certificates_issued_total = {issued:g}")
        return 0 if r["ok"] == args.n else 1
    finally:
        sl.stop(cg.proc if cg is not None else None)
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
