"""Soak benchmark (issue #10): a mixed load against a real `certgate serve` for N minutes.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate OPS_PER_S] [--probe-secs 30]
                                   [--warmup-minutes 1] [--max-rss-growth-mib 16]
                                   [--fd-slack 3] [--out DIR] [--keep]

Everything runs on 127.0.0.1 in a temp dir; the server is started here and stopped by PID.

Set-up  tests/support.write_config plus a group `soak` (certgate's default SCEP layout: EC
        P-256 CA + RSA-2048 RA); `certgate init`; `certgate certs issue` of two staff
        certificates for EAP-TLS (`eap-ok`, and `eap-revoked`, revoked through the admin API
        once the server is up); `certgate serve`; RSA-2048 client keys for SCEP from
        bench/scep_load.py's cache (reused round-robin: every enrollment has its own
        one-time challenge and CN, so a reused key is a new transaction for the server).
Mix     one pattern of 20 operations, repeated: 6 `eap` (radius.client, TLS 1.2 full
        handshake, must be Access-Accept), 1 `eapol` (wpa_supplicant's eapol_test, its own
        Calling-Station-Id, must print SUCCESS), 1 `eap_revoked` (must be Access-Reject),
        3 `scep` (POST a one-time challenge to the admin API, then PKIOperation; the CertRep
        is verified and must be SUCCESS with a certificate for our key), 2 `revoke` (the
        oldest enrolled certificate through POST /api/v1/certificates/<serial>/revoke, must
        be 200 revoked/changed), 5 `ocsp` (a random enrolled certificate; the signed answer
        must be GOOD, or REVOKED once its revocation was acknowledged), 2 `crl`
        (GET /crl/delta/soak.crl, /crl/base/soak.crl when the delta names a new base, and
        /crl/soak.crl: signatures by the CA, nextUpdate in the future, every revocation
        acknowledged before the request in base + delta, and in the complete CRL every one
        acknowledged FULL_CRL_STALENESS before). Each HTTP operation opens and
        closes its own connection. Anything else is an error of that operation.
Rate    unless --rate: --probe-secs closed loop with 8 workers (also the warm-up) gives the
        maximum rate of the mix on this box; the soak runs open loop at 70 % of it,
        latency measured from each operation's scheduled start (no coordinated omission).
Sample  every minute: RSS and open fds of the server PID (/proc; the SCEP worker processes'
        RSS separately), server CPU %, from /metrics certgate_eap_sessions_active (RADIUS
        conversations) and certgate_radius_buffered_bytes (last value and minute max of a
        5 s sampling), certgate_http_connections; per operation count, errors, p50/p95.
Verdict RSS growth from the first minute after --warmup-minutes to the last; fd growth
        idle-after vs idle-before (both taken with no load, after the rate probe and after
        the soak); conversations and buffered bytes back to 0 within 40 s; errors = failed
        operations + ERROR/Traceback lines in the server log. Exit 1 if RSS grew more than
        --max-rss-growth-mib, fds more than --fd-slack, conversations did not drain, or any
        error; 2 on set-up errors. Table on stdout (markdown), everything in OUT/soak.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import scep_load  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs7  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402
from cryptography.x509.oid import AttributeOID, NameOID  # noqa: E402

from enrollment import scep_client  # noqa: E402
from enrollment.scep_types import PKIStatus  # noqa: E402
from radius.client import udp as eap_client  # noqa: E402
from tests.support import SECRET, TOKEN, ServerProcess, certgate, write_config  # noqa: E402

GROUP = "soak"
PATTERN = (["eap"] * 6 + ["eapol"] + ["eap_revoked"] + ["scep"] * 3 + ["revoke"] * 2
           + ["ocsp"] * 5 + ["crl"] * 2)
OPS = ("eap", "eapol", "eap_revoked", "scep", "revoke", "ocsp", "crl")
FULL_CRL_STALENESS = 7.0  # s: [revocation] full_crl_interval (5) + signing, with margin
random.Random(10).shuffle(PATTERN)
PROBE_WORKERS = 8
SOAK_RATE_FACTOR = 0.7
MAX_BACKLOG = 200  # operations scheduled but not started: beyond this the box cannot keep up
CLK_TCK = os.sysconf("SC_CLK_TCK")


class OpError(Exception):
    """An operation's answer was not the expected one."""


