"""`certgate check-config` checks the PKI files the config refers to (unless --no-state):
the real command on a scratch `certgate init` directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import certgate


def test_check_config_reports_every_state_problem_at_once(initialized: Path) -> None:
    pki = initialized.parent / "var" / "pki"
    ok = certgate("check-config", config=initialized)
    assert ok.stdout.splitlines()[1] == (f"{pki}: ok (root, server certificate for "
                                         "radius.certgate.test, 2 intermediate(s) and SCEP "
                                         "RA(s), key files 0600)")
    (pki / "groups" / "staff" / "ca.key").chmod(0o640)
    (pki / "groups" / "guests" / "ra.crt").unlink()
    (pki / "groups" / "guests" / "ra.key").unlink()
    text = initialized.read_text().replace("[groups.staff]",
                                           '[pki]\nserver_name = "wifi.example.org"\n\n'
                                           "[groups.staff]")
    initialized.write_text(text)
    r = certgate("check-config", config=initialized, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == (f"certgate: 4 problem(s) with the PKI files of {initialized} "
                        "(--no-state skips these checks):")
    assert lines[1].startswith(f"  - {pki / 'server.crt'}: does not name [pki] server_name "
                               "'wifi.example.org' (its DNS names: radius.certgate.test)")
    assert lines[2] == (f"  - {pki / 'groups/staff/ca.key'}: has mode 640, readable by others "
                        f"than its owner: run `chmod 600 {pki / 'groups/staff/ca.key'}`")
    assert lines[3] == (f"  - {pki / 'groups/guests/ra.crt'}: missing: run `certgate init` "
                        "(it creates only what is missing)")
    assert lines[4].startswith(f"  - {pki / 'groups/guests/ra.key'}: missing: run `certgate init`")
    assert certgate("check-config", "--no-state", config=initialized).returncode == 0


def test_check_config_before_init(config: Path) -> None:
    r = certgate("check-config", config=config, check=False)
    assert r.returncode == 2
    assert f"{config.parent / 'var' / 'pki'}: no PKI directory ([pki] dir): run `certgate init`" \
        in r.stderr
    certgate("init", config=config)
    shutil.rmtree(config.parent / "var" / "pki" / "groups" / "guests")
    r = certgate("check-config", config=config, check=False)
    assert r.returncode == 2 and r.stderr.count("\n  - ") == 4
    assert "groups/guests/ca.crt: missing: run `certgate init` (it creates only what is " \
           "missing), or bring your own with `certgate ca import --group guests`" in r.stderr
    certgate("init", config=config)
    assert certgate("check-config", config=config).returncode == 0
