"""Issue 12 §5: the MDM issuance check and reconciliation, against `certgate serve`, with a
real HTTP server playing the MDM (an aiohttp app on loopback, in a thread of the test),
micromdm `scepclient` enrolling and eapol_test authenticating.

The MDM app checks what certgate sends independently of certgate's code: the
X-Certgate-Signature HMAC recomputed with hashlib/hmac, the bearer tokens, the key
fingerprint against the certificate scepclient ends up with.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.integration.test_scep_scepclient import ra_fingerprint
from tests.support import (
    TOKEN,
    ServerProcess,
    certgate,
    free_port,
    require_tool,
    run_eapol_test,
    write_config,
)

pytestmark = pytest.mark.integration

ISSUANCE_SECRET = "mdm-issuance-secret-0123456789"
ISSUANCE_TOKEN = "mdm-issuance-bearer-0123456789"
RECONCILE_TOKEN = "mdm-reconcile-bearer-0123456789"
FLEET = [f"F{i:02d}" for i in range(40)]


class Mdm:
    """The MDM: /issuance answers per device id, /devices lists `devices` in pages."""

    def __init__(self) -> None:
        self.port = free_port()
        self.decisions: dict[str, str] = {}  # device id -> allow | deny | slow | error
        self.received: list[dict] = []
        self.devices: list[str] = []
        self.page_size = 7
        self.fail_page: int | None = None  # this page (1-based) answers 500
        self.pages_served = 0
        self.bad_requests: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def issuance(self, request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get("X-Certgate-Signature", "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        expected = hmac.new(ISSUANCE_SECRET.encode(), parts.get("t", "").encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts.get("v1", "")) \
                or abs(time.time() - int(parts.get("t", "0"))) > 300:
            self.bad_requests.append("signature")
            return web.json_response({"error": "bad signature"}, status=401)
        if request.headers.get("Authorization") != f"Bearer {ISSUANCE_TOKEN}":
            self.bad_requests.append("token")
            return web.json_response({"error": "bad token"}, status=401)
        query = json.loads(body)
        self.received.append(query)
        what = self.decisions.get(query["device_id"], "deny")
        if what == "slow":
            await asyncio.sleep(4)
        if what == "error":
            return web.Response(status=500, text="MDM database unavailable")
        if what == "allow":
            return web.json_response({"decision": "allow", "request_id": query["request_id"]})
        return web.json_response({"decision": "deny", "reason": "device not compliant"})

    async def device_list(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {RECONCILE_TOKEN}":
            self.bad_requests.append("reconcile token")
            return web.json_response({"error": "bad token"}, status=401)
        start = int(request.query.get("cursor", "0"))
        page = start // self.page_size + 1
        self.pages_served += 1
        if page == self.fail_page:
            return web.Response(status=500, text="try later")
        chunk = self.devices[start:start + self.page_size]
        nxt = start + self.page_size
        return web.json_response({"devices": chunk, "total": len(self.devices),
                                  "next_cursor": str(nxt) if nxt < len(self.devices) else None})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/issuance", self.issuance)
        app.router.add_get("/devices", self.device_list)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> Mdm:
        self._thread.start()
        assert self._ready.wait(10), "MDM app did not start"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def config_text(mdm_port: int, closed_port: int) -> str:
    return f"""
[groups.lab]
vlan = 30
legacy_algorithms = true
issuance_webhook = "http://127.0.0.1:{mdm_port}/issuance"
issuance_webhook_secret = "{ISSUANCE_SECRET}"
issuance_webhook_token = "{ISSUANCE_TOKEN}"
issuance_webhook_timeout = 1.0

[groups.down]
legacy_algorithms = true
issuance_webhook = "http://127.0.0.1:{closed_port}/issuance"
issuance_webhook_secret = "{ISSUANCE_SECRET}"

[groups.fleet]
vlan = 50
validity_days = 30

[mdm]
reconcile_url = "http://127.0.0.1:{mdm_port}/devices"
reconcile_token = "{RECONCILE_TOKEN}"
reconcile_groups = ["fleet"]
reconcile_interval = 1
reconcile_min_age = 0
max_pages = 10

