"""certgate.audit.events: the envelope, each event type's fields, store rows -> events."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from certgate.audit import events

NOW = dt.datetime(2026, 12, 7, 12, 30, 15, 123456, tzinfo=dt.UTC)


def test_envelope_ecs_fields_timestamp_and_version() -> None:
    ev = events.authentication(
        now=NOW, accepted=True, reason="ok", client="wlc-1", group="staff", tls_version="1.3",
        calling_station="02-00-00-00-00-01", identity="dev@example.test", serial=0xABC123,
        resumed=False, round_trips=6, duration_ms=12.345, detail="", node="node-a")
    assert ev["@timestamp"] == "2026-12-07T12:30:15.123+00:00"
    assert ev["ecs"] == {"version": events.ECS_VERSION}
    assert ev["event"] == {"kind": "event", "category": ["authentication"], "type": ["start"],
                           "action": "radius-authentication", "outcome": "success",
                           "reason": "ok", "provider": "radius", "dataset": "certgate.audit"}
    assert ev["log"]["level"] == "info"
    assert ev["user"] == {"name": "dev@example.test"}
    assert ev["tls"] == {"version": "1.3", "version_protocol": "tls"}
    assert ev["x509"] == {"serial_number": "ABC123"}
    assert ev["host"] == {"name": "node-a"}
    assert ev["certgate"]["audit"] == {"version": events.SCHEMA_VERSION}
    assert ev["certgate"]["group"] == "staff"
    assert ev["certgate"]["radius"] == {"client": "wlc-1", "calling_station_id": "02-00-00-00-00-01",
                                        "transport": "udp", "resumed": False, "round_trips": 6,
                                        "duration_ms": 12.3}
    json.dumps(ev)  # serialisable as it is


def test_reject_is_a_warning_and_absent_values_are_absent() -> None:
    ev = events.authentication(
        now=NOW, accepted=False, reason="unknown_ca", client="wlc-1", group=None,
        tls_version=None, calling_station=None, identity=None, serial=None, resumed=False,
        round_trips=3, duration_ms=4.0, detail="chain does not verify", node=None)
    assert ev["event"]["outcome"] == "failure" and ev["event"]["reason"] == "unknown_ca"
    assert ev["log"]["level"] == "warning"
    for absent in ("tls", "x509", "user", "host", "source"):
        assert absent not in ev
    assert "group" not in ev["certgate"]
    assert ev["certgate"]["radius"]["detail"] == "chain does not verify"


def test_outcome_is_checked() -> None:
    with pytest.raises(ValueError):
        events.event("x", "ok", now=NOW, category="iam", types=("info",))


def _row(action: str, details: dict | None = None, **kw) -> dict:
    return {"at": NOW, "actor": kw.get("actor", "cli:certs-issue"), "action": action,
            "serial": kw.get("serial", "0ABC"), "group": kw.get("group", "staff"),
            "details": details or {}}


def test_issue_with_challenge_is_issued_and_consumed() -> None:
    issued, consumed = events.from_record(_row(
        "issue", {"subject": "CN=dev", "profile": "device", "source": "scep", "supersedes": None,
                  "challenge": "jti-1"}, actor="scep:staff"))
    assert issued["event"]["action"] == "certificate-issued"
    assert issued["event"]["category"] == ["iam"] and issued["event"]["type"] == ["creation"]
    assert issued["x509"]["serial_number"] == "0ABC"
    assert issued["certgate"]["certificate"] == {"subject": "CN=dev", "profile": "device",
                                                 "source": "scep"}
    assert issued["certgate"]["actor"] == {"kind": "scep", "name": "scep:staff"}
    assert consumed["event"]["action"] == "challenge-consumed"
    assert consumed["certgate"]["challenge"] == {"jti": "jti-1"}


def test_renewal_and_supersede() -> None:
    (renewed,) = events.from_record(_row("issue", {"supersedes": "0AAA"}, actor="scep:staff"))
    assert renewed["event"]["action"] == "certificate-renewed"
    assert renewed["certgate"]["supersedes"] == "0AAA"
    (superseded,) = events.from_record(_row("revoke", {"reason": "superseded"},
                                            actor="scep:staff:renewal", serial="0AAA"))
    assert superseded["event"]["action"] == "certificate-superseded"
    assert superseded["event"]["reason"] == "superseded"


@pytest.mark.parametrize(("reason", "action"), [("keyCompromise", "certificate-revoked"),
                                                ("certificateHold", "certificate-held")])
def test_revocation_names_who(reason: str, action: str) -> None:
    (ev,) = events.from_record(_row("revoke", {"reason": reason, "comment": "lost"},
                                    actor="api:token#1"))
    assert ev["event"]["action"] == action and ev["event"]["reason"] == reason
    assert ev["user"]["name"] == "api:token#1"
    assert ev["certgate"]["actor"]["kind"] == "admin_api"
    assert ev["certgate"]["revocation"] == {"comment": "lost"}


def test_cli_rows_name_the_os_user_and_webhook_actor() -> None:
    (ev,) = events.from_record(_row("release-hold", {"os_user": "alice"}, actor="cli:revoke"))
    assert ev["event"]["action"] == "certificate-released"
    assert ev["user"]["name"] == "alice"
    assert ev["certgate"]["actor"] == {"kind": "cli", "name": "cli:revoke"}
    assert "details" not in ev["certgate"]  # os_user was the only detail
    (ev,) = events.from_record(_row("revoke", {"reason": "cessationOfOperation"},
                                    actor="webhook:device-removed"))
    assert ev["certgate"]["actor"]["kind"] == "webhook"


def test_challenges_requests_admin_failures_and_unknown_actions() -> None:
    (ev,) = events.from_record(_row("challenge-create:dynamic", {"jti": "j"}, serial=None))
    assert ev["event"]["action"] == "challenge-created"
    assert ev["certgate"]["challenge"] == {"kind": "dynamic", "jti": "j"}
    (ev,) = events.from_record(_row("request-approved", {"id": 3}, serial=None))
    assert ev["event"]["action"] == "request-approved"
    (ev,) = events.from_record(_row("admin-authentication",
                                    {"reason": "bad_token", "source_ip": "127.0.0.1",
                                     "path": "/api/v1/certificates"},
                                    actor="api:unauthenticated", serial=None, group=None))
    assert ev["event"]["outcome"] == "failure" and ev["event"]["reason"] == "bad_token"
    assert ev["source"]["ip"] == "127.0.0.1"
    assert ev["certgate"]["http"] == {"path": "/api/v1/certificates"}
    assert "user" not in ev  # nobody authenticated
    assert ev == events.admin_auth_failure(now=NOW, reason="bad_token", source_ip="127.0.0.1",
                                           path="/api/v1/certificates", node=None)
    (ev,) = events.from_record(_row("something-new", {"k": 1}))
    assert ev["event"]["action"] == "something-new" and ev["certgate"]["details"] == {"k": 1}


def test_server_certificate_row_has_no_group() -> None:
    (ev,) = events.from_record(_row("issue", {"profile": "server"}, group="-"))
    assert "group" not in ev["certgate"]


def test_stored_authentication_is_the_event_itself() -> None:
    live = events.config_loaded(now=NOW, path="/etc/certgate.toml", sha256="00", groups=["a"],
                                node="n")
    assert events.from_record(_row("radius-authentication", {"event": live})) == [live]


def test_text_line_escapes_wire_values() -> None:
    ev = events.challenge_refused(now=NOW, group="staff", reason="replay", detail="",
                                  transaction_id=None, source_ip="10.0.0.1\nforged", node=None)
    line = events.text_line(ev)
    assert "\n" not in line
    assert line.startswith("2026-12-07T12:30:15.123+00:00 challenge-refused failure reason=replay")
    assert "source=10.0.0.1\\nforged" in line
