"""Issue 14 §1/§2: auths/s with `[server] workers = 2` ÷ `workers = 1`, server CPU-bound.

    .venv/bin/python bench/workers_ratio.py [--secs 10] [--conc 16] [--clients 1] \
        [--workers 1,2,1,2] [--key-type rsa-3072] [--tls 1.2]

One temp dir, one PKI and store; `certgate serve` is started once per entry of --workers
(same config but for `[server] workers`). The load is full EAP-TLS handshakes (resumption
off) from certgate's own in-memory supplicant (radius.client: Exchange + Supplicant) in
--clients separate processes, each keeping --conc conversations in flight, one UDP socket
per conversation. To keep the server the bottleneck on a small box, the cheapest client is
the one whose share of the handshake is cheap: with `[pki] key_type = "rsa-3072"` the
server signs with RSA-3072 (expensive) and the client only verifies RSA signatures and
signs with its ECDSA P-256 key (cheap). Reported per point: auths/s, failures, server CPU
(supervisor + workers, utime+stime from /proc), server CPU-ms per auth, client CPU-ms per
auth, the supervisor's CPU per routed datagram (the dispatcher's cost), host busy %.
Then the ratio of the median auths/s of each worker count to workers=1.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import SECRET, ServerProcess, certgate, write_config  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime stime cutime cstime: children reaped by the process count too
    return sum(int(v) for v in fields[11:15]) / TICK


def _tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _host_busy() -> tuple[int, int]:
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def client(host: str, port: int, pki: str, cn: str, tls: str, conc: int, secs: float,
           out: mp.Queue) -> None:
    """Keep ``conc`` full EAP-TLS conversations in flight for ``secs`` seconds."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from radius.client.exchange import Exchange, NasOptions
    from radius.client.supplicant import Supplicant, client_context

    base = Path(pki)
    leaf, *chain = x509.load_pem_x509_certificates((base / f"{cn}.chain.pem").read_bytes())
    key = serialization.load_pem_private_key((base / f"{cn}.key").read_bytes(), None)
    trust = x509.load_pem_x509_certificates((base / "root.crt").read_bytes())
    ctx = client_context(certificate=leaf, private_key=key, chain=chain, trust=trust,  # type: ignore[arg-type]
                         tls_min=tls, tls_max=tls)
    nas = NasOptions(secret=SECRET.encode(), user_name=cn.encode(), timeout=3.0, retries=2)
    sel = selectors.DefaultSelector()
    ok = fail = 0
    cpu0 = time.process_time()
    deadline = time.monotonic() + secs

    socks = []
    station = {}
    for i in range(conc):  # one station per socket (max_conversations_per_station)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((host, port))
        s.setblocking(False)
        station[s] = dataclasses.replace(
            nas, calling_station=f"02-00-{os.getpid() & 0xff:02x}-00-{i >> 8:02x}-{i & 0xff:02x}")
        ex = Exchange(Supplicant(ctx, cn.encode()), station[s])
        sel.register(s, selectors.EVENT_READ, ex)
        s.send(ex.start(time.monotonic()))
        socks.append(s)
    while True:
        now = time.monotonic()
        events = sel.select(timeout=0.5)
        for k, _ in events:
            sock, ex = k.fileobj, k.data
            try:
                data = sock.recv(65535)
            except OSError:
                continue
            nxt = ex.receive(data, time.monotonic())
            if nxt is not None:
                sock.send(nxt)
            elif ex.done:
                if ex.outcome.result == "accept":
                    ok += 1
                else:
                    fail += 1
                if time.monotonic() < deadline:
                    ex = Exchange(Supplicant(ctx, cn.encode()), station[sock])
                    sel.modify(sock, selectors.EVENT_READ, ex)
                    sock.send(ex.start(time.monotonic()))
                else:
                    sel.unregister(sock)
        for k in list(sel.get_map().values()):
            ex = k.data
            d = ex.deadline
            if d is not None and now >= d:
                again = ex.timer(now)
                if again is not None:
                    k.fileobj.send(again)
                elif ex.done:
                    fail += 1
                    sel.unregister(k.fileobj)
        if not sel.get_map() or time.monotonic() > deadline + 10:
            break
    out.put((ok, fail, time.process_time() - cpu0))


