"""`certgate serve` with [server] log_format = "json": every line a JSON object, fields as fields."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.support import TOKEN, ServerProcess, certgate, write_config

pytestmark = pytest.mark.integration

BASE = ("timestamp", "level", "logger", "msg")


def _lines(proc: ServerProcess) -> list[dict]:
    out = []
    for line in proc.log().splitlines():
        assert line.startswith("{"), f"not a JSON line: {line!r}"
        obj = json.loads(line)
        assert list(obj)[:4] == list(BASE), obj
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", obj["timestamp"])
        out.append(obj)
    return out


def _wait_for(proc: ServerProcess, pred) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [o for o in _lines(proc) if pred(o)]
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError("no such log line:\n" + proc.log())


def test_serve_writes_json_lines_with_fields(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg")
    config.write_text(config.read_text().replace('data_dir = "var"\n',
                                                 'data_dir = "var"\nlog_format = "json"\n', 1))
    certgate("init", config=config)
    serial = certgate("certs", "issue", "--group", "staff", "--cn", "dev-1", "--out",
                      str(tmp_path / "out"), config=config).stdout.strip()
    proc = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        status, _ = proc.post(f"/api/v1/certificates/{serial}/revoke",
                              b'{"reason": "keyCompromise"}', auth)
        assert status == 200
        revoked = _wait_for(proc, lambda o: o["msg"].startswith("revoked serial="))
        assert {k: revoked[k] for k in ("serial", "group", "reason", "actor")} == {
            "serial": serial.lower(), "group": "staff", "reason": "keyCompromise",
            "actor": "api:token#0"}

        status, _ = proc.post("/scep/guests?operation=PKIOperation", b"\x30\x03\x02\x01\x00")
        assert status == 400
        bad = _wait_for(proc, lambda o: o.get("result") == "bad_request")
        assert bad["logger"] == "certgate.scep" and bad["group"] == "guests" and bad["reason"]

        crl = _wait_for(proc, lambda o: o["msg"].startswith("CRL published") and
                        o["group"] == "staff" and o["entries"] == 1)
        assert isinstance(crl["number"], int) and crl["level"] == "info"
    finally:
        assert proc.stop() == 0
    assert _lines(proc)[-1]["msg"] == "stopped"
