"""`certgate audit export` on SQLite and PostgreSQL: the store's rows as events, by time."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tomllib

from certgate.commands import audit_export
from certgate.settings import parse_settings
from tests.store_support import NOW, make_record


def _settings(site, tmp_path):
    storage = (f'url = "{site.url}"' if site.url else f'path = "{site.path}"')
    text = f"""
[storage]
{storage}
[[radius.clients]]
name = "wlc"
address = "10.0.0.0/24"
secret = "0123456789"
[groups.staff]
"""
    return parse_settings(tomllib.loads(text), tmp_path / "c.toml")


async def test_export_json_and_text_by_time_range(site, ca, tmp_path, capsys) -> None:
    store = await site.open()
    record = make_record(ca)
    await store.record_certificate(record, "cli:certs-issue", now=NOW)
    later = NOW + dt.timedelta(hours=1)
    await store.revoke(record.serial, "certificateHold", "api:token#0", now=later)
    await store.release_hold(record.serial, "webhook:device-removed",
                             now=later + dt.timedelta(hours=1))
    settings = _settings(site, tmp_path)

    def args(**kw) -> argparse.Namespace:
        return argparse.Namespace(**{"since": None, "until": None, "json": False, **kw})

    assert await audit_export.run(settings, args(json=True)) == 0
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"]["action"] for e in events] == [
        "certificate-issued", "certificate-held", "certificate-released"]
    assert err.strip() == "3 event(s)"
    assert events[1]["@timestamp"] == "2026-11-22T13:00:00.000+00:00"
    assert events[1]["x509"]["serial_number"] == record.serial_hex.upper()
    assert events[2]["certgate"]["actor"] == {"kind": "webhook", "name": "webhook:device-removed"}
    assert events[2]["certgate"]["group"] == "staff"

    window = args(since=later, until=later + dt.timedelta(hours=1))
    assert await audit_export.run(settings, window) == 0
    out, _ = capsys.readouterr()
    assert out == (f"2026-11-22T13:00:00.000+00:00 certificate-held success "
                   f"reason=certificateHold group=staff serial={record.serial_hex.upper()} "
                   "user=api:token#0\n")