def routed(server: ServerProcess) -> float:
    import re

    status, body = server.get("/metrics")
    if status != 200:
        return 0.0
    return sum(float(v) for v in re.findall(r"^certgate_worker_datagrams_total\{[^}]*\} (\S+)$",
                                             body.decode(), re.M))


def point(tmp: Path, config: Path, workers: int, args: argparse.Namespace) -> dict:
    text = config.read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("workers = ")]
    i = lines.index("[server]")
    lines.insert(i + 1, f"workers = {workers}")
    config.write_text("\n".join(lines) + "\n")
    server = ServerProcess(config, tmp / f"serve-{workers}.log").start(timeout=90)
    try:
        if workers > 1:  # /readyz answered by one worker; wait until all report ready
            deadline = time.monotonic() + 60
            while server.log().count(" ready (pid ") < workers and time.monotonic() < deadline:
                time.sleep(0.2)
        assert server.proc is not None
        sup = server.proc.pid
        # idle first: the SCEP crypto processes are still starting (imports, loading the RA
        # keys) for a while after /readyz (0.3-0.8 s CPU each, longer on a busy box)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            before = {p: _cpu(p) for p in _tree(sup)}
            time.sleep(1.0)
            if sum(_cpu(p) - before.get(p, 0.0) for p in _tree(sup)) < 0.03:
                break
        pids = _tree(sup)
        cpu0 = {p: _cpu(p) for p in pids}
        sup0 = _cpu(sup)
        dg0 = routed(server) if workers > 1 else 0.0
        busy0 = _host_busy()
        q: mp.Queue = mp.Queue()
        procs = [mp.Process(target=client, args=(*server.radius, str(tmp / "clients"), "bench",
                                                  args.tls, args.conc, args.secs, q))
                 for _ in range(args.clients)]
        t0 = time.monotonic()
        for p in procs:
            p.start()
        results = [q.get(timeout=args.secs + 60) for _ in procs]
        wall = time.monotonic() - t0
        for p in procs:
            p.join()
        busy1 = _host_busy()
        pids = _tree(sup)
        server_cpu = sum(_cpu(p) - cpu0.get(p, 0.0) for p in pids)
        if args.verbose:
            for p in pids:
                try:
                    cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")[:90]
                except OSError:
                    cmd = b"?"
                print(f"  pid {p} cpu {_cpu(p) - cpu0.get(p, 0.0):.2f} s {cmd.decode()}")
        sup_cpu = _cpu(sup) - sup0
        dg = (routed(server) - dg0) if workers > 1 else 0.0
        ok = sum(r[0] for r in results)
        fail = sum(r[1] for r in results)
        client_cpu = sum(r[2] for r in results)
        return {
            "workers": workers, "ok": ok, "fail": fail, "auths_per_s": ok / args.secs,
            "server_cpu_s": server_cpu, "server_ms_per_auth": 1000 * server_cpu / max(ok, 1),
            "client_ms_per_auth": 1000 * client_cpu / max(ok, 1),
            "dispatch_us_per_datagram": (1e6 * sup_cpu / dg) if dg else None,
            "supervisor_ms_per_auth": 1000 * sup_cpu / max(ok, 1) if workers > 1 else 0.0,
            "datagrams_per_auth": dg / max(ok, 1),
            "datagrams": dg, "wall_s": wall,
            "host_busy_pct": 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        }
    finally:
        server.stop(timeout=30)


