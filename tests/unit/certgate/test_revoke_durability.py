"""A revocation that fails to commit is not acknowledged and changes nothing in memory."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from certgate.app import build_runtime
from certgate.features import mount
from certgate.settings import load_settings
from certgate.web import build_app
from tests.support import TOKEN, certgate, write_config


async def test_failed_commit_is_not_acknowledged(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cg")
    certgate("init", config=config)
    serial = certgate("certs", "issue", "--group", "staff", "--cn", "d1", "--out",
                      str(tmp_path / "o"), config=config).stdout.strip()
    settings = load_settings(config)
    runtime = await build_runtime(settings)
    app = build_app(runtime, 1 << 20)
    await mount(runtime, app)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        # Another connection holds the write lock: the revocation cannot commit.
        blocker = sqlite3.connect(settings.storage.path, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        await runtime.store.driver._db.execute("PRAGMA busy_timeout=200")  # fail fast in the test
        resp = await client.post(f"/api/v1/certificates/{serial}/revoke",
                                 json={"reason": "keyCompromise"},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
        assert "not be committed" in (await resp.json())["error"]
        assert not runtime.revoked.is_revoked("staff", int(serial, 16))
        blocker.rollback()
        blocker.close()
        record = await runtime.store.get(int(serial, 16))
        assert record.status == "active"
        # once the store is writable again the same call succeeds and takes effect at once
        resp = await client.post(f"/api/v1/certificates/{serial}/revoke",
                                 json={"reason": "keyCompromise"},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 200
        assert runtime.revoked.is_revoked("staff", int(serial, 16))
        record = await runtime.store.get(int(serial, 16))
        assert record.status == "revoked" and record.revoked_at <= dt.datetime.now(dt.UTC)
    finally:
        await client.close()
        await runtime.store.close()


async def test_store_trouble_is_503_not_500(tmp_path: Path) -> None:
    """CRL production and hold release failing inside the store answer 503 + retry."""
    config = write_config(tmp_path / "cg")
    certgate("init", config=config)
    serial = certgate("certs", "issue", "--group", "staff", "--cn", "d2", "--out",
                      str(tmp_path / "o"), config=config).stdout.strip()
    certgate("revoke", "--serial", serial, "--reason", "certificateHold", config=config)
    settings = load_settings(config)
    runtime = await build_runtime(settings)
    app = build_app(runtime, 1 << 20)
    await mount(runtime, app)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        blocker = sqlite3.connect(settings.storage.path, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        await runtime.store.driver._db.execute("PRAGMA busy_timeout=200")
        resp = await client.get("/crl/staff.crl")  # needs a CRL number from the store
        assert resp.status == 503 and resp.headers["Retry-After"]
        resp = await client.post(f"/api/v1/certificates/{serial}/release-hold",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 503
        blocker.rollback()
        blocker.close()
        assert (await client.get("/crl/staff.crl")).status == 200
        resp = await client.post(f"/api/v1/certificates/{serial}/release-hold",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 200 and (await resp.json())["status"] == "active"
    finally:
        await client.close()
        await runtime.store.close()
