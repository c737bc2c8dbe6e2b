"""`certgate storage copy|migrate` and `certgate check-config --connect`: the real CLI."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from store import open_store
from tests.support import certgate

PASSWORD = "s3cret-pw"  # trust auth ignores it; it must never be printed


def _with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def _store_path(config: Path) -> Path:
    return config.parent / "var" / "certgate.sqlite"


def _use_url(config: Path, url: str) -> None:
    with config.open("a") as fh:
        fh.write(f'\n[storage]\nurl = "{url}"\n')


@pytest.fixture
def box(initialized: Path, tmp_path: Path) -> dict:
    """One box's SQLite store: two certificates (one revoked) and an unused challenge."""
    out = tmp_path / "issued"
    serials = [int(certgate("certs", "issue", "--group", "staff", "--cn", cn, "--out", str(out),
                            config=initialized).stdout.strip(), 16) for cn in ("laptop", "phone")]
    certgate("revoke", "--serial", format(serials[0], "x"), "--reason", "keyCompromise",
             config=initialized)
    created = json.loads(certgate("challenge", "create", "--group", "staff", "--json",
                                  config=initialized).stdout)
    return {"config": initialized, "revoked": serials[0], "active": serials[1],
            "jti": created["jti"]}


async def _served(jti: str, path: Path | None = None, url: str | None = None) -> dict:
    store = await open_store(path=path, url=url, migrate=False)
    try:
        return {
            "certs": {r.serial: (r.status, r.reason) for r in await store.find(profile=None)},
            "challenge": await store.get_challenge(jti),
            "seq": await store.current_seq(),
        }
    finally:
        await store.close()


def _check_copy(box: dict, seen: dict) -> None:
    assert seen["certs"][box["revoked"]] == ("revoked", "keyCompromise")
    assert seen["certs"][box["active"]] == ("active", None)
    assert seen["challenge"] is not None and seen["challenge"].used_at is None
    assert seen == asyncio.run(_served(box["jti"], path=_store_path(box["config"])))


def test_storage_copy_to_postgresql_then_to_sqlite(box: dict, pg_url: str, tmp_path: Path) -> None:
    config = box["config"]
    target = _with_password(pg_url)
    r = certgate("storage", "copy", "--to-env", "CG_TARGET", config=config,
                 env={"CG_TARGET": target})
    assert PASSWORD not in r.stdout + r.stderr and "postgres:***@" in r.stdout
    lines = dict(line.split() for line in r.stdout.splitlines()[:-1])
    assert lines["certificates"] == str(2 + 3)  # + the server and RA certificates from init
    assert lines["challenges"] == "1" and int(lines["audit"]) >= 4
    assert r.stdout.splitlines()[-1].startswith("copied ")
    _check_copy(box, asyncio.run(_served(box["jti"], url=pg_url)))

    again = certgate("storage", "copy", "--to", target, config=config, check=False)
    assert again.returncode == 1 and PASSWORD not in again.stdout + again.stderr
    assert "is not empty" in again.stderr and "postgres:***@127.0.0.1" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 2  # "copying ..." and the error

    copy = tmp_path / "copy" / "certgate.sqlite"
    certgate("storage", "copy", "--to", f"sqlite://{copy}", config=config)
    _check_copy(box, asyncio.run(_served(box["jti"], path=copy)))


def test_storage_copy_refuses_a_bad_target(box: dict) -> None:
    r = certgate("storage", "copy", "--to", "mysql://x@h/db", config=box["config"], check=False)
    assert r.returncode == 2 and "unsupported scheme mysql://" in r.stderr
    r = certgate("storage", "copy", "--to", str(_store_path(box["config"])), config=box["config"],
                 check=False)
    assert r.returncode == 1 and "is the configured store itself" in r.stderr


def test_storage_migrate_reports_versions_and_refuses_a_newer_schema(config: Path) -> None:
    out = certgate("storage", "migrate", config=config).stdout
    assert out.strip() == f"sqlite {_store_path(config)}: schema v0 -> v6"
    assert certgate("storage", "migrate", config=config).stdout.strip().endswith(
        "schema v6, up to date")
    with sqlite3.connect(_store_path(config)) as db:
        db.execute("PRAGMA user_version=99")
    r = certgate("storage", "migrate", config=config, check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "schema v99, newer than this certgate (v6): upgrade certgate" in r.stderr


def test_check_config_connect(config: Path, pg_url: str, tmp_path: Path) -> None:
    # --no-state: this config's PKI is not initialised (the state checks: test_check_config_state)
    plain = certgate("check-config", "--no-state", config=config).stdout
    assert len(plain.splitlines()) == 1 and "storage" not in plain  # unchanged without --connect
    certgate("storage", "migrate", config=config)
    out = certgate("check-config", "--no-state", "--connect", config=config).stdout
    assert f"storage: sqlite {_store_path(config)} answers, schema v6 (up to date)" in out

    pg = tmp_path / "pg" / "certgate.toml"
    pg.parent.mkdir()
    pg.write_text(config.read_text())
    _use_url(pg, _with_password(pg_url))
    out = certgate("check-config", "--no-state", "--connect", config=pg).stdout
    assert "postgresql postgresql://postgres:***@" in out and PASSWORD not in out
    assert "schema v0, 3 migration(s) pending (to v3)" in out  # not migrated by the check

    down = tmp_path / "down" / "certgate.toml"
    down.parent.mkdir()
    down.write_text(config.read_text())
    _use_url(down, f"postgresql://certgate:{PASSWORD}@127.0.0.1:1/certgate")
    r = certgate("check-config", "--no-state", "--connect", config=down, check=False)
    assert r.returncode == 1 and PASSWORD not in r.stdout + r.stderr
    assert r.stderr.startswith("certgate: cannot connect to the store "
                               "postgresql://certgate:***@127.0.0.1:1/certgate")