def _replace_server_key(pki: Path, bits: int) -> None:
    """A server certificate like `certgate init`'s (same name, issued by the root), for an
    RSA key of ``bits``."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

    from pki import profiles
    from pki.keys import load_private_key, write_private_key

    root = x509.load_pem_x509_certificate((pki / "root.crt").read_bytes())
    root_key = load_private_key(pki / "root.key", None)
    old = x509.load_pem_x509_certificate((pki / "server.crt").read_bytes())
    name = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    server_name = name.get_values_for_type(x509.DNSName)[0]
    key = rsa.generate_private_key(65537, bits)
    cert = profiles.server_certificate(key.public_key(), server_name, root, root_key,
                                       dt.datetime.now(dt.UTC), 30)
    (pki / "server.key").unlink()
    write_private_key(pki / "server.key", key, None)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (pki / "server.crt").write_bytes(pem)
    (pki / "server-chain.pem").write_bytes(pem)


def micro(n: int = 200_000) -> None:
    """µs per call of the dispatcher's pure part on an eapol_test-sized Access-Request."""
    import timeit

    from radius import dispatch
    from radius import packet as rp
    from radius.packet import Attr

    attrs = [(Attr.USER_NAME, b"bench@example.test"), (Attr.NAS_IP_ADDRESS, bytes(4)),
             (Attr.NAS_IDENTIFIER, b"certgate-test-auth"),
             (Attr.CALLED_STATION_ID, b"02-00-00-00-00-00:ssid"),
             (Attr.CALLING_STATION_ID, b"02-00-00-00-00-01"), (Attr.NAS_PORT_TYPE, bytes(4)),
             (Attr.FRAMED_MTU, bytes(4)), *rp.eap_message_attributes(os.urandom(1000))]
    state = [(Attr.STATE, dispatch.tagged_token(1)(16))]
    live = [True, True]
    for label, extra in (("with State", state), ("without State", [])):
        data = rp.encode_access_request(7, os.urandom(16), b"secret", attrs + extra)
        t = timeit.timeit(lambda d=data: dispatch.route(d, "127.0.0.1", 40000, live), number=n)
        f = timeit.timeit(lambda d=data: dispatch.frame(0, "127.0.0.1", 40000, d), number=n)
        print(f"route() {label}: {1e6 * t / n:.2f} us, frame(): {1e6 * f / n:.2f} us "
              f"({len(data)}-byte request, {len(attrs) + len(extra) + 1} attributes)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--secs", type=float, default=10.0)
    ap.add_argument("--conc", type=int, default=16)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--workers", default="1,2,1,2")
    ap.add_argument("--key-type", default="rsa-3072")
    ap.add_argument("--tls", default="1.2")
    ap.add_argument("--server-rsa", type=int, default=0, metavar="BITS",
                    help="replace the RADIUS server key by an RSA key of BITS (e.g. 7680): "
                    "the server's signature per handshake dominates, the client stays cheap")
    ap.add_argument("--verbose", action="store_true", help="CPU of each server process")
    ap.add_argument("--micro", action="store_true", help="only the route()/frame() cost")
    args = ap.parse_args()
    if args.micro:
        micro()
        return 0
    with tempfile.TemporaryDirectory(prefix="certgate-workers-") as d:
        tmp = Path(d)
        config = write_config(tmp, extra="", radius_extra="max_conversations_per_client = 0")
        text = config.read_text().replace("[http]", f'[pki]\nkey_type = "{args.key_type}"\n\n[http]', 1)
        config.write_text(text)
        certgate("init", config=config)
        if args.server_rsa:
            _replace_server_key(tmp / "var" / "pki", args.server_rsa)
        certgate("certs", "issue", "--group", "staff", "--cn", "bench", "--out", str(tmp / "clients"),
                 "--key-type", "ec-p256", config=config)
        (tmp / "clients" / "root.crt").write_bytes((tmp / "var" / "pki" / "root.crt").read_bytes())
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} nproc={os.cpu_count()} server key "
              f"{args.key_type}, client ec-p256, TLS {args.tls}, conc {args.conc} x "
              f"{args.clients} client process(es), {args.secs:.0f} s per point")
        rows = []
        for w in (int(v) for v in args.workers.split(",")):
            r = point(tmp, config, w, args)
            rows.append(r)
            disp = (f"{r['dispatch_us_per_datagram']:.1f}" if r["dispatch_us_per_datagram"]
                    else "-")
            print(f"workers={w} ok={r['ok']} fail={r['fail']} auths_per_s={r['auths_per_s']:.1f} "
                  f"server_cpu_ms_per_auth={r['server_ms_per_auth']:.2f} "
                  f"client_cpu_ms_per_auth={r['client_ms_per_auth']:.2f} "
                  f"of_which_supervisor_ms={r['supervisor_ms_per_auth']:.2f} "
                  f"dispatch_us_per_datagram={disp} datagrams_per_auth={r['datagrams_per_auth']:.1f} "
                  f"host_busy_pct={r['host_busy_pct']:.0f}",
                  flush=True)
        by = {}
        for r in rows:
            by.setdefault(r["workers"], []).append(r["auths_per_s"])
        base = statistics.median(by[1]) if 1 in by else None
        for w, vals in sorted(by.items()):
            ratio = f"{statistics.median(vals) / base:.2f}" if base else "-"
            print(f"median workers={w}: {statistics.median(vals):.1f} auths/s, ratio to 1 worker "
                  f"{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
