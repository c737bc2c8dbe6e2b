"""Every admin API and CLI input is checked against a stated limit: a 400 / usage error that
names the field and the limit, never an HTTP 500 or a traceback (issue #10 §4, §10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from revocation import webhook
from tests.support import TOKEN, ServerProcess, certgate

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def _post(server: ServerProcess, path: str, body: object, headers: dict | None = None
          ) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = server.post(path, raw, headers or AUTH)
    return status, json.loads(answer) if answer.startswith(b"{") else {"raw": answer.decode()}


def _assert_refused(server: ServerProcess, path: str, body: object, names: list[str]) -> None:
    """A 400 whose error names every one of `names` (the field and the limit)."""
    status, answer = _post(server, path, body)
    assert status == 400, answer
    for name in names:
        assert name in answer["error"], answer


@pytest.mark.parametrize(("body", "names"), [
    ({"ttl": "99999999999d"}, ["ttl", "maximum of 7d"]),
    ({"ttl": "8d"}, ["ttl", "maximum of 7d"]),
    ({"ttl": 10**30}, ["ttl", "maximum"]),
    ({"ttl": -5}, ["ttl", "positive"]),
    ({"ttl": "1" * 5000}, ["invalid ttl"]),
    ({"ttl": ["1h"]}, ["ttl must be a duration"]),
    ({"ttl": True}, ["ttl must be a duration"]),
    ({"sans": "dns:x"}, ["sans must be a list"]),
    ({"subject": 5}, ["subject must be a string"]),
    ({"colour": "red"}, ["unknown field", "colour"]),
    ({"subject": "re:(a)\\1"}, ["subject: pattern", "no backreferences"]),
    ({"sans": ["re:" + "a" * 300]}, ["sans: pattern longer than 256"]),
])
def test_challenge_api_refuses_out_of_range_input(server: ServerProcess, body: dict,
                                                  names: list[str]) -> None:
    _assert_refused(server, "/api/v1/groups/staff/challenges", body, names)


@pytest.mark.parametrize(("body", "names"), [
    ({"reason": "bogus"}, ["reason", "unknown revocation reason"]),
    ({"reason": 5}, ["reason must be a string"]),
    ({"reason": "keyCompromise", "comment": "x" * 5000}, ["comment", "1024"]),
    ({"reason": "keyCompromise", "comment": {"a": 1}}, ["comment must be a string"]),
    ({"reason": "keyCompromise", "actor": "me"}, ["unknown field", "actor"]),
    (b"[1, 2]", ["JSON object"]),
    (b"{not json", ["JSON object"]),
])
def test_revoke_api_refuses_bad_bodies(server: ServerProcess, body: object,
                                       names: list[str]) -> None:
    _assert_refused(server, "/api/v1/certificates/01/revoke", body, names)


def test_inventory_query_parameters_are_checked(server: ServerProcess) -> None:
    for query, name in (("status=gone", "status"), ("group=nosuch", "group"),
                        ("device_id=" + "d" * 300, "device_id"), ("limit=5", "unknown parameter")):
        status, answer = server.get(f"/api/v1/certificates?{query}", AUTH)
        assert status == 400 and name in json.loads(answer)["error"], (query, answer)
    status, _ = server.get("/api/v1/certificates/" + "f" * 5000, AUTH)
    assert status == 400, status  # longer than 20 octets (RFC 5280): refused, not looked up


def test_admin_token_is_compared_exactly(server: ServerProcess) -> None:
    for header in (f"Bearer  {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
                   f"Bearer {TOKEN.upper()}", f"Basic {TOKEN}", "Bearer"):
        status, _ = server.get("/api/v1/certificates", {"Authorization": header})
        assert status == 401, header
    assert server.get("/api/v1/certificates", {"Authorization": f"bearer {TOKEN}"})[0] == 200


def test_webhook_without_a_valid_signature_is_401(server: ServerProcess) -> None:
    body = json.dumps({"device_id": "d", "event": "device-removed", "event_id": "e1"}).encode()
    for signature in (None, "garbage", "t=1,v1=" + "0" * 64):
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers[webhook.HEADER] = signature
        status, _ = server.post("/api/v1/webhooks/device-removed", body, headers)
        assert status == 401, signature
    assert "Traceback" not in server.log()


def test_cli_refuses_out_of_range_values_with_a_usage_error(initialized: Path,
                                                            tmp_path: Path) -> None:
    cases = [
        (["challenge", "create", "--group", "staff", "--ttl", "99999999999d"], "maximum of 7d"),
        (["certs", "issue", "--group", "staff", "--cn", "x", "--out", str(tmp_path),
          "--days", "99999999999"], "--days: 99999999999 is outside 1..3650"),
        (["certs", "issue", "--group", "staff", "--cn", "x", "--out", str(tmp_path),
          "--days", "0"], "outside 1..3650"),
        (["certs", "list", "--expiring", "99999999999d"], "--expiring"),
        (["requests", "approve", "9" * 30], "outside 1.."),
    ]
    for args, message in cases:
        r = certgate(*args, config=initialized, check=False)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
