"""Crash safety (issue #10): `certgate serve` killed with SIGKILL twice under load loses nothing.

While micromdm `scepclient` devices enroll (each with a fresh one-time challenge from the
admin API, retried with the same key, hence the same transactionID, until it succeeds)
and an admin revokes certificates already received, the server is killed -9 by its PID
at random moments and restarted on the same store. Afterwards every certificate a device
received is in the inventory (same serial, same certificate), each transaction has one
certificate, every acknowledged revocation is in the inventory, the served CRL and OCSP,
the store is intact, and the restarted server is ready and enrolls. SQLite and PostgreSQL.

The moments are drawn from a seeded random: set CERTGATE_CRASH_SEED to replay a run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import signal
import sqlite3
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support import TOKEN, ServerProcess, certgate, require_tool, write_config

pytestmark = pytest.mark.integration

LAB = """
[groups.lab]
vlan = 30
validity_days = 30
legacy_algorithms = true
"""
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
ENROLLERS = 3  # concurrent scepclient devices
KILLS = 2
REASONS = ("keyCompromise", "cessationOfOperation", "affiliationChanged", "superseded")
ATTEMPT_LIMIT = 60  # scepclient runs per device before giving up (bounded retries)
DEVICE_BUDGET = 45.0  # seconds one device may take, retries included


@dataclass
class Ledger:
    """What the peers were told: certificates received, revocations acknowledged."""

    received: dict[str, bytes] = field(default_factory=dict)  # serial hex -> DER
    txids: dict[str, str] = field(default_factory=dict)  # serial hex -> device directory
    revoked: dict[str, str] = field(default_factory=dict)  # serial hex -> reason (HTTP 200)
    unacknowledged: set[str] = field(default_factory=set)  # revoke calls that got no answer
    failures: list[str] = field(default_factory=list)  # devices that never got a certificate
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _request(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """POST/GET on loopback; (0, reason) when the server is not there (killed)."""
    req = urllib.request.Request(url, data=body, headers=AUTH, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError) as e:  # refused, reset, timed out mid-kill
        return 0, str(e).encode()


class Site:
    def __init__(self, base: Path, config: Path, rng: random.Random) -> None:
        self.base = base
        self.config = config
        self.rng = rng
        self.server = ServerProcess(config, base / "serve.log")
        self.pki = config.parent / "var" / "pki"
        ra = x509.load_pem_x509_certificate((self.pki / "groups/lab/ra.crt").read_bytes())
        self.ra_fingerprint = hashlib.sha256(ra.public_bytes(serialization.Encoding.DER)).hexdigest()
        self.ledger = Ledger()
        self.stop = threading.Event()  # no new devices
        self.abort = threading.Event()  # the test failed: give up retrying too
        self.pg_database: str | None = None

    # -- the peers ------------------------------------------------------------------------

    def challenge(self, cn: str, deadline: float) -> str:
        body = json.dumps({"subject": cn, "ttl": "10m"}).encode()
        while time.monotonic() < deadline:
            status, reply = _request(f"{self.server.http}/api/v1/groups/lab/challenges", body)
            if status == 201:
                return json.loads(reply)["challenge"]
            assert status in (0, 503), (status, reply)  # only "server not there" is expected
            time.sleep(0.1)
        raise AssertionError(f"no challenge for {cn} before the deadline")

    def scepclient(self, work: Path, cn: str, token: str | None) -> subprocess.CompletedProcess:
        work.mkdir(parents=True, exist_ok=True)
        cmd = ["scepclient", "-server-url", f"{self.server.http}/scep/lab/pkiclient.exe",
               "-private-key", str(work / "dev.key"), "-certificate", str(work / "dev.pem"),
               "-cn", cn, "-ca-fingerprint", self.ra_fingerprint]
        if token is not None:
            cmd += ["-challenge", token]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    def enroll(self, work: Path, cn: str) -> bytes | None:
        """One device: a challenge, then scepclient until it has a certificate (same key and
        transactionID on every retry). DER of what it received, None if it never did."""
        deadline = time.monotonic() + DEVICE_BUDGET
        token = self.challenge(cn, deadline)
        out = ""
        for attempt in range(ATTEMPT_LIMIT):
            if time.monotonic() > deadline or self.abort.is_set():
                break
            r = self.scepclient(work, cn, token)
            out = r.stdout + r.stderr
            pem = work / "dev.pem"
            if r.returncode == 0 and pem.exists():
                with self.ledger.lock:
                    self.ledger.retries += attempt
                return x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(
                    serialization.Encoding.DER)
            assert not pem.exists(), out
            time.sleep(0.1 + self.rng.random() * 0.2)
        with self.ledger.lock:
            self.ledger.failures.append(f"{cn}: {out[-500:]}")
        return None

    def enroller(self, index: int) -> None:
        for i in range(1000):  # bounded; ends at stop
            if self.stop.is_set():
                return
            cn = f"crash-{index}-{i}"
            der = self.enroll(self.base / "devices" / cn, cn)
            if der is not None:
                serial = format(x509.load_der_x509_certificate(der).serial_number, "x")
                with self.ledger.lock:
                    assert serial not in self.ledger.received, f"{serial} received twice"
                    self.ledger.received[serial] = der
                    self.ledger.txids[serial] = cn

    def revoker(self) -> None:
        rng = random.Random(self.rng.random())
        for _ in range(10_000):  # bounded; ends at stop
            if self.stop.wait(0.05 + rng.random() * 0.15):
                return
            with self.ledger.lock:
                candidates = sorted(set(self.ledger.received) - set(self.ledger.revoked))
            if len(candidates) <= len(self.ledger.revoked):  # keep about half active
                continue
            serial = rng.choice(candidates)
            reason = rng.choice(REASONS)
            status, reply = _request(f"{self.server.http}/api/v1/certificates/{serial}/revoke",
                                     json.dumps({"reason": reason}).encode())
            with self.ledger.lock:
                if status == 200:
                    answer = json.loads(reply)
                    assert answer["status"] == "revoked" and answer["serial"] == serial, answer
                    # a retry after a lost answer finds it revoked already, with the first reason
                    self.ledger.revoked[serial] = answer["reason"]
                    if answer["changed"]:
                        assert answer["reason"] == reason, answer
                else:
                    assert status in (0, 503), (status, reply)
                    self.ledger.unacknowledged.add(serial)

    def guarded(self, fn, *args) -> None:  # noqa: ANN001
        """A load thread: its assertion failures end up in the ledger, not on stderr."""
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            with self.ledger.lock:
                self.ledger.failures.append(f"{fn.__name__}: {exc!r}")

    # -- the crashes ----------------------------------------------------------------------

    def descendants(self, pid: int) -> set[int]:
        found, todo = set(), [pid]
        while todo:
            current = todo.pop()
            try:
                tasks = os.listdir(f"/proc/{current}/task")
            except FileNotFoundError:
                continue
            for task in tasks:
                try:
                    text = Path(f"/proc/{current}/task/{task}/children").read_text()
                except FileNotFoundError:
                    continue
                for child in map(int, text.split()):
                    if child not in found:
                        found.add(child)
                        todo.append(child)
        return found

    def kill9(self) -> set[int]:
        """SIGKILL the server by PID; returns its child processes (SCEP crypto workers)."""
        proc = self.server.proc
        assert proc is not None and proc.poll() is None, "the server died by itself"
        children = self.descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert self.server.stop() == -signal.SIGKILL
        return children

    def reap_orphans(self, children: set[int]) -> list[int]:
        """The crypto workers exit at EOF from the dead parent; any still alive after 10 s is
        killed by PID (they are ours) and reported."""
        deadline = time.monotonic() + 10
        alive = set(children)
        while alive and time.monotonic() < deadline:
            alive = {pid for pid in alive if _alive(pid)}
            time.sleep(0.05)
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        return sorted(alive)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _sqlite_integrity(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return ";".join(row[0] for row in db.execute("PRAGMA integrity_check"))


def _store_rows(backend: str, site: Site, pg) -> list[tuple[str, str | None, bytes]]:
    """(serial, transaction_id, DER) of every SCEP certificate, read from the store itself."""
    sql = "SELECT serial, transaction_id, pem FROM certificates WHERE source = 'scep'"
    if backend == "sqlite":
        path = site.config.parent / "var" / "certgate.sqlite"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = list(db.execute(sql))
    else:
        out = pg.psql("SELECT json_agg(json_build_array(serial, transaction_id, pem)) "
                      "FROM certificates WHERE source = 'scep'", database=site.pg_database)
        rows = [tuple(r) for r in json.loads(out or "[]") or []]
    return [(s, t, ssl.PEM_cert_to_DER_cert(p)) for s, t, p in rows]


def _ocsp(site: Site, serial: str) -> str:
    """What `openssl ocsp` says about `serial`: good / revoked / unknown (the responder takes
    one CertID per request)."""
    ca = site.pki / "groups/lab/ca.crt"
    r = subprocess.run(["openssl", "ocsp", "-issuer", str(ca), "-serial", f"0x{serial}",
                        "-url", f"{site.server.http}/ocsp/lab", "-CAfile", str(site.pki / "root.crt"),
                        "-VAfile", str(ca), "-no_nonce"], capture_output=True, text=True, timeout=30)
    text = r.stdout + r.stderr
    assert r.returncode == 0 and "Response verify OK" in text, text
    return text.split(f"0x{serial}:", 1)[1].split()[0]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> tuple[str, object]:
    if request.param == "postgres":
        return "postgres", request.getfixturevalue("pg_cluster")
    return "sqlite", None


def test_kill_9_under_load_loses_nothing(backend, tmp_path: Path) -> None:
    require_tool("scepclient")
    require_tool("openssl")
    kind, pg = backend
    seed = int(os.environ.get("CERTGATE_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\n[{kind}] CERTGATE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    started = time.monotonic()

    config = write_config(tmp_path / "cg", extra=LAB)
    pg_database = None
    if pg is not None:
        url = pg.create_database("crash")
        pg_database = url.rsplit("/", 1)[1]
        config.write_text(config.read_text() + f'\n[storage]\nurl = "{url}"\n')
    certgate("init", config=config)
    site = Site(tmp_path, config, rng)
    site.pg_database = pg_database
    site.server.start()

    threads = [threading.Thread(target=site.guarded, args=(site.enroller, i), daemon=True)
               for i in range(ENROLLERS)]
    threads.append(threading.Thread(target=site.guarded, args=(site.revoker,), daemon=True))
    for t in threads:
        t.start()
    orphans: list[int] = []
    try:
        for n in range(KILLS):
            time.sleep(rng.uniform(2.0, 5.0))
            with site.ledger.lock:
                before = (len(site.ledger.received), len(site.ledger.revoked))
            children = site.kill9()
            print(f"[{kind}] kill -9 #{n + 1} at {time.monotonic() - started:.1f} s: "
                  f"{before[0]} certificate(s) received, {before[1]} revocation(s) acknowledged, "
                  f"{len(children)} worker process(es)")
            orphans += site.reap_orphans(children)
            if kind == "sqlite":  # the file as the crash left it (WAL not checkpointed)
                assert _sqlite_integrity(config.parent / "var" / "certgate.sqlite") == "ok"
            time.sleep(rng.uniform(0.0, 0.5))
            site.server.start()
        time.sleep(rng.uniform(1.0, 2.0))
        # on a loaded box the kills can come before much got through: keep the load running
        # (bounded) until the ledger has something to check after the last restart
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with site.ledger.lock:
                if len(site.ledger.received) >= 3 and site.ledger.revoked:
                    break
            time.sleep(0.2)
    except BaseException:
        site.abort.set()
        raise
    finally:
        site.stop.set()
        for t in threads:
            t.join(DEVICE_BUDGET + 15)
    alive = [t for t in threads if t.is_alive()]
    ledger = site.ledger
    try:
        assert not alive, "load threads did not finish"
        assert not orphans, f"SCEP workers outlived their killed server: {orphans}"
        assert not ledger.failures, ledger.failures
        assert len(ledger.received) >= 3 and ledger.revoked, (ledger.received, ledger.revoked)

        # the restarted server is ready and enrolls
        assert site.server.get("/readyz")[0] == 200
        final = site.enroll(tmp_path / "devices" / "after", "after")
        assert final is not None, ledger.failures
        serial = format(x509.load_der_x509_certificate(final).serial_number, "x")
        ledger.received[serial] = final

        # every acknowledged revocation: in the delta CRL at once, in the complete CRL within
        # its staleness bound ([revocation] full_crl_interval 5 s + signing), and answered
        # revoked by OCSP
        status, der = site.server.get("/crl/delta/lab.crl")
        assert status == 200
        listed = {format(r.serial_number, "x") for r in x509.load_der_x509_crl(der)}
        assert set(ledger.revoked) <= listed, set(ledger.revoked) - listed
        deadline = time.monotonic() + 8
        while True:
            status, der = site.server.get("/crl/lab.crl")
            assert status == 200
            listed = {format(r.serial_number, "x") for r in x509.load_der_x509_crl(der)}
            if set(ledger.revoked) <= listed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert set(ledger.revoked) <= listed, set(ledger.revoked) - listed
        with ThreadPoolExecutor(4) as pool:
            answers = dict(zip(ledger.revoked, pool.map(functools.partial(_ocsp, site),
                                                        ledger.revoked), strict=True))
        assert answers == dict.fromkeys(ledger.revoked, "revoked")
        assert _ocsp(site, serial) == "good"

        # the inventory, as the CLI (another process) lists it
        rows = json.loads(certgate("certs", "list", "--json", config=config).stdout)
        serials = [r["serial"] for r in rows]
        assert len(serials) == len(set(serials)), "duplicate serials in the inventory"
        inventory = {r["serial"]: r for r in rows}
        assert set(ledger.received) <= set(inventory), set(ledger.received) - set(inventory)
        for s, reason in ledger.revoked.items():
            assert inventory[s]["status"] == "revoked" and inventory[s]["reason"] == reason, \
                inventory[s]
        for s in set(ledger.received) - set(ledger.revoked) - ledger.unacknowledged:
            assert inventory[s]["status"] == "active", inventory[s]
        print(f"[{kind}] {len(ledger.received)} certificate(s) received "
              f"({ledger.retries} scepclient retries), {len(inventory)} in the inventory, "
              f"{len(ledger.revoked)} revocation(s) acknowledged, "
              f"{len(ledger.unacknowledged - set(ledger.revoked))} unanswered")
    finally:
        assert site.server.stop() == 0
    log = site.server.log()
    assert "Traceback" not in log, log[-4000:]

    # the store itself: the same certificates, one per transaction, intact
    stored = _store_rows(kind, site, pg)
    by_serial = {s: der for s, _, der in stored}
    assert len(by_serial) == len(stored)
    for s, der in ledger.received.items():
        assert by_serial[s] == der, f"{s}: the stored certificate is not the one received"
    txids = [t for _, t, _ in stored]
    assert None not in txids
    assert len(txids) == len(set(txids)), "a transaction was issued twice"
    if kind == "sqlite":
        assert _sqlite_integrity(config.parent / "var" / "certgate.sqlite") == "ok"
    print(f"[{kind}] {time.monotonic() - started:.1f} s")
