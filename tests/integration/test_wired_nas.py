"""A real NAS: wpa_supplicant <-> hostapd (wired 802.1X authenticator, RADIUS accounting,
RFC 5176 DAS) <-> certgate, in a network namespace the test creates and removes.

Proves: the Access-Accept's Class links hostapd's accounting to the certificate; revoking
that certificate sends a Disconnect-Request that hostapd ACKs and acts on.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from tests.support import IN_CI, SECRET, TOKEN, ServerProcess, certgate, require_tool

pytestmark = pytest.mark.integration

HARNESS = Path(__file__).resolve().parent.parent / "peers" / "wired8021x.sh"


def _harness(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(HARNESS), *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def nas(initialized: Path, tmp_path: Path):
    for tool in ("hostapd", "wpa_supplicant", "ip"):
        require_tool(tool)
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the wired NAS test needs root (network namespaces) in CI")
        pytest.skip("the wired NAS test needs root to create a network namespace")
    cfg = tomllib.loads(initialized.read_text())
    radius = cfg["radius"]["listen"]
    acct = cfg["radius"]["acct_listen"].rsplit(":", 1)[1]
    das = str(cfg["radius"]["clients"][0]["coa_port"])
    work = tmp_path / "nas"
    r = _harness("up", "-w", str(work), "--radius", radius, "--secret", SECRET, "--acct", acct,
                 "--das", das)
    assert r.returncode == 0, r.stdout + r.stderr
    yield work
    _harness("down", "-w", str(work))


def test_accounting_links_session_and_revocation_disconnects(
    server: ServerProcess, initialized: Path, nas: Path, tmp_path: Path
) -> None:
    out = tmp_path / "certs"
    serial = certgate("certs", "issue", "--group", "staff", "--cn", "wired-01", "--out", str(out),
                      config=initialized).stdout.strip()
    root = initialized.parent / "var" / "pki" / "root.crt"
    r = _harness("auth", "-w", str(nas), "--ca", str(root), "--cert", str(out / "wired-01.chain.pem"),
                 "--key", str(out / "wired-01.key"), "--identity", "wired-01")
    assert r.returncode == 0 and r.stdout.startswith("authorized"), r.stdout + r.stderr
    headers = {"Authorization": f"Bearer {TOKEN}"}

    deadline = time.monotonic() + 10
    sessions: list = []
    while time.monotonic() < deadline:
        _, body = server.get("/api/v1/sessions", headers)
        sessions = [s for s in json.loads(body) if s["serial"] == serial]
        if sessions:
            break
        time.sleep(0.2)
    assert sessions, "hostapd's Accounting-Start did not reach the store with our Class"
    assert sessions[0]["group"] == "staff" and sessions[0]["nas_ip"] == "127.0.0.1"
    assert sessions[0]["calling_station_id"]

    status, body = server.post(f"/api/v1/certificates/{serial}/revoke",
                               json.dumps({"reason": "keyCompromise"}).encode(),
                               {**headers, "Content-Type": "application/json"})
    assert status == 200, body
    deadline = time.monotonic() + 10
    while _harness("status", "-w", str(nas)).stdout.strip() != "disconnected":
        assert time.monotonic() < deadline, "hostapd did not disconnect the revoked device"
        time.sleep(0.2)
    hostapd_log = (nas / "hostapd.log").read_text(errors="replace")
    assert "Disconnect-ACK" in hostapd_log
    _, metrics = server.get("/metrics")
    assert 'certgate_coa_requests_total{client="loopback",kind="disconnect",result="ack"} 1.0' \
        in metrics.decode()
    shown = json.loads(certgate("certs", "show", serial, config=initialized).stdout)
    assert any(a["action"] == "disconnect" and a["details"]["result"] == "ack"
               for a in shown["audit"])
