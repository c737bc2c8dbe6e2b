"""OCSP responses/s per core: certgate's responder vs `openssl ocsp` on the same certificates.

    .venv/bin/python bench/ocsp_load.py [--certs 200] [--revoked 20] [--secs 6] [--procs 3]
        [--servers certgate,openssl] [--modes nononce,nonce] [--profile FILE] [--keep]

Issue 14 §2 (OCSP row). Everything on 127.0.0.1 in a temp dir:

1. certgate: a config (groups staff/guests, P-256 intermediates, the default), `certgate
   init`, `certgate certs issue --group staff` for --certs CNs (one process), `certgate
   revoke --serial S --reason keyCompromise` for --revoked of them, `certgate serve`.
2. openssl: index.txt built from the same certificates (`V` / `R` rows with certgate's
   revocation time and reason from `certgate certs list --json`), `openssl ocsp -index
   index.txt -port P -rsigner staff-CA.crt -rkey staff-CA.key -CA staff-CA.crt -nmin N`
   (the group intermediate signs its own responses, as certgate does; nextUpdate = certgate's
   ocsp_validity_minutes). One process: `openssl ocsp` has no threads (no -multi).
3. Load: --procs client processes (forked), each with one keep-alive HTTP/1.1 connection
   POSTing pre-built DER requests back to back (SHA-1 CertIDs, the way OpenSSL, NSS and
   Windows ask; certificates chosen round-robin, revoked ones included). `nonce` mode: every
   request carries a fresh 16-byte nonce (requests pre-built before the clock starts).
   A client reconnects when the server closes the connection (counted: `reconnects`).
   Every response is parsed; the first 200 per client and every 50th after are checked in
   full (successful, the CertID asked for, good/revoked as in the inventory, the nonce
   echoed, signature valid under the intermediate's key): any mismatch is an error.
4. Server CPU: utime+stime of the server process (all threads) from /proc/PID/stat over
   the measured window; responses/s per core = responses / server CPU seconds.

Output: one key=value line per (server, mode) and a markdown table. Exit 0 when every
point answered with no error, 1 otherwise, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.x509 import ocsp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
CERTGATE = str(Path(sys.executable).with_name("certgate"))
CLK = os.sysconf("SC_CLK_TCK")
CHECK_FIRST, CHECK_EVERY = 200, 50
XIPKI = "XiPKI publishes 3,600 responses/s for P-256 on 4 cores (~900/s/core) for orientation"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime, stime (all threads)


def run(cmd: list[str], **kw) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    if out.returncode != 0:
        raise SystemExit(f"ocsp_load: {' '.join(cmd[:4])}... failed ({out.returncode}):\n"
                         f"{out.stderr[-2000:]}")
    return out.stdout


# ------------------------------------------------------------------ set-up


def setup_certgate(work: Path, n_certs: int, n_revoked: int, validity_min: int,
                    reuse: int | None) -> dict:
    cg = work / "certgate"
    cg.mkdir()
    http_port = free_port()
    (cg / "certgate.toml").write_text(f"""\
[server]
data_dir = "var"

[radius]
listen = "127.0.0.1:{free_port(socket.SOCK_DGRAM)}"

[[radius.clients]]
name = "loopback"
address = "127.0.0.0/8"
secret = "testing123"

[http]
listen = "127.0.0.1:{http_port}"
public_url = "http://127.0.0.1:{http_port}"

[revocation]
ocsp_validity_minutes = {validity_min}
{"" if reuse is None else f"ocsp_reuse_seconds = {reuse}"}

[admin]
tokens = ["bench-admin-token-0123456789"]
webhook_secret = "bench-webhook-secret-0123456789"

[groups.staff]
vlan = 10
validity_days = 365

