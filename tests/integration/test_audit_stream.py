"""The audit stream of a real `certgate serve` with `[audit] file` (docs/audit-events.md).

One server, real peers: `certs issue` (CLI process), EAP-TLS with wpa_supplicant's
eapol_test (accept, then reject once revoked), a revocation through the admin API and a
bad admin token, a challenge created through the API and used by micromdm's scepclient
(issued + consumed), the same challenge replayed (refused), logrotate's rename + SIGHUP.
The JSON lines are parsed back and each event's fields checked; `certgate audit export
--json` must print the same events for what the store holds.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support import (
    TOKEN,
    ServerProcess,
    certgate,
    require_tool,
    run_eapol_test,
    write_config,
)

pytestmark = pytest.mark.integration

EXTRA = """
[groups.lab]
vlan = 30
legacy_algorithms = true

[audit]
file = "var/audit/audit.json"
"""


def _events(path: Path) -> list[dict]:
    """The complete lines so far: a line the writer thread is still appending (no newline
    yet) is left for the next read, as a log shipper tailing the file would."""
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def _wait_for(path: Path, action: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in _events(path) if e["event"]["action"] == action]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"no {action} event in {path}:\n{path.read_text()}"
        time.sleep(0.1)


def _scepclient(server: ServerProcess, config: Path, workdir: Path, cn: str, token: str):
    workdir.mkdir(parents=True, exist_ok=True)
    ra = x509.load_pem_x509_certificate(
        (config.parent / "var/pki/groups/lab/ra.crt").read_bytes())
    import hashlib

    fingerprint = hashlib.sha256(ra.public_bytes(serialization.Encoding.DER)).hexdigest()
    return subprocess.run(
        ["scepclient", "-server-url", f"{server.http}/scep/lab/pkiclient.exe",
         "-private-key", str(workdir / "dev.key"), "-certificate", str(workdir / "dev.pem"),
         "-cn", cn, "-ca-fingerprint", fingerprint, "-challenge", token],
        capture_output=True, text=True, timeout=60)


def test_audit_file_carries_every_decision(tmp_path: Path) -> None:
    require_tool("eapol_test")
    require_tool("scepclient")
    config = write_config(tmp_path / "cg", extra=EXTRA)
    certgate("init", config=config)
    out = tmp_path / "certs"
    out.mkdir()
    serial = certgate("certs", "issue", "--group", "staff", "--cn", "dev-a", "--out", str(out),
                      "--san", "email:dev-a@example.test", config=config).stdout.strip()
    audit = config.parent / "var" / "audit" / "audit.json"
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    assert stat.S_IMODE(audit.parent.stat().st_mode) == 0o700
    (issued,) = [e for e in _events(audit) if e.get("x509", {}).get("serial_number") == serial.upper()]
    assert issued["event"]["action"] == "certificate-issued"
    assert issued["certgate"]["actor"] == {"kind": "cli", "name": "cli:certs-issue"}
    assert issued["certgate"]["group"] == "staff" and issued["user"]["name"]  # the OS user

    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        (loaded,) = _wait_for(audit, "config-loaded")
        assert loaded["certgate"]["config"]["path"] == str(config.resolve())
        assert sorted(loaded["certgate"]["config"]["groups"]) == ["guests", "lab", "staff"]
        assert len(loaded["certgate"]["config"]["sha256"]) == 64

        root = config.parent / "var" / "pki" / "root.crt"
        code, text = run_eapol_test(server.radius, root, out / "dev-a.chain.pem",
                                    out / "dev-a.key", tmp_path / "eapol", tls="1.3",
                                    identity="anonymous@example.test")
        assert code == 0, text[-2000:]
        (accept,) = _wait_for(audit, "radius-authentication")
        assert accept["event"]["outcome"] == "success" and accept["event"]["reason"] == "ok"
        assert accept["event"]["category"] == ["authentication"]
        assert accept["tls"]["version"] == "1.3"
        assert accept["x509"]["serial_number"] == serial.upper()
        assert accept["user"]["name"] == "dev-a@example.test"
        assert accept["certgate"]["group"] == "staff"
        assert accept["certgate"]["radius"]["client"] == "loopback"
        assert accept["certgate"]["radius"]["calling_station_id"] == "02-00-00-00-00-01"

        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        status, body = server.post(f"/api/v1/certificates/{serial}/revoke",
                                   json.dumps({"reason": "keyCompromise",
                                               "comment": "lost"}).encode(), headers)
        assert status == 200, body
        (revoked,) = _wait_for(audit, "certificate-revoked")
        assert revoked["event"]["reason"] == "keyCompromise"
        assert revoked["user"]["name"] == "api:token#0"
        assert revoked["certgate"]["actor"]["kind"] == "admin_api"
        assert revoked["x509"]["serial_number"] == serial.upper()

        code, text = run_eapol_test(server.radius, root, out / "dev-a.chain.pem",
                                    out / "dev-a.key", tmp_path / "eapol", tls="1.2")
        assert code != 0 and "Access-Reject" in text, text[-2000:]
        reject = _wait_for(audit, "radius-authentication", 2)[1]
        assert reject["event"]["outcome"] == "failure" and reject["event"]["reason"] == "revoked"
        assert reject["log"]["level"] == "warning" and reject["tls"]["version"] == "1.2"

        status, _ = server.get("/api/v1/certificates",
                               {"Authorization": "Bearer not-the-token-at-all"})
        assert status == 401
        (denied,) = _wait_for(audit, "admin-authentication")
        assert denied["event"]["outcome"] == "failure" and denied["event"]["reason"] == "bad_token"
        assert denied["source"]["ip"] == "127.0.0.1"
        assert denied["certgate"]["http"]["path"] == "/api/v1/certificates"
        assert "not-the-token" not in audit.read_text()  # secrets never in the stream

        # logrotate: rename, then SIGHUP; what follows goes to a new 0600 file
        audit.rename(audit.with_suffix(".json.1"))
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        status, body = server.post("/api/v1/groups/lab/challenges",
                                   json.dumps({"subject": "dev-s"}).encode(), headers)
        assert status == 201, body
        token = json.loads(body)["challenge"]
        (created,) = _wait_for(audit, "challenge-created")
        assert stat.S_IMODE(audit.stat().st_mode) == 0o600
        assert created["certgate"]["challenge"]["kind"] == "dynamic"
        assert created["certgate"]["group"] == "lab" and created["user"]["name"] == "api:token#0"
        assert token not in audit.read_text()

        r = _scepclient(server, config, tmp_path / "dev-s", "dev-s", token)
        assert r.returncode == 0, r.stdout + r.stderr
        (scep_issued,) = _wait_for(audit, "certificate-issued")
        assert scep_issued["certgate"]["actor"]["kind"] == "scep"
        assert scep_issued["certgate"]["certificate"]["source"] == "scep"
        (consumed,) = _wait_for(audit, "challenge-consumed")
        assert consumed["certgate"]["challenge"]["jti"] == created["certgate"]["challenge"]["jti"]
        assert consumed["x509"] == scep_issued["x509"]

        r = _scepclient(server, config, tmp_path / "thief", "dev-s", token)  # replayed
        assert r.returncode != 0
        (refused,) = _wait_for(audit, "challenge-refused")
        assert refused["event"]["outcome"] == "failure" and refused["event"]["reason"] == "replay"
        assert refused["certgate"]["group"] == "lab" and refused["source"]["ip"] == "127.0.0.1"
    finally:
        assert server.stop() == 0, server.log()[-3000:]

    rotated = _events(audit.with_suffix(".json.1"))
    assert {e["event"]["action"] for e in rotated} >= {
        "certificate-issued", "config-loaded", "radius-authentication", "certificate-revoked",
        "admin-authentication"}
    live = rotated + _events(audit)
    for e in live:  # the envelope every consumer relies on
        assert e["certgate"]["audit"]["version"] == 1 and e["ecs"]["version"].startswith("8.")
        assert e["event"]["outcome"] in ("success", "failure") and e["log"]["level"]
        assert e["@timestamp"].endswith("+00:00") and len(e["@timestamp"]) == 29

    # backfill: audit export prints the store-backed events as the stream did (timestamps
    # to the second: the store keeps seconds)
    exported = [json.loads(line) for line in
                certgate("audit", "export", "--json", config=config).stdout.splitlines()]

    def key(e: dict) -> tuple:
        return (e["event"]["action"], e.get("x509", {}).get("serial_number"), e.get("user", {}).get("name"),
                e["@timestamp"][:19])

    stored_actions = {"certificate-issued", "certificate-revoked", "challenge-created",
                      "challenge-consumed", "admin-authentication"}
    live_stored = sorted(key(e) for e in live if e["event"]["action"] in stored_actions)
    exported_keys = sorted(key(e) for e in exported if e["event"]["action"] in stored_actions)
    assert live_stored == exported_keys

    def same(e: dict) -> dict:
        return {**e, "@timestamp": e["@timestamp"][:19]}

    assert same(revoked) in [same(e) for e in exported]  # field for field
    assert same(denied) in [same(e) for e in exported]
    assert not [e for e in exported if e["event"]["action"] == "radius-authentication"]
    text = certgate("audit", "export", "--since", "2000-01-01", config=config).stdout
    assert f"certificate-revoked success reason=keyCompromise group=staff " \
           f"serial={serial.upper()} user=api:token#0" in text
    assert certgate("audit", "export", "--until", "2000-01-01", config=config).stdout == ""
