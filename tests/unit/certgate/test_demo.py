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
