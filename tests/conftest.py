from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import certgate, write_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "cg")


@pytest.fixture
def initialized(config: Path) -> Path:
    certgate("init", config=config)
    return config


@pytest.fixture
def server(initialized: Path, tmp_path: Path):
    from tests.support import ServerProcess

    proc = ServerProcess(initialized, tmp_path / "serve.log").start()
    yield proc
    proc.stop()
