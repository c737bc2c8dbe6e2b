"""`certgate demo` (what `make run` runs): a ready config, secrets shown once, a PKI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import certgate


def test_demo_writes_config_and_pki_once(tmp_path: Path) -> None:
    first = certgate("demo", "--dir", str(tmp_path / "d"), "--no-serve")
    assert "RADIUS shared secret for 127.0.0.0/8 (shown once)" in first.stderr
    config = tmp_path / "d" / "certgate.toml"
    assert (config.stat().st_mode & 0o777) == 0o600
    certgate("check-config", config=config)
    groups = json.loads(certgate("groups", "--json", config=config).stdout)
    assert [(g["group"], g["vlan"]) for g in groups] == [("staff", "10"), ("guests", "20")]
    assert "127.0.0.0/8" in config.read_text()
    again = certgate("demo", "--dir", str(tmp_path / "d"), "--no-serve")
    assert "shown once" not in again.stderr and "using existing" in again.stderr
    assert "created" not in again.stderr


def test_demo_listen_addresses_go_into_the_config(tmp_path: Path) -> None:
    import socket
    import tomllib

    from tests.support import free_port

    radius, http = free_port(socket.SOCK_DGRAM), free_port()
    directory = tmp_path / "d"
    first = certgate("demo", "--dir", str(directory), "--no-serve",
                     "--radius-listen", f"127.0.0.2:{radius}", "--http-listen", f"127.0.0.3:{http}")
    config = directory / "certgate.toml"
    assert f"(both are stored in {config}: [[radius.clients]] secret, [admin] tokens)" \
        in first.stderr
    data = tomllib.loads(config.read_text())
    assert (data["radius"]["listen"], data["radius"]["acct_listen"]) == (
        f"127.0.0.2:{radius}", f"127.0.0.2:{radius + 1}")
    assert (data["http"]["listen"], data["http"]["public_url"]) == (
        f"127.0.0.3:{http}", f"http://127.0.0.3:{http}")
    secret = first.stderr.split("RADIUS shared secret for 127.0.0.0/8 (shown once): ")[1].split()[0]
    assert data["radius"]["clients"][0]["secret"] == secret
    checked = certgate("check-config", config=config)  # the state checks included
    assert checked.stdout.splitlines()[1].startswith(f"{directory / 'var' / 'pki'}: ok (root, ")
    again = certgate("demo", "--dir", str(directory), "--no-serve", "--http-listen", "[::1]:8443")
    assert f"--http-listen ignored: {config} exists" in again.stderr
    assert tomllib.loads(config.read_text()) == data


def test_demo_listen_errors_are_usage_errors(tmp_path: Path) -> None:
    for flag, value, message in (
            ("--radius-listen", "localhost:1812", "expected IP:PORT like 127.0.0.1:1812"),
            ("--http-listen", "127.0.0.1:0", "the port must be 1-65535"),
            ("--radius-listen", "127.0.0.1:65535", "leaves no port for accounting")):
        r = certgate("demo", "--dir", str(tmp_path / "d"), "--no-serve", flag, value, check=False)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "d").exists()
    r = certgate("demo", "--dir", str(tmp_path / "v6"), "--no-serve", "--radius-listen",
                 "[::1]:11812", "--http-listen", "0.0.0.0:18080")
    text = (tmp_path / "v6" / "certgate.toml").read_text()
    assert 'listen = "[::1]:11812"' in text and 'acct_listen = "[::1]:11813"' in text
    assert 'public_url = "http://127.0.0.1:18080"' in text and "public_url is 127.0.0.1" in r.stderr
