"""certgate.audit.wiring on a real SQLite store: committed rows streamed once, RADIUS
results kept with store_authentications and exported unchanged, CLI rows to the file."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path

from certgate.audit import events
from certgate.audit.wiring import StoreSink, attach_direct, build_audit, radius_observer
from certgate.settings import parse_settings
from radius.results import AuthResult
from store import open_store

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def settings(tmp_path: Path, audit: str):
    text = f"""
[server]
node_name = "node-a"
[storage]
path = "{tmp_path / 's.sqlite'}"
[[radius.clients]]
name = "wlc"
address = "10.0.0.0/24"
secret = "0123456789"
[groups.staff]
[audit]
{audit}
"""
    return parse_settings(tomllib.loads(text), tmp_path / "c.toml")


def _result(accepted: bool = True) -> AuthResult:
    return AuthResult(accepted, "ok" if accepted else "revoked", "wlc", "staff", "1.3",
                      "02-00-00-00-00-01", "anonymous", "dev@example.test" if accepted else None,
                      0xABC if accepted else None, False, 6, 12.0, "", NOW.timestamp())


async def test_server_streams_committed_rows_and_keeps_authentications(tmp_path: Path) -> None:
    s = settings(tmp_path, 'file = "audit.json"\nstore_authentications = true')
    store = await open_store(path=s.storage.path)
    try:
        audit = build_audit(s, store)
        assert any(isinstance(k, StoreSink) for k in audit.sinks)
        await audit.start()
        await store.audit("cli:x", "request-approved", details={"id": 1})
        observe = radius_observer(audit)
        observe(_result(True))
        observe(_result(False))
        await audit.aclose()
        lines = [json.loads(x) for x in (tmp_path / "audit.json").read_text().splitlines()]
        assert [e["event"]["action"] for e in lines] == [
            "request-approved", "radius-authentication", "radius-authentication"]
        accept = lines[1]
        assert accept["user"]["name"] == "dev@example.test" and accept["x509"] == {
            "serial_number": "ABC"}
        assert accept["host"]["name"] == "node-a"
        assert lines[2]["user"]["name"] == "anonymous"  # the outer identity of a reject
        exported = [e async for row in store.audit_between()
                    for e in events.from_record(row, "node-a")]
        assert exported[1:] == lines[1:]  # stored authentications export unchanged
        assert exported[0]["event"]["action"] == "request-approved"
    finally:
        await store.close()


async def test_without_sinks_nothing_is_hooked(tmp_path: Path) -> None:
    s = settings(tmp_path, "")
    store = await open_store(path=s.storage.path)
    try:
        audit = build_audit(s, store)
        assert not audit.enabled and radius_observer(audit) is None
        assert store.on_audit is None
    finally:
        await store.close()


async def test_cli_rows_go_to_the_file_with_the_os_user(tmp_path: Path) -> None:
    s = settings(tmp_path, 'file = "audit.json"')
    store = await open_store(path=s.storage.path)
    try:
        attach_direct(s, store)
        await store.audit("cli:requests-approve", "request-approved", details={"id": 1})
    finally:
        await store.close()
    (ev,) = [json.loads(x) for x in (tmp_path / "audit.json").read_text().splitlines()]
    assert ev["event"]["action"] == "request-approved"
    assert ev["certgate"]["actor"] == {"kind": "cli", "name": "cli:requests-approve"}
    assert ev["user"]["name"] and ev["user"]["name"] != "cli:requests-approve"  # the OS user