# -- /proc and /metrics ---------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_s(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    f = text[text.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def workers_rss_kib(pid: int) -> int:
    total = 0
    for child in scep_load.children(pid):
        with contextlib.suppress(OSError):
            total += rss_kib(child)
    return total


METRIC_RE = re.compile(r"^(certgate_eap_sessions_active|certgate_radius_buffered_bytes|"
                       r"certgate_http_connections) ([0-9.e+-]+)$", re.M)


def scrape(addr: tuple[str, int]) -> dict[str, float]:
    status, body = http_request(addr, "GET", "/metrics")
    if status != 200:
        raise OpError(f"/metrics http {status}")
    return {m.group(1): float(m.group(2)) for m in METRIC_RE.finditer(body.decode())}


def http_request(addr: tuple[str, int], method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
    """One request on its own connection (closed after)."""
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# -- the server and the client side ------------------------------------------------------------


@dataclass
class Cert:
    cert: x509.Certificate
    revoke_sent: float | None = None   # monotonic
    revoke_acked: float | None = None


@dataclass
class Soak:
    server: ServerProcess
    work: Path
    root_ca: str
    ok_chain: str
    ok_key: str
    bad_chain: str
    bad_key: str
    keys: list
    recipient: x509.Certificate | None = None
    ca: x509.Certificate | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    certs: list[Cert] = field(default_factory=list)
    to_revoke: deque = field(default_factory=deque)
    counter: itertools.count = field(default_factory=itertools.count)
    base: tuple[int, set[int]] | None = None  # (number, serials) of the base CRL fetched

    @property
    def http(self) -> tuple[str, int]:
        host, port = self.server.http.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    # -- operations: return None or raise ------------------------------------------------

    def _eap(self, chain, key, identity: bytes) -> int | None:  # noqa: ANN001
        """One EAP-TLS 1.2 authentication (radius.client); the RADIUS code, None if none.
        Each one is a different station (Calling-Station-Id), as on a campus: one station
        holds at most [radius] max_conversations_per_station (4) conversations at once, and
        at this rate one shared MAC would exceed that (its oldest conversation ended)."""
        n = next(self.counter)
        station = "02-5a-" + "-".join(f"{b:02x}" for b in n.to_bytes(4, "big"))
        outcome, _ = eap_client.authenticate(*self.server.radius, SECRET.encode(),
                                             ca_file=str(self.root_ca), cert_file=str(chain),
                                             key_file=str(key), identity=identity, tls="1.2",
                                             timeout=5.0, retries=0, calling_station=station)
        return outcome.reply_code

    def op_eap(self) -> None:
        code = self._eap(self.ok_chain, self.ok_key, b"eap-ok")
        if code != 2:
            raise OpError(f"RADIUS code {code}, expected Access-Accept")

    def op_eap_revoked(self) -> None:
        code = self._eap(self.bad_chain, self.bad_key, b"eap-revoked")
        if code != 3:
            raise OpError(f"RADIUS code {code}, expected Access-Reject")

    def op_eapol(self) -> None:
        n = next(self.counter)
        mac = f"02:00:00:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"
        host, port = self.server.radius
        r = subprocess.run(["eapol_test", "-c", str(self.work / "eapol.conf"), "-a", host,
                            "-p", str(port), "-s", SECRET, "-t", "8", "-M", mac,
                            "-N", "4:x:0x7f000001", "-N", "30:s:ssid-soak"],
                           capture_output=True, text=True, timeout=20)
        if r.returncode != 0 or "SUCCESS" not in r.stdout:
            tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
            raise OpError(f"eapol_test exit {r.returncode}: {tail[0][:80]}")

    def op_scep(self) -> None:
        n = next(self.counter)
        key = self.keys[n % len(self.keys)]
        status, body = http_request(
            self.http, "POST", f"/api/v1/groups/{GROUP}/challenges", b'{"ttl": "1h"}',
            {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        if status != 201:
            raise OpError(f"challenge API http {status}")
        challenge = json.loads(body)["challenge"]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"soak-{n}")])
        csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
               .add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
               .sign(key, hashes.SHA256()))
        signer = scep_client.self_signed_signer(key, subject, dt.datetime.now(dt.UTC))
        req = scep_client.build_pkcs_req(csr, signer, key, self.recipient,
                                         options=scep_load.OPTIONS)
        status, reply = http_request(self.http, "POST",
                                     f"/scep/{GROUP}/pkiclient.exe?operation=PKIOperation",
                                     req.der, {"Content-Type": "application/x-pki-message"})
        if status != 200:
            raise OpError(f"PKIOperation http {status}")
        rep = scep_client.parse_cert_rep(reply, signer, key, ra_cert=self.recipient,
                                         request=req)
        if rep.status is not PKIStatus.SUCCESS:
            raise OpError(f"CertRep {rep.status.name} {rep.fail_info_text}")
        mine = [c for c in rep.certificates if c.public_key() == key.public_key()]
        if not mine:
            raise OpError("CertRep without a certificate for our key")
        entry = Cert(mine[0])
        with self.lock:
            self.certs.append(entry)
            self.to_revoke.append(entry)

    def op_revoke(self) -> str | None:
        with self.lock:
            if not self.to_revoke:
                return "skipped"  # nothing enrolled yet
            entry = self.to_revoke.popleft()
            entry.revoke_sent = time.monotonic()
        status, body = http_request(
            self.http, "POST", f"/api/v1/certificates/{entry.cert.serial_number:x}/revoke",
            b'{"reason": "keyCompromise", "comment": "soak"}',
            {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        if status != 200:
            raise OpError(f"revoke http {status}")
        data = json.loads(body)
        if data.get("status") != "revoked" or data.get("changed") is not True:
            raise OpError(f"revoke answered status={data.get('status')} "
                          f"changed={data.get('changed')}")
        entry.revoke_acked = time.monotonic()
        return None

    def op_ocsp(self) -> None:
        with self.lock:
            entry = random.choice(self.certs)
        sent = time.monotonic()
        acked, in_flight = entry.revoke_acked, entry.revoke_sent
        der = (ocsp.OCSPRequestBuilder().add_certificate(entry.cert, self.ca, hashes.SHA1())
               .build().public_bytes(serialization.Encoding.DER))
        status, body = http_request(self.http, "POST", "/ocsp", der,
                                    {"Content-Type": "application/ocsp-request"})
        if status != 200:
            raise OpError(f"OCSP http {status}")
        resp = ocsp.load_der_ocsp_response(body)
        if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise OpError(f"OCSP {resp.response_status.name}")
        self.ca.public_key().verify(resp.signature, resp.tbs_response_bytes,
                                    ec.ECDSA(resp.signature_hash_algorithm))
        if resp.serial_number != entry.cert.serial_number:
            raise OpError("OCSP answer for another serial")
        got = resp.certificate_status
        if acked is not None and acked < sent:
            want = {ocsp.OCSPCertStatus.REVOKED}
        elif in_flight is None or in_flight > sent:
            want = {ocsp.OCSPCertStatus.GOOD}
        else:  # revocation in flight while we asked: either answer is right
            want = {ocsp.OCSPCertStatus.GOOD, ocsp.OCSPCertStatus.REVOKED}
        if got not in want:
            raise OpError(f"OCSP {got.name}, expected {'/'.join(w.name for w in want)}")

    def _fetch_crl(self, path: str) -> x509.CertificateRevocationList:
        status, body = http_request(self.http, "GET", path)
        if status != 200:
            raise OpError(f"CRL {path} http {status}")
        crl = x509.load_der_x509_crl(body)
        if not crl.is_signature_valid(self.ca.public_key()):
            raise OpError(f"CRL {path} signature invalid")
        if crl.next_update_utc is None or crl.next_update_utc <= dt.datetime.now(dt.UTC):
            raise OpError(f"CRL {path} nextUpdate not in the future")
        return crl

    def op_crl(self) -> None:
        """A relying party using deltas (base cached by number + delta) must see every
        revocation acknowledged before the request; the complete CRL every one acknowledged
        FULL_CRL_STALENESS before (its bound: [revocation] full_crl_interval + signing)."""
        sent = time.monotonic()
        with self.lock:
            acked = [(c.cert.serial_number, c.revoke_acked) for c in self.certs
                     if c.revoke_acked is not None]
        must = {serial for serial, at in acked if at < sent}
        must_full = {serial for serial, at in acked if at < sent - FULL_CRL_STALENESS}
        delta = self._fetch_crl(f"/crl/delta/{GROUP}.crl")
        base_number = delta.extensions.get_extension_for_class(
            x509.DeltaCRLIndicator).value.crl_number
        if self.base is None or self.base[0] != base_number:
            base = self._fetch_crl(f"/crl/base/{GROUP}.crl")
            number = base.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            self.base = (number, {r.serial_number for r in base})
        if self.base[0] < base_number:
            raise OpError(f"base CRL {self.base[0]} older than the delta's base {base_number}")
        missing = must - (self.base[1] | {r.serial_number for r in delta})
        if missing:
            raise OpError(f"base + delta CRL miss {len(missing)} acknowledged revocation(s)")
        full = self._fetch_crl(f"/crl/{GROUP}.crl")
        missing = must_full - {r.serial_number for r in full}
        if missing:
            raise OpError(f"complete CRL misses {len(missing)} revocation(s) acknowledged "
                          f"more than {FULL_CRL_STALENESS} s before")

    def run(self, op: str) -> str | None:
        return getattr(self, f"op_{op}")()


def setup(work: Path, n_keys: int, log) -> Soak:
    cg = work / "certgate"
    config = write_config(cg, extra=f"\n[groups.{GROUP}]\nvlan = 60\nvalidity_days = 30\n")
    certgate("init", config=config)
    for cn in ("eap-ok", "eap-revoked"):
        certgate("certs", "issue", "--group", "staff", "--cn", cn, "--out", str(cg / "clients"),
                 config=config)
    keys = scep_load.client_keys(n_keys, log)
    server = ServerProcess(config, work / "certgate-serve.log").start()
    pki = cg / "var" / "pki"
    c = cg / "clients"
    s = Soak(server, work, str(pki / "root.crt"), str(c / "eap-ok.chain.pem"),
             str(c / "eap-ok.key"), str(c / "eap-revoked.chain.pem"),
             str(c / "eap-revoked.key"), keys)
    (work / "eapol.conf").write_text(
        "network={\n\tkey_mgmt=WPA-EAP\n\teap=TLS\n\tidentity=\"eap-ok\"\n"
        f"\tca_cert=\"{s.root_ca}\"\n\tdomain_suffix_match=\"radius.certgate.test\"\n"
        f"\tclient_cert=\"{s.ok_chain}\"\n\tprivate_key=\"{s.ok_key}\"\n"
        "\tphase1=\"tls_disable_tlsv1_0=1 tls_disable_tlsv1_1=1 tls_disable_tlsv1_3=1\"\n}\n")
    # the revoked device
    bad = x509.load_pem_x509_certificate(Path(s.bad_chain).read_bytes())
    status, body = http_request(
        s.http, "POST", f"/api/v1/certificates/{bad.serial_number:x}/revoke",
        b'{"reason": "keyCompromise"}', {"Authorization": f"Bearer {TOKEN}"})
    if status != 200:
        raise RuntimeError(f"revoking eap-revoked: http {status} {body[:200]!r}")
    # SCEP recipient (RA) and the group CA
    status, body = http_request(s.http, "GET", f"/scep/{GROUP}/pkiclient.exe?operation=GetCACert")
    if status != 200:
        raise RuntimeError(f"GetCACert: http {status}")
    s.recipient = scep_load.recipient_from_ca_certs(body, "application/x-x509-ca-ra-cert")
    for cert in pkcs7.load_der_pkcs7_certificates(body):
        with contextlib.suppress(x509.ExtensionNotFound):
            if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                s.ca = cert
    if s.ca is None:
        raise RuntimeError("GetCACert: no CA certificate")
    for op in OPS:  # every operation once, so the pattern never starts on an empty list
        if s.run(op) is not None:
            raise RuntimeError(f"set-up {op} skipped")
    return s


# -- load ---------------------------------------------------------------------------------------


@dataclass
class Sample:
    op: str
    t: float          # scheduled (open loop) or start (closed loop), monotonic
    latency: float
    error: str | None


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: list[Sample] = []
        self.skipped = 0

    def record(self, op: str, t: float, soak: Soak) -> None:
        error = None
        try:
            if soak.run(op) == "skipped":
                with self.lock:
                    self.skipped += 1
                return
        except Exception as exc:  # noqa: BLE001 - counted per operation
            error = f"{type(exc).__name__}: {exc}"[:100]
        latency = time.monotonic() - t
        with self.lock:
            self.samples.append(Sample(op, t, latency, error))

    def take(self) -> list[Sample]:
        with self.lock:
            out, self.samples = self.samples, []
        return out


def closed_loop(soak: Soak, secs: float, workers: int) -> tuple[float, list[Sample]]:
    rec = Recorder()
    deadline = time.monotonic() + secs
    ops = itertools.cycle(PATTERN)
    olock = threading.Lock()

    def worker() -> None:
        while time.monotonic() < deadline:
            with olock:
                op = next(ops)
            rec.record(op, time.monotonic(), soak)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples = rec.take()
    return len(samples) / (time.monotonic() - t0), samples


def summarize(samples: list[Sample], seconds: float) -> dict:
    per: dict[str, dict] = {}
    for op in OPS:
        mine = [s for s in samples if s.op == op]
        lat = [s.latency for s in mine if s.error is None]
        errors: dict[str, int] = {}
        for s in mine:
            if s.error is not None:
                errors[s.error] = errors.get(s.error, 0) + 1
        per[op] = {"n": len(mine), "errors": sum(errors.values()), "error_kinds": errors,
                   "p50_ms": round(scep_load.pct(lat, 50) * 1000, 1) if lat else None,
                   "p95_ms": round(scep_load.pct(lat, 95) * 1000, 1) if lat else None}
    return {"ops": len(samples), "ops_per_s": round(len(samples) / seconds, 2),
            "errors": sum(p["errors"] for p in per.values()), "per_op": per}


def idle_state(soak: Soak) -> dict:
    pid = soak.server.proc.pid
    m = scrape(soak.http)
    return {"rss_mib": round(rss_kib(pid) / 1024, 1), "fds": fd_count(pid),
            "workers_rss_mib": round(workers_rss_kib(pid) / 1024, 1),
            "conversations": m.get("certgate_eap_sessions_active"),
            "buffered_bytes": m.get("certgate_radius_buffered_bytes"),
            "http_connections": m.get("certgate_http_connections")}


def drain(soak: Soak, timeout: float = 40.0) -> tuple[dict, float]:
    """Idle state once conversations and buffers are back to 0 (or at `timeout`)."""
    t0 = time.monotonic()
    while True:
        state = idle_state(soak)
        if (state["conversations"] == 0 and state["buffered_bytes"] == 0) \
                or time.monotonic() - t0 > timeout:
            return state, time.monotonic() - t0
        time.sleep(1.0)


def row_line(r: dict) -> str:
    cells = [str(r["minute"]), f"{r['ops_per_s']:.1f}", f"{r['rss_mib']:.1f}",
             f"{r['workers_rss_mib']:.1f}", str(r["fds"]), f"{r['cpu_pct']:.0f}",
             f"{r['conversations']:g}/{r['conversations_max']:g}",
             f"{r['buffered_kib_max']:.0f}", str(r["errors"])]
    for op in OPS:
        p = r["per_op"][op]
        cells.append("-" if p["p50_ms"] is None else f"{p['p50_ms']:.0f}/{p['p95_ms']:.0f}")
    return "| " + " | ".join(cells) + " |"


TABLE_HEAD = ("| min | ops/s | RSS MiB | SCEP workers RSS MiB | fds | server CPU % | conv last/max "
              "| buffered KiB max | errors | " + " | ".join(f"{op} p50/p95 ms" for op in OPS)
              + " |\n|" + "---|" * (9 + len(OPS)))


def soak_loop(soak: Soak, rate: float, minutes: int, emit) -> tuple[list[dict], int]:
    """Open loop at `rate` ops/s for `minutes`; one row per minute. Returns (rows, overload)."""
    rec = Recorder()
    pool = ThreadPoolExecutor(64)
    pid = soak.server.proc.pid
    start = time.monotonic() + 0.1
    stop = threading.Event()
    backlog = [0]
    overload = [0]
    blk = threading.Lock()

    def scheduler() -> None:
        ops = itertools.cycle(PATTERN)
        for i in itertools.count():
            t = start + i / rate
            if t >= start + minutes * 60 or stop.is_set():
                return
            delay = t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            op = next(ops)
            with blk:
                if backlog[0] >= MAX_BACKLOG:
                    overload[0] += 1
                    continue
                backlog[0] += 1

            def job(op: str = op, t: float = t) -> None:
                with blk:
                    backlog[0] -= 1
                rec.record(op, t, soak)

            pool.submit(job)

    sched = threading.Thread(target=scheduler)
    sched.start()
    rows = []
    cpu0, t_prev = cpu_s(pid), start
    try:
        for minute in range(1, minutes + 1):
            end = start + minute * 60
            conv: list[float] = []
            buf: list[float] = []
            http_conn: list[float] = []
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(5.0, left))
                try:
                    m = scrape(soak.http)
                except (OSError, OpError) as exc:
                    emit(f"# /metrics scrape failed: {exc}")
                    continue
                conv.append(m.get("certgate_eap_sessions_active", float("nan")))
                buf.append(m.get("certgate_radius_buffered_bytes", float("nan")))
                http_conn.append(m.get("certgate_http_connections", float("nan")))
            now = time.monotonic()
            cpu1 = cpu_s(pid)
            samples = rec.take()
            s = summarize(samples, now - t_prev)
            row = {"minute": minute, **s, "rss_mib": round(rss_kib(pid) / 1024, 1),
                   "workers_rss_mib": round(workers_rss_kib(pid) / 1024, 1),
                   "fds": fd_count(pid), "cpu_pct": round((cpu1 - cpu0) / (now - t_prev) * 100),
                   "conversations": conv[-1] if conv else float("nan"),
                   "conversations_max": max(conv, default=float("nan")),
                   "buffered_kib_max": max(buf, default=float("nan")) / 1024,
                   "http_connections_max": max(http_conn, default=float("nan")),
                   "overload": overload[0], "skipped": rec.skipped,
                   "loadavg": Path("/proc/loadavg").read_text().split()[:3]}
            cpu0, t_prev = cpu1, now
            rows.append(row)
            emit(row_line(row))
            for op, p in s["per_op"].items():
                for kind, n in p["error_kinds"].items():
                    emit(f"#   minute {minute} {op} error x{n}: {kind}")
    finally:
        stop.set()
        sched.join()
        pool.shutdown(wait=True)
    late = rec.take()  # operations that finished after the last minute's cut
    if late and rows:
        extra = summarize(late, 1.0)
        rows[-1]["late_ops"] = extra["ops"]
        rows[-1]["late_errors"] = extra["errors"]
        rows[-1]["errors"] += extra["errors"]
    return rows, overload[0]


def server_log_errors(path: Path) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines()
            if " ERROR " in line or "Traceback" in line or " CRITICAL " in line]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--rate", type=float, help="ops/s of the mix (default: 70%% of the "
                    "measured maximum)")
    ap.add_argument("--probe-secs", type=float, default=30.0)
    ap.add_argument("--warmup-minutes", type=int, default=1)
    ap.add_argument("--max-rss-growth-mib", type=float, default=16.0)
    ap.add_argument("--fd-slack", type=int, default=3)
    ap.add_argument("--keys", type=int, default=64, help="RSA client keys for SCEP")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    if args.minutes < 1 or not 0 <= args.warmup_minutes < args.minutes:
        ap.error("--minutes >= 1 and 0 <= --warmup-minutes < --minutes")
    if shutil.which("eapol_test") is None:
        print("soak: eapol_test not installed (apt-get install eapoltest)", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="certgate-bench-soak-out."))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="certgate-bench-soak."))
    lines: list[str] = []

    def log(msg: str) -> None:
        print(f"# {msg}", file=sys.stderr, flush=True)

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    result: dict = {"argv": sys.argv[1:], "started": dt.datetime.now(dt.UTC).isoformat(),
                    "machine": f"{os.cpu_count()} CPU, {os.uname().release}",
                    "pattern": PATTERN, "nice": os.nice(0)}
    soak = None
    rc = 2
    try:
        try:
            soak = setup(work, args.keys, log)
        except Exception as exc:  # noqa: BLE001 - a set-up error, exit 2
            log(f"set-up failed: {type(exc).__name__}: {exc}")
            return 2
        pid = soak.server.proc.pid
        emit(f"# certgate serve pid {pid}; loadavg {Path('/proc/loadavg').read_text().split()[:3]}"
             f" on {os.cpu_count()} CPUs; nice {os.nice(0)}")
        probe = None
        if args.rate is None:
            max_rate, samples = closed_loop(soak, args.probe_secs, PROBE_WORKERS)
            probe = summarize(samples, args.probe_secs)
            rate = round(max_rate * SOAK_RATE_FACTOR, 1)
            emit(f"# rate probe: closed loop, {PROBE_WORKERS} workers, {args.probe_secs:g} s: "
                 f"{max_rate:.1f} ops/s max, {probe['errors']} errors -> soak at {rate} ops/s "
                 f"(70 %)")
        else:
            rate = args.rate
            emit(f"# soak at --rate {rate} ops/s")
        result.update(rate=rate, probe=probe)
        before, waited = drain(soak)
        emit(f"# idle before: {before} (after {waited:.0f} s)")
        emit(TABLE_HEAD)
        rows, overload = soak_loop(soak, rate, args.minutes, emit)
        after, waited = drain(soak)
        emit(f"# idle after:  {after} (after {waited:.0f} s)")
        log_errors = server_log_errors(soak.server.log_path)
        for line in log_errors[:10]:
            emit(f"# server log: {line[:200]}")
        base = rows[args.warmup_minutes]
        last = rows[-1]
        rss_growth = last["rss_mib"] - base["rss_mib"]
        fd_growth = after["fds"] - before["fds"]
        op_errors = sum(r["errors"] for r in rows)
        errors = op_errors + len(log_errors)
        drained = after["conversations"] == 0 and after["buffered_bytes"] == 0
        fail = []
        if rss_growth > args.max_rss_growth_mib:
            fail.append(f"RSS grew {rss_growth:.1f} MiB > {args.max_rss_growth_mib:g}")
        if fd_growth > args.fd_slack:
            fail.append(f"fds grew {fd_growth} > {args.fd_slack}")
        if not drained:
            fail.append("conversations/buffers not back to 0")
        if errors:
            fail.append(f"{errors} errors")
        if overload:
            fail.append(f"{overload} operations not started (backlog {MAX_BACKLOG})")
        verdict = (f"verdict: {'PASS' if not fail else 'FAIL'}: RSS {base['rss_mib']:.1f} -> "
                   f"{last['rss_mib']:.1f} MiB (minute {base['minute']} -> {last['minute']}, "
                   f"{rss_growth:+.1f} MiB, limit {args.max_rss_growth_mib:g}); fds idle "
                   f"{before['fds']} -> {after['fds']} ({fd_growth:+d}, per minute "
                   f"{rows[0]['fds']}..{last['fds']}); conversations idle "
                   f"{after['conversations']:g}, buffered {after['buffered_bytes']:g} B; errors "
                   f"{errors} ({op_errors} operations, {len(log_errors)} server log lines); "
                   f"{sum(r['ops'] for r in rows)} operations at {rate} ops/s"
                   + (f"; {'; '.join(fail)}" if fail else ""))
        emit(verdict)
        result.update(rows=rows, idle_before=before, idle_after=after, overload=overload,
                      server_log_errors=log_errors[:50], verdict=verdict, passed=not fail)
        rc = 0 if not fail else 1
    finally:
        if soak is not None:
            soak.server.stop()
            shutil.copy(soak.server.log_path, out / "certgate-serve.log")
        (out / "soak.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (out / "soak.txt").write_text("\n".join(lines) + "\n")
        if args.keep:
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        log(f"results in {out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