[groups.guests]
vlan = 20
validity_days = 30
""")
    cfg = ["--config", str(cg / "certgate.toml")]
    run([CERTGATE, *cfg, "init"])
    cns = [f"dev-{i:05d}" for i in range(n_certs)]
    run([CERTGATE, *cfg, "certs", "issue", "--group", "staff", "--out", str(cg / "issued"),
         *[a for cn in cns for a in ("--cn", cn)]])
    certs = {cn: x509.load_pem_x509_certificate((cg / "issued" / f"{cn}.crt").read_bytes())
             for cn in cns}
    for cn in cns[:: max(1, n_certs // max(1, n_revoked))][:n_revoked]:
        run([CERTGATE, *cfg, "revoke", "--serial", f"{certs[cn].serial_number:x}",
             "--reason", "keyCompromise", "--yes"])
    listed = json.loads(run([CERTGATE, *cfg, "certs", "list", "--group", "staff", "--json"]))
    rows = listed if isinstance(listed, list) else listed.get("certificates", listed)
    pki = cg / "var" / "pki"
    issuer_dir = pki / "groups" / "staff"
    return {"dir": cg, "cfg": cfg, "port": http_port, "certs": list(certs.values()),
            "rows": rows, "issuer_dir": issuer_dir}


def find_issuer(issuer_dir: Path) -> tuple[Path, Path]:
    crt = [p for p in sorted(issuer_dir.glob("*.crt")) if "ra" not in p.stem.lower()]
    key = [p for p in sorted(issuer_dir.glob("*.key")) if "ra" not in p.stem.lower()]
    if not crt or not key:
        raise SystemExit(f"ocsp_load: no intermediate cert/key in {issuer_dir}: "
                         f"{sorted(p.name for p in issuer_dir.iterdir())}")
    return crt[0], key[0]


def index_txt(certs: list[x509.Certificate], rows: list[dict]) -> tuple[str, dict[int, str]]:
    """openssl ca's index.txt for these certificates, and serial -> expected status."""
    by_serial = {int(str(r["serial"]), 16): r for r in rows}
    lines, expected = [], {}
    for c in certs:
        row = by_serial[c.serial_number]
        exp = c.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        subject = c.subject.rfc4514_string() or "unknown"
        subject = "/" + "/".join(reversed(subject.split(",")))
        serial = f"{c.serial_number:X}"
        serial = "0" * (len(serial) % 2) + serial
        if row["status"] == "revoked":
            at = dt.datetime.fromisoformat(str(row["revoked_at"]).replace("Z", "+00:00"))
            lines.append(f"R\t{exp}\t{at.strftime('%y%m%d%H%M%SZ')},keyCompromise\t{serial}"
                         f"\tunknown\t{subject}")
            expected[c.serial_number] = "revoked"
        else:
            lines.append(f"V\t{exp}\t\t{serial}\tunknown\t{subject}")
            expected[c.serial_number] = "good"
    return "\n".join(lines) + "\n", expected


