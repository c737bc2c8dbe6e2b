"""device-noncompliant / device-compliant against certgate serve (no NAS: no sessions):
which certificates are held and released, an operator's hold is left alone, the event must
match the URL, a bad signature is refused, removeFromCRL releases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.coa_support import webhook
from tests.support import TOKEN, ServerProcess, certgate, write_config

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def test_compliance_webhooks(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cg", extra="\n[scep]\nworkers = 0\n")
    certgate("init", config=config)
    serials = [certgate("certs", "issue", "--group", "staff", "--cn", cn, "--device-id", "dev-9",
                        "--out", str(tmp_path / "o"), config=config).stdout.strip()
               for cn in ("c1", "c2")]
    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        status, _ = server.post(f"/api/v1/certificates/{serials[1]}/revoke",
                                b'{"reason": "certificateHold"}', ADMIN)  # an operator's hold
        assert status == 200
        status, body = webhook(server, "device-noncompliant", "dev-9", "n1")
        assert status == 200 and body["held"] == [serials[0]], body
        status, body = webhook(server, "device-compliant", "dev-9", "c1")
        assert status == 200 and body["released"] == [serials[0]], body
        shown = json.loads(certgate("certs", "show", serials[1], config=config).stdout)
        assert shown["status"] == "revoked" and shown["reason"] == "certificateHold"
        # the event must match the URL; a wrong signature is refused
        from revocation.webhook import HEADER

        body_bytes = json.dumps({"device_id": "dev-9", "event": "device-compliant",
                                 "event_id": "x"}).encode()
        status, out = server.post("/api/v1/webhooks/device-noncompliant", body_bytes,
                                  {HEADER: "t=1,v1=" + "0" * 64})
        assert status == 401, out
        from tests.integration.coa_support import sign_body

        status, out = server.post("/api/v1/webhooks/device-noncompliant", body_bytes,
                                  sign_body(body_bytes))
        assert status == 400 and b"device-compliant" in out, out
        # removeFromCRL through the revoke endpoint releases the operator's hold
        status, out = server.post(f"/api/v1/certificates/{serials[1]}/revoke",
                                  b'{"reason": "removeFromCRL"}', ADMIN)
        assert status == 200 and json.loads(out)["status"] == "active", out
    finally:
        server.stop()
