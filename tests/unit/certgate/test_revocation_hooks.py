"""A disconnect hook that fails after a revocation is logged, not lost in an unreferenced task."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from certgate.app import build_runtime
from certgate.features import mount
from certgate.settings import load_settings
from certgate.web import build_app
from store.records import CertRecord
from tests.support import certgate, write_config


async def test_failing_disconnect_hook_is_logged(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    config = write_config(tmp_path / "cg", extra="\n[scep]\nworkers = 0\n")
    certgate("init", config=config)
    serial = certgate("certs", "issue", "--group", "staff", "--cn", "d1", "--out",
                      str(tmp_path / "o"), config=config).stdout.strip()
    runtime = await build_runtime(load_settings(config))
    await mount(runtime, build_app(runtime, 1 << 20))
    revocations = runtime.services["revocations"]
    called: list[int] = []

    async def broken_hook(record: CertRecord) -> None:
        called.append(record.serial)
        raise RuntimeError("NAS table unavailable")

    revocations.disconnect_hooks.append(broken_hook)
    try:
        with caplog.at_level(logging.ERROR, logger="certgate.revocation"):
            outcome = await revocations.revoke(int(serial, 16), "keyCompromise", "test")
            assert outcome is not None and outcome.changed
            for _ in range(100):
                if any("disconnect hook failed" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.02)
        assert called == [int(serial, 16)]
        failures = [r for r in caplog.records if "disconnect hook failed" in r.getMessage()]
        assert len(failures) == 1 and failures[0].exc_info is not None
    finally:
        await asyncio.gather(*list(revocations._tasks), return_exceptions=True)
        await runtime.store.close()
