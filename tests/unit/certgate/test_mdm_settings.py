"""[mdm] and the groups' issuance_webhook* / device_id_from keys: values and error messages."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from certgate.errors import ConfigError
from certgate.settings import parse_settings

BASE = """
[[radius.clients]]
name = "wlc"
address = "10.0.0.0/24"
secret = "0123456789"
"""
SECRET = "0123456789abcdef-secret"


def parse(text: str, tmp_path: Path):  # noqa: ANN201
    return parse_settings(tomllib.loads(BASE + text), tmp_path / "c.toml")


def test_issuance_check_and_reconcile_settings(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CG_TEST_MDM_TOKEN", "reconcile-token-0123456789")
    (tmp_path / "secret").write_text(SECRET + "\n")
    s = parse("""
[groups.staff]
device_id_from = "san:uri:IntuneDeviceId://"
issuance_webhook = "https://mdm.example.net/certgate/issuance"
issuance_webhook_secret_file = "secret"
issuance_webhook_token = "bearer-0123456789abcdef"
issuance_webhook_timeout = 2.5
[groups.guests]
[mdm]
reconcile_url = "https://mdm.example.net/certgate/devices?tenant=1"
reconcile_token_env = "CG_TEST_MDM_TOKEN"
reconcile_groups = ["staff"]
max_revoke_fraction = 0.1
""", tmp_path)
    staff, guests = s.group("staff"), s.group("guests")
    assert staff.device_id_from == "san:uri:IntuneDeviceId://"
    check = staff.issuance_check
    assert check.url.endswith("/issuance") and check.secret == SECRET
    assert check.token == "bearer-0123456789abcdef" and check.timeout == 2.5
    assert check.fail_open is False
    assert guests.issuance_check is None and guests.device_id_from == "challenge"
    assert s.mdm.reconcile_token == "reconcile-token-0123456789"
    assert s.mdm.reconcile_groups == ("staff",) and s.mdm.max_revoke_fraction == 0.1
    assert s.mdm.reconcile_interval == 3600 and s.mdm.reconcile_min_age == 900
    assert parse("[groups.staff]\n", tmp_path).mdm.reconcile_url is None


@pytest.mark.parametrize(("snippet", "expected"), [
    ("[groups.staff]\nissuance_webhook = 'ftp://x'\nissuance_webhook_secret = '" + SECRET + "'\n",
     "groups.staff.issuance_webhook: expected an http(s) URL"),
    ("[groups.staff]\nissuance_webhook = 'https://u:p@mdm/x'\nissuance_webhook_secret = '"
     + SECRET + "'\n", "groups.staff.issuance_webhook: must not carry credentials"),
    ("[groups.staff]\nissuance_webhook = 'https://mdm/x'\n",
     "groups.staff.issuance_webhook_secret: is required with issuance_webhook"),
    ("[groups.staff]\nissuance_webhook = 'https://mdm/x'\nissuance_webhook_secret = 'short'\n",
     "groups.staff.issuance_webhook_secret: must be at least 16"),
    ("[groups.staff]\nissuance_webhook_secret = '" + SECRET + "'\n",
     "groups.staff.issuance_webhook_secret: has no effect without issuance_webhook"),
    ("[groups.staff]\nissuance_webhook = 'https://mdm/x'\nissuance_webhook_secret = '" + SECRET
     + "'\nissuance_webhook_timeout = 600\n", "groups.staff.issuance_webhook_timeout: expected"),
    ("[http]\nrequest_timeout = 10\n[groups.staff]\nissuance_webhook = 'https://mdm/x'\n"
     "issuance_webhook_secret = '" + SECRET + "'\nissuance_webhook_timeout = 10\n",
     "groups.staff.issuance_webhook_timeout: must be shorter than [http] request_timeout"),
    ("[groups.staff]\ndevice_id_from = 'serial'\n",
     'groups.staff.device_id_from: expected "challenge", "subject_cn" or "san:TYPE[:PREFIX]"'),
    ("[groups.staff]\nissuance_webhook_fail_opn = true\n",
     "groups.staff.issuance_webhook_fail_opn: unknown key"),
    ("[groups.staff]\n[mdm]\nreconcile_url = 'https://mdm/d'\nreconcile_groups = ['staff']\n",
     "mdm.reconcile_token: is required with reconcile_url"),
    ("[groups.staff]\n[mdm]\nreconcile_url = 'https://mdm/d'\nreconcile_token = '" + SECRET
     + "'\n", "mdm.reconcile_groups: list the groups"),
    ("[groups.staff]\n[mdm]\nreconcile_url = 'https://mdm/d'\nreconcile_token = '" + SECRET
     + "'\nreconcile_groups = ['stuff']\n", "mdm.reconcile_groups: no group named 'stuff'"),
    ("[groups.staff]\n[mdm]\nreconcile_groups = ['staff']\n",
     "mdm.reconcile_url: is required with reconcile_token / reconcile_groups"),
    ("[groups.staff]\n[mdm]\nmax_revoke_fraction = 1.5\n",
     "mdm.max_revoke_fraction: expected a number between 0.0 and 1.0"),
    ("[groups.staff]\n[mdm]\nreconcile_interval = 0.5\n",
     "mdm.reconcile_interval: expected 0 (no periodic pass) or at least 1 second"),
    ("[groups.staff]\n[mdm]\nca_file = 'nope.pem'\n", "mdm.ca_file: "),
    ("[groups.staff]\n[mdm]\nreconcile_ur = 'x'\n", "mdm.reconcile_ur: unknown key"),
])
def test_errors_name_the_key_and_the_fix(snippet: str, expected: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        parse(snippet, tmp_path)
    assert any(expected in line for line in exc.value.details), exc.value.details


@pytest.mark.parametrize(("url", "warned"), [
    ("http://mdm.example.net/certgate/issuance", True),
    ("http://10.1.2.3:8080/x", True),
    ("https://mdm.example.net/certgate/issuance", False),
    ("http://127.0.0.1:9000/x", False),
    ("http://localhost/x", False),
    ("http://[::1]:9000/x", False),
])
def test_plain_http_mdm_url_is_a_warning_naming_the_key(tmp_path: Path, url: str,
                                                        warned: bool) -> None:
    s = parse(f"[groups.staff]\nissuance_webhook = '{url}'\n"
              f"issuance_webhook_secret = '{SECRET}'\n", tmp_path)
    found = [w for w in s.warnings if w.startswith("groups.staff.issuance_webhook:")]
    if warned:
        assert len(found) == 1 and "use https://" in found[0] and "not signed" in found[0]
    else:
        assert found == []


def test_plain_http_reconcile_url_is_a_warning(tmp_path: Path) -> None:
    s = parse("""
[groups.staff]
[mdm]
reconcile_url = "http://mdm.example.net/devices"
reconcile_token = "reconcile-token-0123456789"
reconcile_groups = ["staff"]
""", tmp_path)
    assert [w.split(":")[0] for w in s.warnings] == ["mdm.reconcile_url"]