def wait_http(port: int, path: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ocsp_load: server exited ({proc.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"ocsp_load: server on {port} not ready")


def wait_log(log: Path, text: str, proc: subprocess.Popen, timeout: float = 10) -> None:
    """Wait for `text` in a server's log. (Not a TCP probe: `openssl ocsp` serves one
    connection at a time and waits forever on one that sends nothing.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ocsp_load: server exited ({proc.returncode}): "
                             f"{log.read_text()[-1000:]}")
        if text in log.read_text():
            return
        time.sleep(0.05)
    raise SystemExit(f"ocsp_load: no {text!r} in {log}")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ------------------------------------------------------------------ client


class Conn:
    def __init__(self, port: int, path: str) -> None:
        self.port, self.path = port, path
        self.sock: socket.socket | None = None
        self.buf = b""
        self.reconnects = -1

    def _connect(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.reconnects += 1

    def post(self, der: bytes) -> bytes:
        head = (f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Content-Type: application/ocsp-request\r\nContent-Length: {len(der)}\r\n"
                "Connection: keep-alive\r\n\r\n").encode()
        for attempt in range(2):
            if self.sock is None:
                self._connect()
            try:
                assert self.sock is not None
                self.sock.sendall(head + der)
                return self._response()
            except (ConnectionError, EOFError):
                if attempt:
                    raise
                self.sock.close()  # type: ignore[union-attr]
                self.sock = None
        raise AssertionError("unreachable")

    def _response(self) -> bytes:
        assert self.sock is not None
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split()
        headers = {k.strip().lower(): v.strip() for k, v in
                   (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        length = int(headers.get("content-length", "-1"))
        keep = headers.get("connection", "").lower()
        close = keep == "close" or (status[0] == "HTTP/1.0" and keep != "keep-alive")
        if length < 0:  # no length: body until close
            while chunk := self.sock.recv(65536):
                self.buf += chunk
            body, self.buf, close = self.buf, b"", True
        else:
            while len(self.buf) < length:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError
                self.buf += chunk
            body, self.buf = self.buf[:length], self.buf[length:]
        if status[1] != "200":
            raise ValueError(f"HTTP {status[1]}")
        if close:
            self.sock.close()
            self.sock = None
        return body


def check(der: bytes, cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None,
          expected: str) -> str | None:
    """None when the response is right, else what is wrong."""
    r = ocsp.load_der_ocsp_response(der)
    if r.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return f"status {r.response_status.name}"
    if r.serial_number != cert.serial_number:
        return "serial"
    if r.certificate_status.name.lower() != expected:
        return f"cert status {r.certificate_status.name} != {expected}"
    got = None
    with contextlib.suppress(x509.ExtensionNotFound):
        got = r.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    if nonce is not None and got != nonce:
        return "nonce not echoed"
    if r.next_update_utc is None:
        return "no nextUpdate"
    key = issuer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(r.signature, r.tbs_response_bytes,
                       ec.ECDSA(r.signature_hash_algorithm))  # type: ignore[arg-type]
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(r.signature, r.tbs_response_bytes, PKCS1v15(),
                       r.signature_hash_algorithm)  # type: ignore[arg-type]
        else:
            return "issuer key type"
    except Exception:  # noqa: BLE001 - any failure is a bad signature
        return "signature"
    return None


def client(port: int, path: str, certs_pem: list[bytes], issuer_pem: bytes,
           expected: dict[int, str], nonce: bool, n_pre: int, t_start: float, t_end: float,
           out: mp.Queue) -> None:
    t_cpu0 = time.process_time()
    certs = [x509.load_pem_x509_certificate(p) for p in certs_pem]
    issuer = x509.load_pem_x509_certificate(issuer_pem)
    reqs: list[tuple[bytes, x509.Certificate, bytes | None]] = []
    count = n_pre if nonce else len(certs)
    for i in range(count):
        c = certs[i % len(certs)]
        b = ocsp.OCSPRequestBuilder().add_certificate(c, issuer, hashes.SHA1())
        n = os.urandom(16) if nonce else None
        if n is not None:
            b = b.add_extension(x509.OCSPNonce(n), critical=False)
        reqs.append((b.build().public_bytes(serialization.Encoding.DER), c, n))
    conn = Conn(port, path)
    done = errors = 0
    first_error = ""
    lat: list[float] = []
    # warm-up before the clock starts (the connection, the server's first requests)
    for der, _c, _n in reqs[:20]:
        conn.post(der)
    setup_cpu = time.process_time() - t_cpu0
    while time.time() < t_start:
        time.sleep(0.001)
    cpu0 = time.process_time()
    i = 0
    while True:
        now = time.time()
        if now >= t_end:
            break
        der, c, n = reqs[i % len(reqs)]
        i += 1
        try:
            body = conn.post(der)
            t = time.time()
            lat.append(t - now)
            if done < CHECK_FIRST or done % CHECK_EVERY == 0:
                bad = check(body, c, issuer, n, expected[c.serial_number])
            else:
                # unchecked ones: a SEQUENCE carrying a response, not a bare error status
                bad = None if body[:1] == b"\x30" and len(body) > 100 else "short response"
            if bad:
                errors += 1
                first_error = first_error or bad
            else:
                done += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            conn.sock = None
    lat.sort()
    out.put({"ok": done, "errors": errors, "first_error": first_error,
             "reconnects": max(0, conn.reconnects), "client_cpu": time.process_time() - cpu0,
             "setup_cpu": setup_cpu, "sent": i,
             "p50": lat[len(lat) // 2] * 1000 if lat else 0,
             "p95": lat[int(len(lat) * 0.95)] * 1000 if lat else 0})


def load_point(server: str, pid: int, port: int, path: str, mode: str, a, certs_pem, issuer_pem,
               expected) -> dict:
    q: mp.Queue = mp.Queue()
    lead = 3.0 + (a.nonce_pre / 2500 if mode == "nonce" else 0)  # time to pre-build requests
    t_start = time.time() + lead
    t_end = t_start + a.secs
    procs = [mp.Process(target=client, args=(port, path, certs_pem, issuer_pem, expected,
                                             mode == "nonce", a.nonce_pre, t_start, t_end, q))
             for _ in range(a.procs)]
    for p in procs:
        p.start()
    while time.time() < t_start:
        time.sleep(0.001)
    c0, w0 = cpu_seconds(pid), time.monotonic()
    load1 = os.getloadavg()[0]
    while time.time() < t_end:
        time.sleep(0.005)
    c1, w1 = cpu_seconds(pid), time.monotonic()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    ok = sum(r["ok"] for r in results)
    cpu = c1 - c0
    return {
        "server": server, "mode": mode, "procs": a.procs, "secs": round(w1 - w0, 2), "ok": ok,
        "errors": sum(r["errors"] for r in results),
        "first_error": next((r["first_error"] for r in results if r["first_error"]), "-"),
        "reconnects": sum(r["reconnects"] for r in results),
        "responses_per_s": round(ok / (w1 - w0), 1),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_us_per_response": round(cpu / ok * 1e6, 1) if ok else 0,
        "responses_per_cpu_s": round(ok / cpu, 0) if cpu > 0 else 0,
        "client_cpu_s": round(sum(r["client_cpu"] for r in results), 2),
        "p50_ms": round(max(r["p50"] for r in results), 2),
        "p95_ms": round(max(r["p95"] for r in results), 2),
        "loadavg1": round(load1, 2),
    }


def table(rows: list[dict]) -> str:
    out = ["| server | nonce | responses/s (wall) | **responses per server CPU-s** | "
           "server CPU µs/response | p50/p95 ms | errors | reconnects | load1 |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['server']} | {'yes' if r['mode'] == 'nonce' else 'no'} | "
                   f"{r['responses_per_s']:.0f} | **{r['responses_per_cpu_s']:.0f}** | "
                   f"{r['server_cpu_us_per_response']} | {r['p50_ms']}/{r['p95_ms']} | "
                   f"{r['errors']} | {r['reconnects']} | {r['loadavg1']} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--certs", type=int, default=200)
    p.add_argument("--revoked", type=int, default=20)
    p.add_argument("--secs", type=float, default=6)
    p.add_argument("--procs", type=int, default=3, help="client processes (1 connection each)")
    p.add_argument("--servers", default="certgate,openssl")
    p.add_argument("--modes", default="nononce,nonce")
    p.add_argument("--nonce-pre", type=int, default=8000,
                   help="distinct nonce requests pre-built per client")
    p.add_argument("--validity-min", type=int, default=60, help="nextUpdate (both servers)")
    p.add_argument("--reuse-seconds", type=int,
                   help="certgate [revocation] ocsp_reuse_seconds (default: not set, the "
                        "server's default; 0 signs every response)")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds between certgate's /readyz and the first point")
    p.add_argument("--profile", help="run certgate under bench/profile_serve.py, stats to FILE")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--out", type=Path, help="write ocsp.txt and table.md here")
    a = p.parse_args()
    if not 1 <= a.secs <= 30:
        p.error("--secs must be 1..30")
    servers = a.servers.split(",")
    if "openssl" in servers and shutil.which("openssl") is None:
        print("ocsp_load: openssl not installed, certgate only", file=sys.stderr)
        servers.remove("openssl")

    work = Path(tempfile.mkdtemp(prefix="certgate-ocsp-"))
    procs: list[subprocess.Popen] = []
    rows: list[dict] = []
    try:
        t0 = time.monotonic()
        cg = setup_certgate(work, a.certs, a.revoked, a.validity_min, a.reuse_seconds)
        issuer_crt, issuer_key = find_issuer(cg["issuer_dir"])
        issuer_pem = issuer_crt.read_bytes()
        issuer = x509.load_pem_x509_certificate(issuer_pem)
        key = serialization.load_pem_private_key(issuer_key.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            print(f"ocsp_load: note: intermediate key is {type(key).__name__}", file=sys.stderr)
        index, expected = index_txt(cg["certs"], cg["rows"])
        (work / "index.txt").write_text(index)
        (work / "index.txt.attr").write_text("unique_subject = no\n")
        n_rev = sum(1 for v in expected.values() if v == "revoked")
        print(f"# {len(expected)} certificates ({n_rev} revoked) of group staff, intermediate "
              f"{issuer.subject.rfc4514_string()} ({type(issuer.public_key()).__name__}"
              f"{' ' + issuer.public_key().curve.name if hasattr(issuer.public_key(), 'curve') else ''}), "  # noqa: E501
              f"set-up {time.monotonic() - t0:.0f} s", flush=True)
        certs_pem = [c.public_bytes(serialization.Encoding.PEM) for c in cg["certs"]]

        for server in servers:
            if server == "certgate":
                cmd = ([PY, str(HERE / "profile_serve.py"), *cg["cfg"], "--out", a.profile]
                       if a.profile else [CERTGATE, *cg["cfg"], "serve"])
                log = (work / "certgate.log").open("w")
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=cg["dir"])
                procs.append(proc)
                wait_http(cg["port"], "/readyz", proc)
                time.sleep(a.settle)  # start-up work after /readyz (CRLs, gauges) is not ours
                port, path = cg["port"], "/ocsp"
            elif server == "openssl":
                port = free_port()
                cmd = ["openssl", "ocsp", "-index", str(work / "index.txt"), "-port", str(port),
                       "-rsigner", str(issuer_crt), "-rkey", str(issuer_key),
                       "-CA", str(issuer_crt), "-nmin", str(a.validity_min),
                       "-resp_no_certs", "-resp_key_id"]
                log = (work / "openssl.log").open("w")
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                procs.append(proc)
                wait_log(work / "openssl.log", "waiting for OCSP client", proc)
                path = "/"
                print(f"# {' '.join(cmd)}", flush=True)
            else:
                raise SystemExit(f"ocsp_load: unknown server {server!r}")
            for mode in a.modes.split(","):
                row = load_point(server, proc.pid, port, path, mode, a, certs_pem, issuer_pem,
                                 expected)
                rows.append(row)
                print(" ".join(f"{k}={str(v).replace(' ', '_')}" for k, v in row.items()),
                      flush=True)
            stop(proc)
            if server == "certgate" and a.profile:
                print((work / "certgate.log").read_text()[-6000:], file=sys.stderr)
        md = table(rows)
        print(md)
        print(f"\n{XIPKI}")
        if a.out:
            a.out.mkdir(parents=True, exist_ok=True)
            (a.out / "ocsp.txt").write_text("\n".join(
                " ".join(f"{k}={v}" for k, v in r.items()) for r in rows) + "\n")
            (a.out / "table.md").write_text(md + "\n")
    finally:
        for proc in procs:
            stop(proc)
        if a.keep:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if rows and all(r["errors"] == 0 and r["ok"] > 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