[audit]
file = "audit.json"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    require_tool("scepclient")
    base = tmp_path_factory.mktemp("mdm")
    mdm = Mdm().start()
    config = write_config(base / "cg", extra=config_text(mdm.port, free_port()))
    certgate("init", config=config)
    server = ServerProcess(config, base / "serve.log").start()
    SERVER[:] = [server]
    yield config, server, mdm, base
    server.stop()
    mdm.stop()


SERVER: list[ServerProcess] = []  # the module's server: challenges and inventory by its API


def challenge(config: Path, group: str, cn: str, device_id: str) -> str:
    status, body = SERVER[0].post(f"/api/v1/groups/{group}/challenges",
                                  json.dumps({"subject": cn, "device_id": device_id}).encode(),
                                  {"Authorization": f"Bearer {TOKEN}",
                                   "Content-Type": "application/json"})
    assert status == 201, body
    return json.loads(body)["challenge"]


def scepclient(server: ServerProcess, config: Path, workdir: Path, group: str, cn: str,
               token: str) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["scepclient", "-server-url", f"{server.http}/scep/{group}/pkiclient.exe",
         "-private-key", str(workdir / "dev.key"), "-certificate", str(workdir / "dev.pem"),
         "-cn", cn, "-challenge", token, "-ca-fingerprint", ra_fingerprint(config, group)],
        capture_output=True, text=True, timeout=60)


def refused(result: subprocess.CompletedProcess) -> None:
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "request failed, failInfo: badRequest" in out, out


def metric(server: ServerProcess, line: str) -> float:
    for row in server.get("/metrics")[1].decode().splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    raise AssertionError(f"no series {line}")


