"""The real process: readiness, /metrics checked by promtool, restart keeps the store, SIGTERM."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import ServerProcess, certgate, require_tool

pytestmark = pytest.mark.integration


def test_metrics_pass_promtool_and_carry_the_gauges(server: ServerProcess, tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    status, body = server.get("/metrics")
    assert status == 200
    text = body.decode()
    for name in ("certgate_build_info", 'certgate_certificates{group="staff",status="active"}',
                 'certgate_ca_cert_expiry_timestamp_seconds{ca="root"}',
                 'certgate_ca_cert_expiry_timestamp_seconds{ca="guests"}',
                 "certgate_server_cert_expiry_timestamp_seconds"):
        assert name in text, name
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    # promtool exits 0 for valid exposition; lint hints (if any) go to stdout/stderr as text
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert server.get("/healthz")[0] == 200
    assert server.get("/readyz")[0] == 200


def test_store_survives_restart_and_sigterm_is_graceful(initialized: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    serial = certgate("certs", "issue", "--group", "guests", "--cn", "g1", "--out", str(out),
                      config=initialized).stdout.strip()
    certgate("revoke", "--serial", serial, "--reason", "cessationOfOperation", config=initialized)
    proc = ServerProcess(initialized, tmp_path / "a.log").start()
    _, body = proc.get("/metrics")
    assert 'certgate_certificates{group="guests",status="revoked"} 1.0' in body.decode()
    assert 'certgate_revocation_entries{group="guests"} 1.0' in body.decode()
    assert proc.stop() == 0
    assert "stopped" in proc.log()
    proc = ServerProcess(initialized, tmp_path / "b.log").start()
    _, body = proc.get("/metrics")
    assert 'certgate_revocation_entries{group="guests"} 1.0' in body.decode()
    assert proc.stop() == 0


def test_busy_port_is_a_clear_error(initialized: Path, tmp_path: Path) -> None:
    import socket
    import tomllib

    data = tomllib.loads(initialized.read_text())
    host, port = data["http"]["listen"].rsplit(":", 1)
    with socket.socket() as s:
        s.bind((host, int(port)))
        s.listen()
        r = certgate("serve", config=initialized, check=False, timeout=30)
    assert r.returncode == 1
    assert "[http] listen" in r.stderr and "Traceback" not in r.stderr
