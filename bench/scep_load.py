"""SCEP enrollment load: certgate vs micromdm scepserver, and RADIUS latency during a burst.

    .venv/bin/python bench/scep_load.py [--n 300] [--conc 4] [--secs 12] [--rate 20]
                                        [--radius-secs 8] [--profile] [--keep] [--out DIR]

Everything runs on loopback (scepserver binds :PORT on every interface, it has no listen
address flag), in a temp dir; both servers are started here and stopped by PID.

Set-up (not timed)
  certgate   config from tests/support.write_config plus one group per SCEP phase (a fresh
             CA per phase keeps transactionIDs unique per group): `rsa*` groups mirror
             scepserver (ca_key_type = "rsa-2048", ca_is_ra = true: one RSA-2048 CA that also
             decrypts and signs CertReps), `ecra*` is certgate's default layout (ECDSA P-256
             group CA + separate RSA-2048 RA). `certgate init`, `certgate certs issue` for the
             RADIUS probe, `certgate serve`. One dynamic challenge per request from the admin
             API (POST /api/v1/groups/<g>/challenges, bearer token).
  scepserver `scepserver ca -init -depot D -keySize 2048`, `scepserver -depot D -port P
             -challenge s3cret -allowrenew 0` (the docs/scep.md §7 recipe).
  clients    N RSA-2048 keys (cached in /tmp/certgate-bench-scep-keys.pem, generated on 2
             processes the first time), one CSR (CN, challengePassword) and one self-signed
             signer per request, PKCSReq pkiMessages built with enrollment/scep_client.py:
             AES-128-CBC, RSA PKCS#1 v1.5 key transport, SHA-256 for both servers,
             transactionID = scepclient's (from the key), encrypted to the recipient that
             GetCACert returns.

Phases (each bounded by --secs; CPU = utime+stime of the server PID from /proc/PID/stat,
sampled before and after the phase, divided by the enrollments that completed)
  pkiop   POST operation=PKIOperation only, --conc workers with a keep-alive connection each
  full    per enrollment: a new TCP connection, GET GetCACaps, GET GetCACert, POST
          PKIOperation (what scepclient does)
  every reply is checked after the phase (not timed): parse_cert_rep (signature by the
  CA/RA, transactionID, recipientNonce echoed, envelope opened with the client key),
  status SUCCESS with a certificate for our key; anything else counts as a failure.
  radius  EAP-TLS (TLS 1.2, full handshake, client certificate from `certgate certs issue`)
          with radius.client (EAP-TLS 1.2) at --rate auths/s, open loop, from a separate process
          (its own GIL): idle, then while a certgate `pkiop` burst at --conc runs.
          Latency is measured from the scheduled start (no coordinated omission).
  --profile  after the burst, a second burst under `py-spy record` (event-loop thread,
          GIL holders only) and the top on-loop frames; needs py-spy in the venv.

One summary line per measurement on stdout; details in OUT/ (default a new temp dir).
Exit 0 when every reply was SUCCESS, 1 otherwise, 2 on set-up errors.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs7  # noqa: E402
from cryptography.x509.oid import AttributeOID, NameOID  # noqa: E402

from enrollment import scep_client  # noqa: E402
from enrollment.scep_types import ContentCipher, DigestAlgorithm, KeyTransport, PKIStatus  # noqa: E402

KEY_CACHE = Path(tempfile.gettempdir()) / "certgate-bench-scep-keys.pem"
STATIC_CHALLENGE = "s3cret"
OPTIONS = scep_client.RequestOptions(cipher=ContentCipher.AES128_CBC,
                                     key_transport=KeyTransport.RSA_PKCS1V15,
                                     digest=DigestAlgorithm.SHA256)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASES = ("rsa_warm", "rsa_pkiop", "rsa_full", "ecra_pkiop", "rsa_burst", "rsa_prof")


def rsa_group(name: str) -> str:
    return (f"\n[groups.{name}]\nvlan = 50\nvalidity_days = 30\nca_key_type = \"rsa-2048\"\n"
            f"ca_is_ra = true\n")


def default_group(name: str) -> str:
    return f"\n[groups.{name}]\nvlan = 51\nvalidity_days = 30\n"


# -- small helpers ------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_ms(pid: int) -> float:
    """utime + stime of a process (all its threads) and of its live child processes (a
    process-pool variant's workers), in ms."""
    total = cpu_ms_path(Path(f"/proc/{pid}/stat"))
    for child in children(pid):
        with contextlib.suppress(OSError, ValueError):
            total += cpu_ms(child)
    return total


def thread_cpu(pid: int) -> dict[int, float]:
    """Per-thread utime + stime in ms (threads that exited meanwhile are lost)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            out[int(task.name)] = cpu_ms_path(task / "stat")
    return out


def cpu_ms_path(stat: Path) -> float:
    text = stat.read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / CLK_TCK


def thread_names(pid: int) -> dict[int, str]:
    """OS thread id -> Python thread name, from `py-spy dump` (empty without py-spy)."""
    import re

    spy = py_spy()
    if spy is None:
        return {}
    r = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
    return {int(m.group(1)): m.group(2)
            for m in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', r.stdout, re.M)}


def thread_role(name: str) -> str:
    if name == "MainThread":
        return "loop"
    if name.startswith("scep_"):
        return "scep-pool"
    if name.startswith("asyncio_"):
        return "default-pool"
    if "_connection_worker" in name:
        return "aiosqlite"
    return name or "?"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM the process we started (by PID), SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


# -- client keys and messages --------------------------------------------------------------


def _gen_key(_: int) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def client_keys(n: int, log: Callable[[str], None]) -> list[rsa.RSAPrivateKey]:
    pems: list[bytes] = []
    if KEY_CACHE.exists():
        marker = b"-----END PRIVATE KEY-----\n"
        pems = [p + marker for p in KEY_CACHE.read_bytes().split(marker) if p.strip()]
    if len(pems) < n:
        started = time.monotonic()
        with multiprocessing.Pool(os.cpu_count() or 2) as pool:
            pems += pool.map(_gen_key, range(n - len(pems)))
        tmp = KEY_CACHE.with_suffix(".tmp")
        tmp.write_bytes(b"".join(pems))
        tmp.chmod(0o600)
        tmp.replace(KEY_CACHE)
        log(f"generated {n} RSA-2048 client keys in {time.monotonic() - started:.1f}s "
            f"(cached in {KEY_CACHE})")
    return [serialization.load_pem_private_key(p, None) for p in pems[:n]]  # type: ignore[misc]


@dataclass
class Enrollment:
    key: rsa.RSAPrivateKey
    signer: x509.Certificate
    request: scep_client.ClientRequest
    recipient: x509.Certificate
    reply: bytes | None = None
    http_status: int | None = None
    error: str | None = None


def build_enrollments(keys: list[rsa.RSAPrivateKey], challenges: list[str], recipient: x509.Certificate,
                      cn_prefix: str) -> list[Enrollment]:
    now = dt.datetime.now(dt.UTC)
    out = []
    for i, (key, challenge) in enumerate(zip(keys, challenges, strict=True)):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cn_prefix}-{i}")])
        csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
               .add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
               .sign(key, hashes.SHA256()))
        signer = scep_client.self_signed_signer(key, subject, now)
        req = scep_client.build_pkcs_req(csr, signer, key, recipient, options=OPTIONS)
        out.append(Enrollment(key, signer, req, recipient))
    return out


def recipient_from_ca_certs(body: bytes, content_type: str) -> x509.Certificate:
    """The certificate to encrypt to: the single CA, or the first (RA) of a degenerate PKCS#7."""
    if "ca-ra-cert" in content_type:
        certs = pkcs7.load_der_pkcs7_certificates(body)
        for cert in certs:
            try:
                ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            except x509.ExtensionNotFound:
                continue
            if ku.key_encipherment and isinstance(cert.public_key(), rsa.RSAPublicKey):
                return cert
        return certs[0]
    return x509.load_der_x509_certificate(body)


def verify(items: list[Enrollment]) -> tuple[int, dict[str, int]]:
    ok, why = 0, {}
    for e in items:
        reason = e.error
        if reason is None and e.http_status != 200:
            reason = f"http {e.http_status}"
        if reason is None:
            try:
                rep = scep_client.parse_cert_rep(e.reply, e.signer, e.key, ra_cert=e.recipient,
                                                 request=e.request)
                if rep.status is not PKIStatus.SUCCESS:
                    reason = f"{rep.status.name} {rep.fail_info and rep.fail_info.name} {rep.fail_info_text}"
                elif not any(c.public_key() == e.key.public_key() for c in rep.certificates):
                    reason = "no certificate for our key"
            except Exception as exc:  # noqa: BLE001 - counted and reported
                reason = f"{type(exc).__name__}: {exc}"[:120]
        if reason is None:
            ok += 1
        else:
            why[reason] = why.get(reason, 0) + 1
    return ok, why


# -- the servers -----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    host: str
    port: int
    paths: dict[str, str] = field(default_factory=dict)  # phase -> SCEP path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes, str]:
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read(), r.getheader("Content-Type", "")
        finally:
            c.close()


def start_certgate(work: Path, log: Callable[[str], None], variant: str = "none",
                   scep_workers: int | None = None, scep_extra: str = "") -> tuple[Server, dict]:
    from tests.support import SECRET, TOKEN, certgate, write_config

    cg = work / "certgate"
    extra = "".join(rsa_group(p) if p.startswith("rsa") else default_group(p)
                    for p in (ph.replace("_", "") for ph in PHASES))
    if scep_workers is not None:
        scep_extra += f"workers = {scep_workers}\n"
    if scep_extra:
        extra += "\n[scep]\n" + scep_extra
    config = write_config(cg, extra=extra)
    t0 = time.monotonic()
    certgate("init", config=config)
    certgate("certs", "issue", "--group", "staff", "--cn", "radius-probe", "--out",
             str(cg / "probe"), config=config)
    log(f"certgate init + certs issue: {time.monotonic() - t0:.1f}s")
    import tomllib

    data = tomllib.loads(config.read_text())
    host, port = data["http"]["listen"].rsplit(":", 1)
    rhost, rport = data["radius"]["listen"].rsplit(":", 1)
    logf = (work / "certgate-serve.log").open("ab")
    cmd = [sys.executable, "-m", "certgate", "--config", str(config), "serve"]
    if variant != "none":
        cmd = [sys.executable, str(ROOT / "bench" / "scep_serve_variant.py"), "--variant", variant,
               "--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT)
    wait_http(f"http://{host}:{port}/readyz", proc)
    server = Server("certgate", proc, host, int(port),
                    {ph: f"/scep/{ph.replace('_', '')}/pkiclient.exe" for ph in PHASES})
    pki = cg / "var" / "pki"
    radius = {"host": rhost, "port": int(rport), "secret": SECRET, "ca": str(pki / "root.crt"),
              "cert": str(cg / "probe" / "radius-probe.chain.pem"),
              "key": str(cg / "probe" / "radius-probe.key"), "token": TOKEN}
    return server, radius


def start_scepserver(work: Path, log: Callable[[str], None]) -> Server:
    depot = work / "scepserver-depot"
    t0 = time.monotonic()
    subprocess.run(["scepserver", "ca", "-init", "-depot", str(depot), "-keySize", "2048"],
                   check=True, capture_output=True, timeout=120)
    log(f"scepserver ca -init: {time.monotonic() - t0:.1f}s")
    port = free_tcp_port()
    logf = (work / "scepserver.log").open("ab")
    proc = subprocess.Popen(["scepserver", "-depot", str(depot), "-port", str(port), "-challenge",
                             STATIC_CHALLENGE, "-allowrenew", "0"],
                            stdout=logf, stderr=subprocess.STDOUT, cwd=work)
    wait_http(f"http://127.0.0.1:{port}/scep?operation=GetCACaps", proc)
    return Server("scepserver", proc, "127.0.0.1", port, {ph: "/scep" for ph in PHASES})


def certgate_challenges(server: Server, group: str, n: int, token: str) -> list[str]:
    c = http.client.HTTPConnection(server.host, server.port, timeout=30)
    out = []
    try:
        for _ in range(n):
            c.request("POST", f"/api/v1/groups/{group}/challenges", body=b'{"ttl": "1h"}',
                      headers={"Authorization": f"Bearer {token}",
                               "Content-Type": "application/json"})
            r = c.getresponse()
            body = r.read()
            if r.status != 201:
                raise RuntimeError(f"challenge API: {r.status} {body[:200]!r}")
            out.append(json.loads(body)["challenge"])
    finally:
        c.close()
    return out


def prepare(server: Server, phase: str, keys: list[rsa.RSAPrivateKey], token: str | None
            ) -> list[Enrollment]:
    path = server.paths[phase]
    status, body, ctype = server.get(path + "?operation=GetCACert")
    if status != 200:
        raise RuntimeError(f"{server.name} GetCACert: {status}")
    recipient = recipient_from_ca_certs(body, ctype)
    if server.name == "certgate":
        assert token is not None
        challenges = certgate_challenges(server, phase.replace("_", ""), len(keys), token)
    else:
        challenges = [STATIC_CHALLENGE] * len(keys)
    return build_enrollments(keys, challenges, recipient, f"{server.name}-{phase}")


# -- load ------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    server: str
    phase: str
    done: int
    ok: int
    failures: dict[str, int]
    seconds: float
    latencies: list[float]
    cpu_ms: float
    threads: dict[str, float] = field(default_factory=dict)  # role -> CPU ms

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def cpu_per(self) -> float:
        return self.cpu_ms / self.done if self.done else float("nan")

    def thread_line(self) -> str:
        parts = [f"{k} {v / self.done:.2f}" for k, v in sorted(self.threads.items(),
                                                                 key=lambda kv: -kv[1]) if v > 0]
        return f"      {self.server} {self.phase} CPU ms/enroll by thread: " + ", ".join(parts)

    def line(self, conc: int) -> str:
        fail = self.done - self.ok
        return (f"scep  {self.server:<10} {self.phase:<10} c={conc} n={self.done:<4} "
                f"{self.rate:7.1f} enroll/s  p50 {pct(self.latencies, 50) * 1000:6.1f} ms  "
                f"p95 {pct(self.latencies, 95) * 1000:6.1f} ms  server CPU "
                f"{self.cpu_per:5.2f} ms/enroll  failures {fail}"
                + (f" {self.failures}" if self.failures else ""))


def fire(server: Server, phase: str, items: list[Enrollment], conc: int, secs: float, full: bool,
         stop_event: threading.Event | None = None) -> LoadResult:
    """Send the prepared PKIOperations with `conc` workers until done, `secs` or stop_event."""
    path = server.paths[phase]
    lock = threading.Lock()
    it = iter(items)
    latencies: list[float] = []
    done: list[Enrollment] = []
    deadline = time.monotonic() + secs
    headers = {"Content-Type": "application/x-pki-message"}

    def worker() -> None:
        conn: http.client.HTTPConnection | None = None
        while time.monotonic() < deadline and not (stop_event and stop_event.is_set()):
            with lock:
                e = next(it, None)
            if e is None:
                break
            t0 = time.monotonic()
            try:
                if full or conn is None:
                    if conn is not None:
                        conn.close()
                    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
                if full:
                    for op in ("GetCACaps", "GetCACert"):
                        conn.request("GET", f"{path}?operation={op}")
                        r = conn.getresponse()
                        r.read()
                        if r.status != 200:
                            raise RuntimeError(f"{op} http {r.status}")
                conn.request("POST", f"{path}?operation=PKIOperation", body=e.request.der,
                             headers=headers)
                r = conn.getresponse()
                e.reply, e.http_status = r.read(), r.status
            except Exception as exc:  # noqa: BLE001 - counted as a failure
                e.error = f"{type(exc).__name__}: {exc}"[:120]
                if conn is not None:
                    conn.close()
                conn = None
            elapsed = time.monotonic() - t0
            with lock:
                latencies.append(elapsed)
                done.append(e)
        if conn is not None:
            conn.close()

    tcpu0 = thread_cpu(server.pid) if server.name == "certgate" else {}
    cpu0, t0 = cpu_ms(server.pid), time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    time.sleep(0.2)  # anything the server still does for the last replies (logs, commits)
    cpu = cpu_ms(server.pid) - cpu0
    roles: dict[str, float] = {}
    if tcpu0:
        names = thread_names(server.pid)
        for tid, ms in thread_cpu(server.pid).items():
            role = thread_role(names.get(tid, ""))
            roles[role] = roles.get(role, 0.0) + ms - tcpu0.get(tid, 0.0)
        if children(server.pid):
            roles["child-processes"] = max(0.0, cpu - sum(roles.values()))
    ok, why = verify(done)
    return LoadResult(server.name, phase, len(done), ok, why, seconds, latencies, cpu, roles)


# -- RADIUS probe (a separate process) -------------------------------------------------------


def probe_main(args: argparse.Namespace) -> int:
    """Open-loop EAP-TLS authentications at --rate for --secs; JSON on stdout."""
    from radius.client import udp as eap_client

    cfg = json.loads(args.probe)
    rate, secs = cfg["rate"], cfg["secs"]
    results: list[tuple[float, float, int]] = []  # (scheduled offset, latency, code)
    lock = threading.Lock()

    def one(scheduled: float) -> None:
        try:
            outcome, _ = eap_client.authenticate(
                cfg["host"], cfg["port"], cfg["secret"].encode(), ca_file=cfg["ca"],
                cert_file=cfg["cert"], key_file=cfg["key"], identity=b"radius-probe",
                tls="1.2", timeout=5.0, retries=0)
            code = outcome.reply_code if outcome.reply_code is not None else -1
        except Exception:  # noqa: BLE001 - timeouts count as failures
            code = -1
        latency = time.monotonic() - scheduled
        with lock:
            results.append((scheduled - start, latency, code))

    pool = ThreadPoolExecutor(32)
    start = time.monotonic() + 0.05
    n = int(rate * secs)
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pool.submit(one, scheduled)
    pool.shutdown(wait=True)
    json.dump({"start": start, "results": results}, sys.stdout)
    return 0


def run_probe(radius: dict, rate: float, secs: float) -> subprocess.Popen:
    cfg = {k: radius[k] for k in ("host", "port", "secret", "ca", "cert", "key")}
    cfg.update(rate=rate, secs=secs)
    return subprocess.Popen([sys.executable, __file__, "--probe", json.dumps(cfg)],
                            stdout=subprocess.PIPE, cwd=ROOT)


@dataclass
class ProbeResult:
    label: str
    latencies: list[float]
    failures: int
    cpu_ms: float
    seconds: float

    def line(self, rate: float) -> str:
        return (f"radius {self.label:<26} {rate:g} auths/s n={len(self.latencies):<4} "
                f"p50 {pct(self.latencies, 50) * 1000:6.1f} ms  p95 "
                f"{pct(self.latencies, 95) * 1000:6.1f} ms  "
                f"max {max(self.latencies, default=0) * 1000:6.1f} ms"
                f"  failures {self.failures}  certgate CPU {self.cpu_ms / self.seconds / 10:.0f}%")


def collect_probe(proc: subprocess.Popen, label: str, window: tuple[float, float] | None,
                  cpu: float, seconds: float) -> ProbeResult:
    out, _ = proc.communicate(timeout=120)
    data = json.loads(out)
    lat, fails = [], 0
    for offset, latency, code in data["results"]:
        t = data["start"] + offset
        if window is not None and not (window[0] <= t and t + latency <= window[1]):
            continue  # only authentications entirely inside the burst
        if code == 2:  # Access-Accept
            lat.append(latency)
        else:
            fails += 1
    return ProbeResult(label, lat, fails, cpu, seconds)


def radius_idle(server: Server, radius: dict, rate: float, secs: float) -> ProbeResult:
    c0, t0 = cpu_ms(server.pid), time.monotonic()
    proc = run_probe(radius, rate, secs)
    proc.wait(secs + 60)
    return collect_probe(proc, "idle", None, cpu_ms(server.pid) - c0, time.monotonic() - t0)


def radius_burst(server: Server, radius: dict, rate: float, secs: float, phase: str,
                 items: list[Enrollment], conc: int, label: str,
                 during: Callable[[], None] | None = None) -> tuple[ProbeResult, LoadResult]:
    """The certgate burst starts first, the probe 0.5 s later; the burst stops when the probe
    ends; only authentications that started and ended inside the burst count."""
    stop_event = threading.Event()
    box: dict[str, LoadResult] = {}
    c0 = cpu_ms(server.pid)

    def burst() -> None:
        box["r"] = fire(server, phase, items, conc, secs + 5, full=False, stop_event=stop_event)
        box["end"] = time.monotonic()  # type: ignore[assignment]

    t = threading.Thread(target=burst)
    b0 = time.monotonic()
    t.start()
    time.sleep(0.5)
    proc = run_probe(radius, rate, secs)
    if during is not None:
        during()
    proc.wait(secs + 60)
    stop_event.set()
    t.join()
    end = min(box["end"], time.monotonic())  # type: ignore[arg-type]
    load = box["r"]
    probe = collect_probe(proc, label, (b0, box["end"]), cpu_ms(server.pid) - c0,  # type: ignore[arg-type]
                          end - b0)
    return probe, load


# -- profile ---------------------------------------------------------------------------------


def py_spy() -> str | None:
    cand = Path(sys.executable).parent / "py-spy"
    return str(cand) if cand.exists() else shutil.which("py-spy")


def profile_burst(server: Server, radius: dict, rate: float, secs: float, items: list[Enrollment],
                  conc: int, out: Path, log: Callable[[str], None]) -> tuple[ProbeResult, LoadResult] | None:
    spy = py_spy()
    if spy is None:
        log("profile: py-spy not found (.venv/bin/pip install py-spy)")
        return None
    raw = out / "certgate-burst.pyspy.txt"
    holder: dict[str, subprocess.Popen] = {}

    def during() -> None:
        holder["p"] = subprocess.Popen(
            [spy, "record", "--pid", str(server.pid), "--duration", str(int(secs)), "--rate", "250",
             "--threads", "--gil", "--format", "raw", "--output", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    res = radius_burst(server, radius, rate, secs, "rsa_prof", items, conc,
                       "during burst (py-spy)", during)
    p = holder.get("p")
    if p is not None:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            stop(p)
    if raw.exists():
        summarize_profile(raw, out, log)
    else:
        log("profile: py-spy wrote nothing: " + (p.stderr.read().decode()[-300:] if p else ""))
    return res


def summarize_profile(raw: Path, out: Path, log: Callable[[str], None]) -> None:
    """Collapsed stacks -> per thread share of GIL-holding samples, and the top own frames of
    the event-loop thread (the first frame in our packages, counted inclusively)."""
    threads: dict[str, int] = {}
    loop_frames: dict[str, int] = {}
    loop_total = 0
    ours = ("certgate/", "enrollment/", "radius/", "revocation/", "pki/")
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0]
        tname = "loop" if "MainThread" in thread or "main" in thread.lower() else \
            ("scep-executor" if "scep" in thread else "other:" + thread[:40])
        threads[tname] = threads.get(tname, 0) + n
        if tname != "loop":
            continue
        loop_total += n
        seen = set()
        for f in frames[1:]:
            if any(p in f for p in ours) or "site-packages/" in f:
                key = f.split(" (")[0] + " (" + f.split(" (")[-1].split("/")[-1]
                if key not in seen:
                    seen.add(key)
                    loop_frames[key] = loop_frames.get(key, 0) + n
    total = sum(threads.values()) or 1
    lines = ["GIL-holding samples per thread: " + ", ".join(
        f"{k} {v * 100 / total:.0f}%" for k, v in sorted(threads.items(), key=lambda kv: -kv[1]))]
    lines.append(f"event-loop thread, inclusive share of its GIL-holding samples ({loop_total}):")
    for k, v in sorted(loop_frames.items(), key=lambda kv: -kv[1])[:25]:
        lines.append(f"  {v * 100 / max(loop_total, 1):5.1f}%  {k}")
    (out / "profile-summary.txt").write_text("\n".join(lines) + "\n")
    for line in lines[:12]:
        log("profile: " + line)


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="enrollments per phase (default 300)")
    ap.add_argument("--conc", type=int, default=4)
    ap.add_argument("--secs", type=float, default=12.0, help="max seconds per phase (<= 15)")
    ap.add_argument("--rate", type=float, default=20.0, help="RADIUS auths/s")
    ap.add_argument("--radius-secs", type=float, default=8.0)
    ap.add_argument("--profile", action="store_true", help="py-spy a second burst")
    ap.add_argument("--variant", default="none",
                    help="run certgate under bench/scep_serve_variant.py with these candidate "
                         "fixes (switch1ms, workers1; comma-separated)")
    ap.add_argument("--scep-workers", type=int, default=None,
                    help="[scep] workers for certgate (default: the config default, 2 "
                         "processes; 0 = SCEP crypto in threads, the pre-process-pool layout)")
    ap.add_argument("--radius-only", action="store_true",
                    help="only the RADIUS idle/burst phases (e.g. to compare --variant runs)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        return probe_main(args)
    if not (0 < args.secs <= 15 and 0 < args.radius_secs <= 13):
        ap.error("--secs must be in (0, 15], --radius-secs in (0, 13]")
    if shutil.which("scepserver") is None:
        print("scep_load: scepserver not installed (apt-get install scep)", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="certgate-bench-scep-out."))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="certgate-bench-scep."))
    summary: list[str] = []

    def log(msg: str) -> None:
        print(f"# {msg}", file=sys.stderr, flush=True)

    def emit(line: str) -> None:
        print(line, flush=True)
        summary.append(line)

    cg = sc = None
    failures = 0
    try:
        burst_n = int(min(args.n * 3, 900))
        keys = client_keys(max(args.n, burst_n), log)
        cg, radius = start_certgate(work, log, args.variant, args.scep_workers)
        sc = start_scepserver(work, log)
        if args.variant != "none":
            emit(f"# certgate variant: {args.variant} (bench/scep_serve_variant.py)")
        if args.scep_workers is not None:
            emit(f"# certgate [scep] workers = {args.scep_workers}")
        emit(f"# loadavg at start: {Path('/proc/loadavg').read_text().split()[:3]} on "
             f"{os.cpu_count()} CPUs (other busy processes skew every figure)")
        log(f"certgate pid {cg.pid} http {cg.port}; scepserver pid {sc.pid} port {sc.port}; "
            f"{os.cpu_count()} CPUs")
        t0 = time.monotonic()
        prepared = {("certgate", "rsa_burst"): prepare(cg, "rsa_burst", keys[:burst_n],
                                                        radius["token"])}
        compare = () if args.radius_only else ("rsa_pkiop", "rsa_full")
        for phase in compare:
            for server in (cg, sc):
                prepared[(server.name, phase)] = prepare(
                    server, phase, keys[:args.n], radius["token"] if server is cg else None)
        if not args.radius_only:
            prepared[("certgate", "ecra_pkiop")] = prepare(cg, "ecra_pkiop", keys[:args.n],
                                                           radius["token"])
        if args.profile:
            prepared[("certgate", "rsa_prof")] = prepare(cg, "rsa_prof", keys[:burst_n],
                                                         radius["token"])
        log(f"challenges + pkiMessages prepared in {time.monotonic() - t0:.1f}s")

        # warm-up: one enrollment each (imports, first SQLite write, Go runtime)
        for server in (cg, sc):
            w = prepare(server, "rsa_warm", keys[-3:], radius["token"] if server is cg else None)
            fire(server, "rsa_warm", w, 1, 10, full=False)
        time.sleep(0.5)

        results: list[LoadResult] = []
        for phase in compare:
            full = phase == "rsa_full"
            for server in (cg, sc):
                r = fire(server, phase, prepared[(server.name, phase)], args.conc, args.secs, full)
                results.append(r)
                emit(r.line(args.conc))
                if r.threads:
                    emit(r.thread_line())
                time.sleep(0.5)
        if not args.radius_only:
            r = fire(cg, "ecra_pkiop", prepared[("certgate", "ecra_pkiop")], args.conc, args.secs,
                     False)
            results.append(r)
            emit(r.line(args.conc) + "  (EC P-256 CA + RSA-2048 RA, certgate's default)")
            if r.threads:
                emit(r.thread_line())

        time.sleep(1.0)
        idle = radius_idle(cg, radius, args.rate, args.radius_secs)
        emit(idle.line(args.rate))
        busy, load = radius_burst(cg, radius, args.rate, args.radius_secs, "rsa_burst",
                                  prepared[("certgate", "rsa_burst")], args.conc,
                                  f"during SCEP burst c={args.conc}")
        results.append(load)
        emit(busy.line(args.rate) + f"  (burst {load.rate:.1f} enroll/s, "
                                    f"{load.cpu_per:.2f} ms/enroll, failures {load.done - load.ok})")
        ratio = pct(busy.latencies, 95) / pct(idle.latencies, 95)
        emit(f"radius p95 burst/idle = {ratio:.2f}x (target <= 2x: "
             f"{'met' if ratio <= 2 else 'MISSED'})")
        by = {(r.server, r.phase): r for r in results}
        for phase in compare:
            a, b = by[("certgate", phase)], by[("scepserver", phase)]
            emit(f"cpu   {phase:<10} certgate {a.cpu_per:.2f} / scepserver {b.cpu_per:.2f} ms per "
                 f"enrollment = {a.cpu_per / b.cpu_per:.2f}x (target <= 1x, aim 0.5x: "
                 f"{'met' if a.cpu_per <= b.cpu_per else 'MISSED'})")
        if args.profile:
            res = profile_burst(cg, radius, args.rate, args.radius_secs,
                                prepared[("certgate", "rsa_prof")], args.conc, out, log)
            if res is not None:
                emit(res[0].line(args.rate) + "  (rates under the profiler: indicative only)")
                results.append(res[1])
        failures = sum(r.done - r.ok for r in results) + idle.failures + busy.failures
        for r in results:
            if r.failures:
                log(f"{r.server} {r.phase} failures: {r.failures}")
    finally:
        stop(cg.proc if cg else None)
        stop(sc.proc if sc else None)
        for name in ("certgate-serve.log", "scepserver.log"):
            if (work / name).exists():
                shutil.copy(work / name, out / name)
        (out / "summary.txt").write_text("\n".join(summary) + "\n")
        if args.keep:
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        log(f"results in {out}")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