def inventory(config: Path, group: str) -> dict[str, dict]:
    status, body = SERVER[0].get(f"/api/v1/certificates?group={group}",
                                 {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    rows = json.loads(body)
    return {r["subject"].split(",")[0]: r for r in rows}  # by CN (scepclient adds OU, O, C)


def audit_events(config: Path) -> list[dict]:
    path = config.parent / "audit.json"
    if not path.exists():
        return []
    text = path.read_text()  # the writer thread may be mid-line: only complete lines
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def wait_for(what, timeout: float = 20.0, step: float = 0.25):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def check(server: ServerProcess, group: str, result: str) -> str:
    return f'certgate_scep_issuance_checks_total{{group="{group}",result="{result}"}}'


def test_issuance_check_allow_deny_and_mdm_errors(env, tmp_path: Path) -> None:
    config, server, mdm, _ = env
    for result in ("allowed", "denied", "timeout", "unavailable", "bad_answer", "failed_open"):
        assert metric(server, check(server, "lab", result)) == 0  # exported at 0 from the start

    # allow -> issued; what the MDM got is the documented, signed query
    mdm.decisions["DEV-A"] = "allow"
    r = scepclient(server, config, tmp_path / "a", "lab", "mdm-a", challenge(config, "lab", "mdm-a", "DEV-A"))
    assert r.returncode == 0, r.stdout + r.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "a" / "dev.pem").read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    (query,) = [q for q in mdm.received if q["device_id"] == "DEV-A"]
    assert query["group"] == "lab" and query["kind"] == "enrollment"
    assert query["subject"].startswith("CN=mdm-a,") and query["subject_cn"] == "mdm-a"
    assert query["key_fingerprint"] == "sha256:" + hashlib.sha256(spki).hexdigest()
    assert query["key_type"] == "rsa-2048" and query["sans"] == []
    assert inventory(config, "lab")["CN=mdm-a"]["device_id"] == "DEV-A"
    assert metric(server, check(server, "lab", "allowed")) == 1

    # deny -> signed FAILURE, nothing issued; the same challenge enrolls once the MDM allows
    token = challenge(config, "lab", "mdm-b", "DEV-B")
    refused(scepclient(server, config, tmp_path / "b", "lab", "mdm-b", token))
    assert "CN=mdm-b" not in inventory(config, "lab")
    assert metric(server, check(server, "lab", "denied")) == 1
    assert metric(server, 'certgate_scep_challenge_failures_total{group="lab",'
                          'reason="issuance_denied"}') == 1
    mdm.decisions["DEV-B"] = "allow"
    r = scepclient(server, config, tmp_path / "b", "lab", "mdm-b", token)
    assert r.returncode == 0, r.stdout + r.stderr
    assert inventory(config, "lab")["CN=mdm-b"]["status"] == "active"

    # the MDM too slow (timeout 1 s), failing (HTTP 500), or not listening: fail closed
    mdm.decisions.update({"DEV-C": "slow", "DEV-D": "error"})
    refused(scepclient(server, config, tmp_path / "c", "lab", "mdm-c",
                       challenge(config, "lab", "mdm-c", "DEV-C")))
    refused(scepclient(server, config, tmp_path / "d", "lab", "mdm-d",
                       challenge(config, "lab", "mdm-d", "DEV-D")))
    refused(scepclient(server, config, tmp_path / "e", "down", "mdm-e",
                       challenge(config, "down", "mdm-e", "DEV-E")))
    assert metric(server, check(server, "lab", "timeout")) == 1
    assert metric(server, check(server, "lab", "unavailable")) == 1
    assert metric(server, check(server, "down", "unavailable")) == 1
    assert not {"CN=mdm-c", "CN=mdm-d"} & set(inventory(config, "lab"))
    assert inventory(config, "down") == {}
    assert mdm.bad_requests == []

    def refusals() -> dict[str, dict]:
        return {e["certgate"]["mdm"]["device_id"]: e for e in audit_events(config)
                if e["event"]["action"] == "issuance-check-refused"}

    assert wait_for(lambda: len(refusals()) == 4, timeout=5)
    got = refusals()
    assert set(got) == {"DEV-B", "DEV-C", "DEV-D", "DEV-E"}
    assert got["DEV-B"]["event"]["reason"] == "issuance_denied"
    assert got["DEV-B"]["certgate"]["mdm"]["detail"] == "device not compliant"
    assert got["DEV-C"]["event"]["reason"] == "issuance_check_timeout"
    assert got["DEV-E"]["event"]["reason"] == "issuance_check_unavailable"
    assert ISSUANCE_SECRET not in server.log() and ISSUANCE_TOKEN not in server.log()
    assert "Traceback" not in server.log()


def revoked_in_fleet(config: Path) -> dict[str, str]:
    return {row["device_id"]: row["reason"] for row in inventory(config, "fleet").values()
            if row["status"] == "revoked"}


def test_reconciliation_revokes_missing_devices_and_brakes(env, tmp_path: Path) -> None:
    config, server, mdm, _ = env
    pki = config.parent / "var" / "pki"
    mdm.devices = list(FLEET)
    csv = tmp_path / "fleet.csv"
    csv.write_text("cn,device_id\n" + "".join(f"fleet-{d},{d}\n" for d in FLEET))
    certgate("certs", "issue", "--group", "fleet", "--from", str(csv), "--out", str(tmp_path),
             config=config)
    ok = 'certgate_mdm_reconcile_runs_total{result="ok"}'
    seen = metric(server, ok)
    assert wait_for(lambda: metric(server, ok) >= seen + 2), server.log()[-3000:]
    assert revoked_in_fleet(config) == {}  # every device listed (over 6 pages): nothing

    # F00 leaves the MDM: exactly its certificate is revoked (1 of 40, under 5 %)
    mdm.devices.remove("F00")
    assert wait_for(lambda: revoked_in_fleet(config)), server.log()[-3000:]
    assert revoked_in_fleet(config) == {"F00": "cessationOfOperation"}
    root = pki / "root.crt"
    code, out = run_eapol_test(server.radius, root, tmp_path / "fleet-F00.chain.pem",
                               tmp_path / "fleet-F00.key", tmp_path, identity="fleet-F00")
    assert code != 0 and "Access-Reject" in out, out[-3000:]
    code, out = run_eapol_test(server.radius, root, tmp_path / "fleet-F01.chain.pem",
                               tmp_path / "fleet-F01.key", tmp_path, identity="fleet-F01")
    assert code == 0 and "MPPE keys OK: 1  mismatch: 0" in out, out[-3000:]
    events = [e for e in audit_events(config) if e["event"]["action"] == "certificate-revoked"
              and e["certgate"].get("revocation", {}).get("device_id") == "F00"]
    assert len(events) == 1 and events[0]["certgate"]["actor"] == {"kind": "reconcile",
                                                                   "name": "reconcile"}
    assert events[0]["event"]["reason"] == "cessationOfOperation"

    # a page failing: the fetch is incomplete, nothing is revoked
    mdm.devices.remove("F39")
    mdm.fail_page = 3
    failed = 'certgate_mdm_reconcile_runs_total{result="fetch_failed"}'
    seen = metric(server, failed)
    assert wait_for(lambda: metric(server, failed) >= seen + 2)
    assert revoked_in_fleet(config) == {"F00": "cessationOfOperation"}
    cli = certgate("reconcile", "--confirm", config=config, check=False)
    assert cli.returncode == 1 and "http_status: HTTP 500" in cli.stderr, cli.stderr
    assert "nothing revoked" in cli.stderr and revoked_in_fleet(config) == {"F00": "cessationOfOperation"}
    mdm.fail_page = None
    assert wait_for(lambda: "F39" in revoked_in_fleet(config))  # 1 of 39

    # three more leave at once (3 of 38 = 7.9 % > 5 %): the brake holds, nothing is revoked
    for d in ("F01", "F02", "F03"):
        mdm.devices.remove(d)
    brake = 'certgate_mdm_reconcile_brake_engaged{group="fleet"}'
    assert wait_for(lambda: metric(server, brake) == 1), server.log()[-3000:]
    time.sleep(1.5)  # another pass or two: still braked
    assert metric(server, brake) == 1
    assert metric(server, 'certgate_mdm_reconcile_runs_total{result="braked"}') >= 2
    assert set(revoked_in_fleet(config)) == {"F00", "F39"}
    assert "result=braked group=fleet" in server.log()
    brakes = [e for e in audit_events(config) if e["event"]["action"] == "reconcile-braked"]
    assert len(brakes) == 1, brakes  # on engaging, not once per pass
    assert brakes[0]["event"]["outcome"] == "failure" and brakes[0]["log"]["level"] == "error"
    assert brakes[0]["certgate"]["group"] == "fleet"
    assert brakes[0]["certgate"]["mdm"]["missing"] == 3
    assert brakes[0]["certgate"]["mdm"]["max_revoke_fraction"] == 0.05

    # the dry run shows the plan and changes nothing; --confirm applies it past the brake
    dry = certgate("reconcile", config=config)
    assert "BRAKE" in dry.stdout and "dry run: would revoke 3 certificate(s)" in dry.stdout, dry.stdout
    for d in ("F01", "F02", "F03"):
        assert f"device_id={d} CN=fleet-{d}" in dry.stdout, dry.stdout
    assert set(revoked_in_fleet(config)) == {"F00", "F39"}
    plan = json.loads(certgate("reconcile", "--json", config=config).stdout)
    assert plan["result"] == "braked" and plan["revoked"] == []
    confirmed = certgate("reconcile", "--confirm", config=config)
    # 3, unless a pass of the server ran between two of the CLI's revocations (then below
    # the brake, it revoked the rest itself: "(1 already revoked)")
    assert re.search(r"revoked [123] certificate\(s\) \([012] already revoked\)",
                     confirmed.stdout), confirmed.stdout
    assert revoked_in_fleet(config) == dict.fromkeys(("F00", "F01", "F02", "F03", "F39"),
                                                     "cessationOfOperation")
    assert wait_for(lambda: metric(server, brake) == 0)  # the next pass finds nothing to do
    actors = {e["certgate"]["revocation"]["device_id"]: e["certgate"]["actor"]["name"]
              for e in audit_events(config) if e["event"]["action"] == "certificate-revoked"
              and "device_id" in e["certgate"].get("revocation", {})}
    assert {d: actors.pop(d) for d in ("F00", "F39")} == {"F00": "reconcile", "F39": "reconcile"}
    assert set(actors) == {"F01", "F02", "F03"} and actors["F01"] == "reconcile:cli"
    assert set(actors.values()) <= {"reconcile:cli", "reconcile"}
    assert mdm.bad_requests == [] and RECONCILE_TOKEN not in server.log()
    assert "Traceback" not in server.log()
