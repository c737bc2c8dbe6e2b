"""`certgate explain` and /api/v1/explain agree with real authentications.

The certificates of test_eaptls.Lab (issued by certgate, or forged from its PKI files: expired,
never recorded, non-group intermediate under our root, foreign root with copied DNs), plus one
revoked and one put on hold through the admin API while `certgate serve` runs. Each goes
through `certgate explain` (CLI: the store), POST /api/v1/explain (the node's own RADIUS
decision) and wpa_supplicant's eapol_test against the running server, TLS 1.2 and 1.3. The
server's verdict is read from certgate_eap_authentications_total (the series that moved):
accept/reject, reason and group must be the same three times, and an Access-Accept must carry
every attribute explain listed, with the same value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_eaptls import Lab
from tests.support import TOKEN, ServerProcess, accept_attributes, certgate

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CASES = {  # name -> (verdict, reason, group): what all three must say
    "staff-ok": ("accept", "ok", "staff"),
    "guests-ok": ("accept", "ok", "guests"),
    "staff-revoked": ("reject", "revoked", "staff"),
    "staff-device": ("reject", "revoked", "staff"),  # certificateHold
    "staff-expired": ("reject", "expired", None),
    "unrecorded": ("reject", "not_issued", "staff"),
    "nongroup": ("reject", "unknown_group", None),
    "rogue": ("reject", "unknown_issuer", None),
}


def _auth_counts(server: ServerProcess) -> dict[tuple[str, str, str], float]:
    _, body = server.get("/metrics")
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name != "certgate_eap_authentications":
            continue
        for s in family.samples:
            if s.name.endswith("_total"):
                key = (s.labels["result"], s.labels["reason"], s.labels["group"])
                counts[key] = counts.get(key, 0.0) + s.value  # summed over tls_version
    return counts


def _radius_verdict(server: ServerProcess, lab: Lab, name: str, tls: str
                    ) -> tuple[tuple[str, str, str | None], int, str]:
    before = _auth_counts(server)
    code, out = lab.eapol(server, name, tls)
    after = _auth_counts(server)
    moved = [k for k, v in after.items() if v != before.get(k, 0.0)]
    assert len(moved) == 1, (name, tls, moved, out[-2000:])
    result, reason, group = moved[0]
    return (result, reason, None if group == "none" else group), code, out


def _eapol_attributes(accept: str) -> dict[int, list[tuple[int, str | None]]]:
    """type -> [(length, value as printed)]; eapol_test prints no value for attributes its
    dictionary lacks (Filter-Id: "Attribute 11 (?Unknown?) length=11"), only the length."""
    found: dict[int, list[tuple[int, str | None]]] = {}
    for attr, length, value in re.findall(
            r"Attribute (\d+) \([^)]*\) length=(\d+)\n(?:\s+Value: (.*)\n)?", accept + "\n"):
        found.setdefault(int(attr), []).append((int(length), value.strip() or None))
    return found


def _matches(attr: dict, length: int, printed: str | None) -> bool:
    """eapol_test prints a value as 'text', hex or a decimal integer, or not at all."""
    value = attr["value"]
    raw = value.to_bytes(4, "big") if isinstance(value, int) else value.encode()
    if length != len(raw) + 2:
        return False
    if printed is None:
        return True
    return printed in {f"'{value}'", raw.hex(), str(value) if isinstance(value, int) else ""}


def test_explain_agrees_with_eapol_test(server: ServerProcess, lab: Lab) -> None:
    for name, reason in (("staff-revoked", "keyCompromise"), ("staff-device", "certificateHold")):
        status, body = server.post(f"/api/v1/certificates/{lab.serials[name]}/revoke",
                                   json.dumps({"reason": reason}).encode(),
                                   {**AUTH, "Content-Type": "application/json"})
        assert status == 200, body

    for name, expected in CASES.items():
        chain = lab.dir / f"{name}.chain.pem"
        cli = certgate("explain", str(chain), "--json", config=lab.config, check=False)
        assert cli.returncode == (0 if expected[0] == "accept" else 1), (name, cli.stderr)
        by_cli = json.loads(cli.stdout)
        status, body = server.post("/api/v1/explain", chain.read_bytes(), AUTH)
        assert status == 200, body
        by_api = json.loads(body)
        for answer in (by_cli, by_api):
            assert (answer["verdict"], answer["reason"], answer["group"]) == expected, \
                (name, answer["source"], answer["detail"])
        for tls in ("1.2", "1.3"):
            radius, code, out = _radius_verdict(server, lab, name, tls)
            assert radius == expected, (name, tls, radius, by_cli["detail"])
            assert (code == 0) is (expected[0] == "accept"), (name, tls, out[-2000:])
            if expected[0] != "accept":
                assert "Access-Reject" in out
                continue
            sent = _eapol_attributes(accept_attributes(out))
            assert {a["name"] for a in by_api["reply"]} >= {
                "User-Name", "Tunnel-Type", "Tunnel-Medium-Type", "Tunnel-Private-Group-Id",
                "Class", "Session-Timeout", "Termination-Action"}
            for attr in by_api["reply"]:
                values = sent.get(attr["type"], [])
                if attr["name"] == "Session-Timeout":  # counts down: within a few seconds
                    assert any(abs(int(v or 0) - attr["value"]) <= 5 for _, v in values), \
                        (attr, values)
                else:
                    assert any(_matches(attr, n, v) for n, v in values), (name, tls, attr, values)
        if name == "staff-device":
            assert by_cli["inventory"]["reason"] == "certificateHold"
            assert "--release-hold" in by_api["hint"]


@pytest.fixture
def lab(initialized: Path, tmp_path: Path) -> Lab:
    (tmp_path / "certs").mkdir()
    return Lab(initialized, tmp_path / "certs")
