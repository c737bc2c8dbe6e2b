"""Revocation through CLI, admin API and MDM webhook; CRL over HTTP and OCSP checked by openssl."""

from __future__ import annotations

import datetime as dt
import json
import stat
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from revocation import webhook
from tests.support import TOKEN, WEBHOOK_SECRET, ServerProcess, certgate, require_tool

pytestmark = pytest.mark.integration


def issue(config: Path, cn: str, out: Path, device_id: str | None = None) -> str:
    args = ["certs", "issue", "--group", "staff", "--cn", cn, "--out", str(out)]
    if device_id:
        args += ["--device-id", device_id]
    return certgate(*args, config=config).stdout.strip()


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def crl_lists(server: ServerProcess, pki: Path, tmp_path: Path, serial: str,
              path: str = "/crl/staff.crl") -> bool:
    openssl = require_tool("openssl")
    status, der = server.get(path)
    assert status == 200
    crl = tmp_path / "staff.crl"
    crl.write_bytes(der)
    r = subprocess.run([openssl, "crl", "-inform", "DER", "-in", str(crl), "-noout", "-verify",
                        "-CAfile", str(pki / "groups/staff/ca.crt"), "-text"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "verify OK" in (r.stderr + r.stdout), r.stderr
    listed = r.stdout.replace(":", "").lower()
    return f"serial number: {serial.lower()}" in listed or serial.upper() in r.stdout.replace(":", "")


def ocsp_status(server: ServerProcess, pki: Path, cert: Path) -> str:
    openssl = require_tool("openssl")
    r = subprocess.run(
        [openssl, "ocsp", "-issuer", str(pki / "groups/staff/ca.crt"), "-cert", str(cert),
         "-url", server.http + "/ocsp/staff", "-CAfile", str(pki / "root.crt"),
         "-VAfile", str(pki / "groups/staff/ca.crt"), "-resp_text"],
        capture_output=True, text=True, timeout=30,
    )
    assert "Response verify OK" in r.stderr + r.stdout, r.stderr + r.stdout
    for line in r.stdout.splitlines():
        if line.startswith(str(cert)):
            return line.split(":", 1)[1].strip()
    raise AssertionError(r.stdout)


def test_revoke_cli_api_webhook_crl_ocsp(server: ServerProcess, initialized: Path,
                                         tmp_path: Path) -> None:
    pki = initialized.parent / "var" / "pki"
    out = tmp_path / "c"
    s_cli = issue(initialized, "cli-dev", out)
    s_api = issue(initialized, "api-dev", out)
    s_hook = issue(initialized, "hook-dev", out, device_id="DEVICE-42")
    issue(initialized, "keep-dev", out)

    assert ocsp_status(server, pki, out / "cli-dev.crt") == "good"
    assert not crl_lists(server, pki, tmp_path, s_cli)

    # 1. CLI (another process): seen by the server through the store watcher
    certgate("revoke", "--serial", s_cli, "--reason", "keyCompromise", config=initialized)
    deadline = time.monotonic() + 5
    while not crl_lists(server, pki, tmp_path, s_cli):
        assert time.monotonic() < deadline, "CLI revocation not in the CRL"
        time.sleep(0.2)
    assert ocsp_status(server, pki, out / "cli-dev.crt") == "revoked"

    # 2. admin API: 401 without a token, then durable + immediate
    status, _ = server.post(f"/api/v1/certificates/{s_api}/revoke", b"{}",
                            {"Content-Type": "application/json"})
    assert status == 401
    status, _ = server.post(f"/api/v1/certificates/{s_api}/revoke", b"{}", auth("x" * 30))
    assert status == 401
    status, body = server.post(f"/api/v1/certificates/{s_api}/revoke",
                               json.dumps({"reason": "affiliationChanged"}).encode(), auth())
    assert status == 200, body
    assert json.loads(body)["status"] == "revoked"
    revoked_at = time.monotonic()
    # in the delta CRL at once; in the complete CRL within [revocation] full_crl_interval
    # (5 s) + signing time
    assert crl_lists(server, pki, tmp_path, s_api, "/crl/delta/staff.crl")
    assert not crl_lists(server, pki, tmp_path, s_api, "/crl/base/staff.crl")
    (tmp_path / "base.pem").write_bytes(server.get("/crl/base/staff.pem")[1])
    (tmp_path / "delta.pem").write_bytes(server.get("/crl/delta/staff.pem")[1])
    while not crl_lists(server, pki, tmp_path, s_api):
        assert time.monotonic() - revoked_at < 5 + 3, "API revocation not in the complete CRL"
        time.sleep(0.2)
    # a relying party using deltas: base (which does not list it) + delta -> revoked;
    # a certificate revoked nowhere -> OK. The certificates carry the Freshest CRL URL.
    openssl = require_tool("openssl")
    cert = x509.load_pem_x509_certificate((out / "api-dev.crt").read_bytes())
    freshest = cert.extensions.get_extension_for_class(x509.FreshestCRL).value
    assert freshest[0].full_name[0].value == server.http + "/crl/delta/staff.crl"
    for name, revoked in (("api-dev", True), ("keep-dev", False)):
        r = subprocess.run([openssl, "verify", "-crl_check", "-use_deltas",
                            "-CAfile", str(pki / "root.crt"),
                            "-untrusted", str(pki / "groups/staff/ca.crt"),
                            "-CRLfile", str(tmp_path / "base.pem"),
                            "-CRLfile", str(tmp_path / "delta.pem"), str(out / f"{name}.crt")],
                           capture_output=True, text=True)
        assert (r.returncode != 0) == revoked, r.stdout + r.stderr
        if revoked:
            assert "certificate revoked" in r.stdout + r.stderr
    assert ocsp_status(server, pki, out / "api-dev.crt") == "revoked"

    # 3. MDM webhook: bad signature 401, stale 401, good revokes every cert of the device
    payload = json.dumps({"device_id": "DEVICE-42", "event": "device-removed",
                          "event_id": "evt-1"}).encode()
    now = dt.datetime.now(dt.UTC)
    bad = webhook.sign("wrong-secret-wrong-secret", payload, now)
    status, _ = server.post("/api/v1/webhooks/device-removed", payload,
                            {webhook.HEADER: bad, "Content-Type": "application/json"})
    assert status == 401
    stale = webhook.sign(WEBHOOK_SECRET, payload, now - dt.timedelta(hours=1))
    status, _ = server.post("/api/v1/webhooks/device-removed", payload, {webhook.HEADER: stale})
    assert status == 401
    good = webhook.sign(WEBHOOK_SECRET, payload, now)
    status, body = server.post("/api/v1/webhooks/device-removed", payload, {webhook.HEADER: good})
    assert status == 200 and json.loads(body)["revoked"] == [s_hook]
    status, body = server.post("/api/v1/webhooks/device-removed", payload, {webhook.HEADER: good})
    assert status == 200 and json.loads(body)["revoked"] == []  # idempotent
    shown = json.loads(certgate("certs", "show", s_hook, config=initialized).stdout)
    assert shown["reason"] == "cessationOfOperation"
    assert ocsp_status(server, pki, out / "hook-dev.crt") == "revoked"
    assert ocsp_status(server, pki, out / "keep-dev.crt") == "good"

    # CRL PEM form, CRL number increasing, openssl verify -crl_check
    deadline = time.monotonic() + 8  # the complete CRL's staleness bound
    while not crl_lists(server, pki, tmp_path, s_hook):
        assert time.monotonic() < deadline, "webhook revocation not in the complete CRL"
        time.sleep(0.2)
    status, pem = server.get("/crl/staff.pem")
    assert status == 200 and pem.startswith(b"-----BEGIN X509 CRL-----")
    (tmp_path / "staff.pem").write_bytes(pem)
    for cert, expect in (("hook-dev", 2), ("keep-dev", 0)):
        r = subprocess.run([openssl, "verify", "-crl_check", "-CAfile", str(pki / "root.crt"),
                            "-untrusted", str(pki / "groups/staff/ca.crt"),
                            "-CRLfile", str(tmp_path / "staff.pem"), str(out / f"{cert}.crt")],
                           capture_output=True, text=True)
        assert (r.returncode == 0) == (expect == 0), r.stdout + r.stderr
        if expect:
            assert "certificate revoked" in r.stdout + r.stderr
    _, metrics = server.get("/metrics")
    text = metrics.decode()
    assert 'certgate_revocations_total{group="staff",reason="affiliationChanged"} 1.0' in text
    # made by the CLI in another process, counted once the watcher saw it
    assert 'certgate_revocations_total{group="staff",reason="keyCompromise"} 1.0' in text
    assert 'certgate_revocations_total{group="staff",reason="cessationOfOperation"} 1.0' in text
    assert 'certgate_webhook_requests_total{result="bad_signature"} 1.0' in text
    assert "certgate_crl_next_update_timestamp_seconds{group=\"staff\"}" in text

    # restart: all revocations still there
    server.stop()
    again = ServerProcess(initialized, tmp_path / "again.log").start()
    try:
        for name in ("cli-dev", "api-dev", "hook-dev"):
            assert ocsp_status(again, pki, out / f"{name}.crt") == "revoked"
        # the base CRL persisted next to the PKI was taken up, not rebuilt, and the complete
        # CRL lists all three
        assert stat.S_IMODE((pki / "crl" / "staff.base.crl").stat().st_mode) == 0o644
        for name in (s_cli, s_api, s_hook):
            assert crl_lists(again, pki, tmp_path, name)
        log = (tmp_path / "again.log").read_text()
        assert "persisted CRL taken up group=staff" in log, log[-3000:]
    finally:
        again.stop()


def test_unknown_crl_and_garbage_ocsp(server: ServerProcess) -> None:
    assert server.get("/crl/nope.crl")[0] == 404
    status, body = server.post("/ocsp/staff", b"garbage", {"Content-Type": "application/ocsp-request"})
    assert status == 200 and body == bytes.fromhex("30030a0101")  # malformedRequest
    assert server.get("/ocsp/staff/!!!notbase64")[0] == 200


def test_ocsp_presigned_no_nonce_until_the_status_changes(server: ServerProcess,
                                                          initialized: Path,
                                                          tmp_path: Path) -> None:
    """Without a nonce the server re-serves the response it signed (ocsp_reuse_seconds,
    default 60 s); with a nonce it signs every time; a revocation is in the next answer."""
    openssl = require_tool("openssl")
    pki = initialized.parent / "var" / "pki"
    out = tmp_path / "c"
    serial = issue(initialized, "presigned-dev", out)
    cert = out / "presigned-dev.crt"

    def ask(name: str, *flags: str) -> tuple[str, bytes]:
        resp = tmp_path / f"{name}.der"
        r = subprocess.run(
            [openssl, "ocsp", "-issuer", str(pki / "groups/staff/ca.crt"), "-cert", str(cert),
             "-url", server.http + "/ocsp/staff", "-CAfile", str(pki / "root.crt"),
             "-VAfile", str(pki / "groups/staff/ca.crt"), "-respout", str(resp), *flags],
            capture_output=True, text=True, timeout=30)
        assert "Response verify OK" in r.stderr + r.stdout, r.stderr + r.stdout
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(str(cert)))
        return line.split(":", 1)[1].strip(), resp.read_bytes()

    first, der1 = ask("a", "-no_nonce")
    second, der2 = ask("b", "-no_nonce")
    assert first == second == "good"
    assert der1 == der2  # the same signed response, served again

    n1, nonce1 = ask("n1")  # openssl sends a nonce by default and checks it is echoed
    n2, nonce2 = ask("n2")
    assert n1 == n2 == "good"
    assert len({der1, nonce1, nonce2}) == 3

    status, body = server.post(f"/api/v1/certificates/{serial}/revoke",
                               json.dumps({"reason": "keyCompromise"}).encode(), auth())
    assert status == 200, body
    after, der3 = ask("c", "-no_nonce")
    assert after == "revoked" and der3 != der1
