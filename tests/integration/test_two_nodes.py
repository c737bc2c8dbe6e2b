"""Two `certgate serve` nodes on loopback sharing one real PostgreSQL server (issue 9 §5).

Node A and node B are what a site runs as its primary and secondary RADIUS servers: each
its own process, ports and `[server] node_name`, the same PKI directory (copied, as the
README's "from one box to two nodes" says) and one PostgreSQL database. The module has a
PostgreSQL cluster of its own because one test stops and restarts it.

Peers are real: wpa_supplicant's eapol_test for EAP-TLS, micromdm scepclient for SCEP,
the certgate CLI in other processes, the admin API over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support import (
    IN_CI,
    TOKEN,
    ServerProcess,
    certgate,
    free_port,
    require_tool,
    run_eapol_test,
    write_config,
)

pytestmark = pytest.mark.integration

GROUPS = """
[groups.lab]
vlan = 30
validity_days = 30
legacy_algorithms = true

[groups.approval]
vlan = 40
manual_approval = true
"""
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
REVOCATION_BUDGET = 1.0  # seconds: issue 9 §2, revocation everywhere within 1 s


class Node:
    def __init__(self, name: str, config: Path, server: ServerProcess) -> None:
        self.name = name
        self.config = config
        self.server = server

    def metric(self, prefix: str) -> float:
        text = self.server.get("/metrics")[1].decode()
        for row in text.splitlines():
            if row.startswith(prefix + " "):
                return float(row.rsplit(" ", 1)[1])
        return 0.0


class Site:
    def __init__(self, base: Path, pg, url: str) -> None:
        self.base = base
        self.pg = pg
        self.url = url
        self.nodes: list[Node] = []
        self.pki = base / "a" / "var" / "pki"
        self.root = self.pki / "root.crt"
        self.certs = base / "certs"
        self.certs.mkdir()

    @property
    def a(self) -> Node:
        return self.nodes[0]

    @property
    def b(self) -> Node:
        return self.nodes[1]

    def issue(self, name: str, group: str = "staff") -> str:
        """`certgate certs issue` through node A's config (another process, straight to PG)."""
        r = subprocess.run([*_cli(self.a.config), "certs", "issue", "--group", group, "--cn", name,
                            "--out", str(self.certs), "--san", f"email:{name}@example.test"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout.strip()

    def eapol(self, node: Node, name: str, tls: str = "1.2") -> tuple[int, str]:
        return run_eapol_test(node.server.radius, self.root, self.certs / f"{name}.chain.pem",
                              self.certs / f"{name}.key", self.base / "eapol" / node.name,
                              identity=f"{name}@example.test", tls=tls, timeout=5)

    def accepted(self, node: Node, name: str) -> bool:
        code, out = self.eapol(node, name)
        if code == 0:
            assert "MPPE keys OK: 1  mismatch: 0" in out, out[-2000:]
            return True
        assert "Access-Reject" in out, out[-3000:]  # an answer, never a timeout
        return False

    def revoke_via_api(self, node: Node, serial: str, reason: str = "keyCompromise"
                       ) -> tuple[int, bytes, dict]:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"{node.server.http}/api/v1/certificates/{serial}/revoke",
                                     data=json.dumps({"reason": reason}).encode(), headers=AUTH,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def ocsp(self, node: Node, serial: str, group: str = "staff") -> str:
        """What `openssl ocsp` says about `serial` at `node`: good / revoked (+ reason) /
        unknown, or the responder error (e.g. "trylater")."""
        ca = self.pki / "groups" / group / "ca.crt"
        r = subprocess.run(["openssl", "ocsp", "-issuer", str(ca), "-serial", f"0x{serial}",
                            "-url", f"{node.server.http}/ocsp/{group}", "-CAfile", str(self.root),
                            "-VAfile", str(ca), "-no_nonce"],
                           capture_output=True, text=True, timeout=30)
        text = r.stdout + r.stderr
        if "Responder Error:" in text:
            return text.split("Responder Error:", 1)[1].split()[0]
        assert "Response verify OK" in text, text
        status = text.split(f"0x{serial}:", 1)[1].split()[0]
        if status == "revoked":
            reason = [ln.split(":", 1)[1].strip() for ln in text.splitlines()
                      if "Reason:" in ln]
            return f"revoked {reason[0]}" if reason else status
        return status

    def time_until_rejected(self, node: Node, name: str, limit: float = 10.0) -> float:
        """Seconds from now until `node` rejects `name` (polling with eapol_test)."""
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if not self.accepted(node, name):
                return time.monotonic() - started
        raise AssertionError(f"{node.name} still accepts {name} after {limit} s")

    def wait_ready(self, node: Node, want: int, limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        status = None
        while time.monotonic() < deadline:
            status, _ = node.server.get("/readyz")
            if status == want:
                return
            time.sleep(0.2)
        raise AssertionError(f"{node.name} /readyz is {status}, expected {want}")


def _cli(config: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "certgate", "--config", str(config)]


def _node_config(directory: Path, name: str, url: str, pki: Path | None) -> Path:
    config = write_config(directory, extra=GROUPS)
    text = config.read_text().replace(
        'data_dir = "var"', f'data_dir = "var"\nnode_name = "{name}"', 1)
    text += f'\n[storage]\nurl = "{url}"\n'
    if pki is not None:
        text += f'\n[pki]\ndir = "{pki}"\n'
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    from tests.pg_cluster import PgCluster, pg_bindir

    require_tool("eapol_test")
    require_tool("scepclient")
    bindir = pg_bindir()
    if bindir is None:
        if IN_CI:
            pytest.fail("PostgreSQL is required in CI (scripts/install-test-deps.sh installs it)")
        pytest.skip("PostgreSQL server binaries not installed (run `make deps` as root)")
    base = tmp_path_factory.mktemp("two-nodes")
    pg = PgCluster(bindir, free_port()).init().start()
    url = pg.create_database("site")
    site = Site(base, pg, url)
    try:
        config_a = _node_config(base / "a", "node-a", url, None)
        certgate("init", config=config_a)
        pki_b = base / "b" / "var" / "pki"
        shutil.copytree(site.pki, pki_b)  # copy2 keeps the keys 0600
        config_b = _node_config(base / "b", "node-b", url, pki_b)
        for name, config in (("a", config_a), ("b", config_b)):
            server = ServerProcess(config, base / f"serve-{name}.log").start()
            site.nodes.append(Node(name, config, server))
        yield site
    finally:
        for node in site.nodes:
            node.server.stop()
        pg.destroy()


def _serial_of(pem: Path) -> str:
    return format(x509.load_pem_x509_certificate(pem.read_bytes()).serial_number, "x")


def _inventory(site: Site) -> list[dict]:
    return json.loads(certgate("certs", "list", "--json", config=site.b.config).stdout)


def _scepclient(site: Site, node: Node, workdir: Path, cn: str, challenge: str | None
                ) -> subprocess.Popen:
    ra = x509.load_pem_x509_certificate((site.pki / "groups/lab/ra.crt").read_bytes())
    fingerprint = hashlib.sha256(ra.public_bytes(serialization.Encoding.DER)).hexdigest()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = ["scepclient", "-server-url", f"{node.server.http}/scep/lab/pkiclient.exe",
           "-private-key", str(workdir / "dev.key"), "-certificate", str(workdir / "dev.pem"),
           "-cn", cn, "-ca-fingerprint", fingerprint]
    if challenge is not None:
        cmd += ["-challenge", challenge]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def test_nodes_are_distinct_and_share_one_database(site: Site) -> None:
    assert site.a.server.radius != site.b.server.radius
    for node in site.nodes:
        assert node.server.get("/readyz")[0] == 200
        assert node.metric("certgate_store_up") == 1
    r = certgate("check-config", "--connect", config=site.b.config)
    assert "postgres" in r.stdout.lower() and "127.0.0.1" in r.stdout
    assert "Traceback" not in site.a.server.log() + site.b.server.log()


def test_issued_on_a_authenticates_on_b_at_once(site: Site) -> None:
    serial = site.issue("cross-1")
    assert site.accepted(site.b, "cross-1")  # no sleep: the change feed (NOTIFY) is there first
    assert site.accepted(site.a, "cross-1")
    rows = {r["serial"]: r for r in _inventory(site)}
    assert rows[serial]["status"] == "active"


def test_revocation_on_a_rejects_on_b_within_one_second(site: Site) -> None:
    serial = site.issue("cross-revoke")
    assert site.accepted(site.b, "cross-revoke")
    status, body, _ = site.revoke_via_api(site.a, serial)
    assert status == 200, body
    elapsed = site.time_until_rejected(site.b, "cross-revoke")
    print(f"\nrevocation on node A -> reject on node B: {elapsed * 1000:.0f} ms "
          "(includes one eapol_test run)")
    assert elapsed <= REVOCATION_BUDGET
    assert not site.accepted(site.a, "cross-revoke")
    assert "reason=revoked" in site.b.server.log()

    # the CLI in a third process, through B's config: A rejects within the same budget
    serial = site.issue("cross-revoke-cli")
    assert site.accepted(site.a, "cross-revoke-cli")
    subprocess.run([*_cli(site.b.config), "revoke", "--serial", serial, "--reason",
                    "cessationOfOperation"], check=True, capture_output=True, timeout=60)
    elapsed = site.time_until_rejected(site.a, "cross-revoke-cli")
    print(f"revocation by CLI (node B's config) -> reject on node A: {elapsed * 1000:.0f} ms")
    assert elapsed <= REVOCATION_BUDGET

    # both nodes serve the same CRL content for the group: the delta at once, the complete
    # CRL within its staleness bound ([revocation] full_crl_interval 5 s + signing)
    deltas = [x509.load_der_x509_crl(n.server.get("/crl/delta/staff.crl")[1])
              for n in site.nodes]
    assert all(int(serial, 16) in {r.serial_number for r in crl} for crl in deltas)
    deadline = time.monotonic() + 8
    while True:
        crls = [x509.load_der_x509_crl(n.server.get("/crl/staff.crl")[1]) for n in site.nodes]
        revoked = [{r.serial_number for r in crl} for crl in crls]
        if revoked[0] == revoked[1] and int(serial, 16) in revoked[0] \
                or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert revoked[0] == revoked[1] and int(serial, 16) in revoked[0]


def test_one_challenge_at_both_nodes_at_once_issues_one_certificate(site: Site) -> None:
    token = certgate("challenge", "create", "--group", "lab", "--subject", "race-dev",
                     config=site.a.config).stdout.strip()
    procs = [_scepclient(site, node, site.base / f"race-{node.name}", "race-dev", token)
             for node in site.nodes]
    results = [_finish(p) for p in procs]
    winners = [i for i, (code, _) in enumerate(results) if code == 0]
    assert len(winners) == 1, results
    loser = results[1 - winners[0]]
    assert "request failed, failInfo: badRequest" in loser[1], loser[1]
    issued = [r for r in _inventory(site) if "CN=race-dev" in r["subject"].split(",")]
    assert len(issued) == 1, issued
    winner_dir = site.base / f"race-{site.nodes[winners[0]].name}"
    assert issued[0]["serial"] == _serial_of(winner_dir / "dev.pem")
    replays = sum(n.metric('certgate_scep_challenge_failures_total{group="lab",reason="replay"}')
                  for n in site.nodes)
    assert replays >= 1


def test_retry_of_an_enrollment_on_the_other_node_returns_the_same_certificate(site: Site) -> None:
    """Same key and transactionID (scepclient derives it from the key), other node: idempotent."""
    token = certgate("challenge", "create", "--group", "lab", "--subject", "retry-dev",
                     config=site.a.config).stdout.strip()
    work = site.base / "retry"
    code, out = _finish(_scepclient(site, site.a, work, "retry-dev", token))
    assert code == 0, out
    first = (work / "dev.pem").read_bytes()
    (work / "dev.pem").unlink()  # the device lost the answer and retries elsewhere
    code, out = _finish(_scepclient(site, site.b, work, "retry-dev", token))
    assert code == 0, out
    assert (work / "dev.pem").read_bytes() == first
    assert len([r for r in _inventory(site) if "CN=retry-dev" in r["subject"].split(",")]) == 1


def test_pending_request_approved_on_a_is_collected_on_b(site: Site) -> None:
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import AttributeOID, NameOID

    from enrollment import scep_client
    from enrollment.scep_types import PKIStatus

    ra = x509.load_pem_x509_certificate((site.pki / "groups/approval/ra.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((site.pki / "groups/approval/ca.crt").read_bytes())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pending-dev")])
    token = certgate("challenge", "create", "--group", "approval", "--subject", "pending-dev",
                     config=site.b.config).stdout.strip()
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_attribute(AttributeOID.CHALLENGE_PASSWORD, token.encode()).sign(key, hashes.SHA256()))
    signer = scep_client.self_signed_signer(key, subject, dt.datetime.now(dt.UTC))

    def post(node: Node, req: scep_client.ClientRequest) -> scep_client.CertRepResult:
        status, body = node.server.post("/scep/approval?operation=PKIOperation", req.der,
                                        {"Content-Type": "application/x-pki-message"})
        assert status == 200, body
        return scep_client.parse_cert_rep(body, signer, key, ra_cert=ra, request=req)

    req = scep_client.build_pkcs_req(csr, signer, key, ra)
    assert post(site.a, req).status is PKIStatus.PENDING
    rows = json.loads(certgate("requests", "list", "--json", "--status", "pending",
                               config=site.a.config).stdout)
    (row,) = [r for r in rows if r["transaction_id"] == req.transaction_id]
    certgate("requests", "approve", str(row["id"]), config=site.a.config)
    rep = post(site.b, scep_client.build_cert_poll(ca.subject, subject, signer, key, ra,
                                                   transaction_id=req.transaction_id))
    assert rep.status is PKIStatus.SUCCESS
    serial = format(rep.certificates[0].serial_number, "x")
    assert {r["serial"]: r for r in _inventory(site)}[serial]["group"] == "approval"


def test_postgres_outage_mid_load_and_recovery(site: Site) -> None:
    """PostgreSQL stops under load: decide from memory, refuse writes cleanly, stay up; recover."""
    good_serial = site.issue("outage-ok")
    revoked_serial = site.issue("outage-revoked")
    late_serial = site.issue("outage-late")  # revoked after the recovery
    assert site.revoke_via_api(site.a, revoked_serial)[0] == 200
    for node in site.nodes:
        assert site.accepted(node, "outage-ok")
        assert site.accepted(node, "outage-late")
    for node in site.nodes:
        site.time_until_rejected(node, "outage-revoked", limit=3)
    for node in site.nodes:  # the store is up: answered from the store
        assert site.ocsp(node, good_serial) == "good"
        assert site.ocsp(node, revoked_serial) == "revoked keyCompromise"
        assert site.ocsp(node, "7" * 30) == "unknown"
    token = certgate("challenge", "create", "--group", "lab", "--subject", "outage-dev",
                     config=site.a.config).stdout.strip()

    # load: the good certificate authenticates against both nodes, round robin
    stop = threading.Event()
    outcomes: list[tuple[str, bool]] = []

    def load() -> None:
        for i in range(200):  # bounded: stops by itself
            if stop.is_set():
                return
            node = site.nodes[i % 2]
            outcomes.append((node.name, site.accepted(node, "outage-ok")))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        time.sleep(1.0)
        site.pg.stop("fast")
        for node in site.nodes:
            site.wait_ready(node, 503, limit=15)
        during = len(outcomes)
        # known good passes, known revoked fails, never seen fails closed
        for node in site.nodes:
            assert site.accepted(node, "outage-ok")
            assert not site.accepted(node, "outage-revoked")
            assert node.metric("certgate_store_up") == 0
            assert node.server.get("/healthz")[0] == 200
        # writes are refused cleanly: SCEP (a signed FAILURE) and the admin API (503)
        code, out = _finish(_scepclient(site, site.a, site.base / "outage-scep", "outage-dev", token))
        assert code != 0 and "failInfo: badRequest" in out, out
        status, body, headers = site.revoke_via_api(site.b, late_serial)
        assert status == 503 and headers.get("Retry-After"), body
        # GetCACaps / GetCACert / CRL keep being served from what the node has
        for node in site.nodes:
            assert node.server.get("/scep/lab?operation=GetCACaps")[0] == 200
            assert node.server.get("/scep/lab?operation=GetCACert")[0] == 200
            assert node.server.get("/crl/staff.crl")[0] == 200
        # OCSP answers from the same memory: good stays good, revoked stays revoked (time and
        # reason from the published CRL), a serial the node never saw is tryLater, no guess
        for node in site.nodes:
            assert site.ocsp(node, good_serial) == "good"
            assert site.ocsp(node, revoked_serial) == "revoked keyCompromise"
            assert site.ocsp(node, "7" * 30) == "trylater"
        time.sleep(1.0)
        assert len(outcomes) > during  # the load kept running through the outage
    finally:
        stop.set()
        worker.join(timeout=30)
        if not site.pg.running():
            site.pg.start()
    assert outcomes and all(ok for _, ok in outcomes), outcomes
    for node in site.nodes:
        assert node.server.proc is not None and node.server.proc.poll() is None  # both stayed up
        site.wait_ready(node, 200, limit=30)  # recovered by itself, no restart
        assert node.metric("certgate_store_up") == 1

    # after the recovery: the challenge was not burnt by the refused enrollment, and a new
    # revocation propagates across nodes again
    code, out = _finish(_scepclient(site, site.b, site.base / "outage-scep", "outage-dev", token))
    assert code == 0, out
    status, body, _ = site.revoke_via_api(site.a, late_serial)
    assert status == 200, body
    elapsed = site.time_until_rejected(site.b, "outage-late")
    print(f"\nafter recovery, revocation on A -> reject on B: {elapsed * 1000:.0f} ms")
    assert elapsed <= REVOCATION_BUDGET
    for node in site.nodes:
        log = node.server.log()
        assert "Traceback" not in log, log[-4000:]
        assert "store unavailable" in log and "store available again" in log
