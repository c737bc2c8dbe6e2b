"""Helpers for the CoA tests: a config with a quarantine, the FreeRADIUS CoA server, accounting
records sent with pyrad (the NAS side of the accounting a real NAS sends), webhook calls."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from pathlib import Path

from tests.support import REPO, SECRET, WEBHOOK_SECRET, ServerProcess

FR_COA = REPO / "tests" / "peers" / "freeradius_coa.sh"
QUARANTINE = 'quarantine_vlan = 999\nquarantine_filter_id = "quarantine-acl"\n'


def add_quarantine(config: Path, group: str = "staff", keys: str = QUARANTINE) -> None:
    """Give [groups.GROUP] of a tests.support config its quarantine keys."""
    text = config.read_text()
    head = f"[groups.{group}]\n"
    assert head in text
    config.write_text(text.replace(head, head + keys, 1))


def send_accounting(acct: tuple[str, int], *, session_id: str, station: str, cls: bytes,
                    status: str = "Start", nas_identifier: str = "test-nas") -> None:
    from pyrad.client import Client
    from pyrad.dictionary import Dictionary

    client = Client(server=acct[0], acctport=acct[1], secret=SECRET.encode(),
                    dict=Dictionary(str(REPO / "config" / "dictionary.certgate")))
    client.timeout, client.retries = 3, 2
    req = client.CreateAcctPacket()
    req["Acct-Status-Type"] = status
    req["Acct-Session-Id"] = session_id
    req["Calling-Station-Id"] = station
    req["NAS-IP-Address"] = "127.0.0.1"
    req["NAS-Identifier"] = nas_identifier
    req["User-Name"] = session_id
    req["Class"] = cls
    reply = client.SendPacket(req)
    assert reply.code == 5, reply.code  # Accounting-Response: durable in the store


def wait_for(predicate, timeout: float = 15.0, what: str = "condition", step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(step)


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    _, body = server.get("/metrics")
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.decode().splitlines():
        if line.startswith(f"certgate_{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def webhook(server: ServerProcess, event: str, device_id: str, event_id: str,
            occurred_at: str | None = None) -> tuple[int, dict]:
    from revocation.webhook import HEADER, sign

    doc = {"device_id": device_id, "event": event, "event_id": event_id}
    if occurred_at is not None:
        doc["occurred_at"] = occurred_at
    body = json.dumps(doc).encode()
    status, out = server.post(f"/api/v1/webhooks/{event}", body, {
        HEADER: sign(WEBHOOK_SECRET, body, dt.datetime.now(dt.UTC)),
        "Content-Type": "application/json"})
    return status, json.loads(out)


def sign_body(body: bytes) -> dict[str, str]:
    from revocation.webhook import HEADER, sign

    return {HEADER: sign(WEBHOOK_SECRET, body, dt.datetime.now(dt.UTC)),
            "Content-Type": "application/json"}


class FreeRadiusCoa:
    """FreeRADIUS 3.x `listen { type = coa }` started by tests/peers/freeradius_coa.sh."""

    def __init__(self, work: Path, port: int, nak_station: str = "none") -> None:
        self.work, self.port, self.nak_station = work, port, nak_station

    def start(self) -> FreeRadiusCoa:
        r = subprocess.run([str(FR_COA), "start", "-w", str(self.work), "-p", str(self.port),
                            "-s", SECRET, "--nak-station", self.nak_station],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        return self

    def stop(self) -> None:
        subprocess.run([str(FR_COA), "stop", "-w", str(self.work)], timeout=30)

    def requests(self) -> list[dict[str, str]]:
        """Every request FreeRADIUS accepted from us, from its detail file, oldest first:
        attribute name -> value (quotes removed; tags as FreeRADIUS writes them, Name:N)."""
        path = self.work / "log" / "coa-detail"
        if not path.exists():
            return []
        out: list[dict[str, str]] = []
        for block in re.split(r"\n(?=\S)", path.read_text(errors="replace")):
            attrs: dict[str, str] = {}
            for line in block.splitlines()[1:]:
                name, sep, value = line.strip().partition(" = ")
                if sep:
                    attrs[name.split(":")[0]] = value.strip('"')
            if attrs:
                out.append(attrs)
        return out

    def console(self) -> str:
        return (self.work / "console.log").read_text(errors="replace")
