"""pki.state.check_state: what `certgate check-config` says about the PKI files, one line per
problem naming the file, what is wrong and the fix, all at once."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from pki.hierarchy import Hierarchy
from pki.state import check_state
from tests.unit.pki.test_issuer_loading import NOW, Group, Pki

GROUPS = (Group("a"), Group("b"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("state")
    Hierarchy(Pki(base / "pki")).init(GROUPS, NOW)
    Hierarchy(Pki(base / "other")).init((Group("a"),), NOW)  # another root
    return base


@pytest.fixture
def pki(template: Path, tmp_path: Path) -> Pki:
    shutil.copytree(template, tmp_path / "t", symlinks=True)
    return Pki(tmp_path / "t" / "pki")


def _check(pki: Pki, now: dt.datetime = NOW, **kw: object) -> list[str]:
    return check_state(pki, GROUPS, now, **kw)  # type: ignore[arg-type]


def test_a_fresh_init_has_no_problem(pki: Pki) -> None:
    assert _check(pki) == []


def test_missing_files_are_each_one_line_naming_the_file_and_init(pki: Pki) -> None:
    for rel in ("server.crt", "groups/b/ra.crt", "groups/b/ra.key", "scep-challenge.secret"):
        (pki.dir / rel).unlink()
    problems = _check(pki)
    assert len(problems) == 4, problems
    for rel in ("server.crt", "groups/b/ra.crt", "groups/b/ra.key", "scep-challenge.secret"):
        line = next(p for p in problems if p.startswith(f"{pki.dir / rel}: missing"))
        assert "run `certgate init`" in line
    # init never overwrites a key: with server.key still there, it must be moved aside first
    assert problems[0] == (f"{pki.dir / 'server.crt'}: missing: restore it from backup, or move "
                           f"{pki.dir / 'server.key'} aside too and run `certgate init` (it "
                           "creates only what is missing)")


def test_a_missing_intermediate_says_init_or_ca_import(pki: Pki) -> None:
    shutil.rmtree(pki.dir / "groups" / "b")
    problems = _check(pki)
    assert problems[0].startswith(f"{pki.dir / 'groups/b/ca.crt'}: missing: run `certgate init`")
    assert "certgate ca import --group b" in problems[0]
    assert len(problems) == 4  # ca.crt, ca.key, ra.crt, ra.key


def test_key_modes_and_owner(pki: Pki) -> None:
    key = pki.dir / "groups" / "a" / "ca.key"
    key.chmod(0o644)
    (pki.dir / "scep-challenge.secret").chmod(0o640)
    problems = _check(pki)
    assert problems == [
        f"{key}: has mode 644, readable by others than its owner: run `chmod 600 {key}`",
        f"{pki.dir / 'scep-challenge.secret'}: has mode 640: run "
        f"`chmod 600 {pki.dir / 'scep-challenge.secret'}`"]
    key.chmod(0o600)
    (pki.dir / "scep-challenge.secret").chmod(0o600)
    someone = os.getuid() + 4242
    owned = _check(pki, uid=someone)
    assert len(owned) == 8  # root, server, 2x(ca, ra), blob keys + the challenge secret
    assert all(f"not by the user running certgate (uid {someone})" in p for p in owned)
    assert f"run `chown {someone} {key}`" in next(p for p in owned if p.startswith(str(key)))


def test_server_name_must_be_in_the_server_certificate(pki: Pki) -> None:
    problems = _check(replace(pki, server_name="wifi.example.org"))
    assert problems == [
        f"{pki.dir / 'server.crt'}: does not name [pki] server_name 'wifi.example.org' (its DNS "
        "names: radius.test): set server_name to the name devices pin, or move server.crt, "
        "server.key and server-chain.pem aside and run `certgate init` (it creates only what is "
        "missing); see docs/runbook.md, CertgateServerCertificateExpiring"]


def test_expired_certificates(pki: Pki) -> None:
    later = NOW + dt.timedelta(days=400)  # server 365 days; root and intermediates longer
    problems = _check(pki, later)
    assert len(problems) == 1 and problems[0].startswith(
        f"{pki.dir / 'server.crt'}: expired on 2027-01-01 00:00 UTC: move server.crt")
    much_later = _check(pki, NOW + dt.timedelta(days=4000))
    assert sum("expired on" in p for p in much_later) == 6  # root, server, 2 CAs, 2 RAs
    early = _check(pki, NOW - dt.timedelta(days=1))
    assert early and all("check this host's clock" in p for p in early)


def test_certificates_that_do_not_chain_or_keys_that_do_not_match(pki: Pki) -> None:
    other = pki.dir.parent / "other"
    for name in ("server.crt", "server.key"):
        (pki.dir / name).unlink()
        shutil.copy2(other / name, pki.dir / name)
    shutil.copy2(pki.dir / "groups" / "b" / "ca.crt", pki.dir / "groups" / "a" / "ca.crt")
    problems = _check(pki)
    a = pki.dir / "groups" / "a"
    assert problems == [
        f"{pki.dir / 'server.crt'}: is not issued by {pki.dir / 'root.crt'}: move server.crt, "
        "server.key and server-chain.pem aside and run `certgate init` (it creates only what is "
        "missing); see docs/runbook.md, CertgateServerCertificateExpiring",
        f"{a / 'ca.key'}: does not match its certificate: restore the pair from backup",
        f"{a / 'ra.crt'}: is not issued by {a / 'ca.crt'}: move {a / 'ra.crt'} and "
        f"{a / 'ra.key'} aside and run `certgate init` (it creates only what is missing)"]


def test_unreadable_pem_and_no_pki_at_all(pki: Pki, tmp_path: Path) -> None:
    (pki.dir / "groups" / "a" / "ra.crt").write_text("not a certificate\n")
    assert _check(pki) == [
        f"{pki.dir / 'groups/a/ra.crt'}: is not a PEM certificate: restore it from backup"]
    assert _check(Pki(tmp_path / "nowhere")) == [
        f"{tmp_path / 'nowhere'}: no PKI directory ([pki] dir): run `certgate init` (it creates "
        "only what is missing)"]


def test_an_encrypted_pki_without_its_passphrase(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CG_TEST_PASS", "correct horse")
    pki = Pki(tmp_path / "pki", passphrase_env="CG_TEST_PASS")
    Hierarchy(pki).init((Group("a"),), NOW)
    assert check_state(pki, (Group("a"),), NOW) == []
    monkeypatch.setenv("CG_TEST_PASS", "wrong")
    problems = check_state(pki, (Group("a"),), NOW)
    assert len(problems) == 5 and all(p.startswith("wrong passphrase for key file") for p in problems)
    monkeypatch.delenv("CG_TEST_PASS")
    problems = check_state(pki, (Group("a"),), NOW)
    assert problems == ["[pki] passphrase: [pki] passphrase_env names CG_TEST_PASS, which is not "
                        "set: export it before running certgate (keys not opened)"]
