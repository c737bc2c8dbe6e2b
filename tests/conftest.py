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


@pytest.fixture(scope="session")
def pg_cluster():
    """One real PostgreSQL server for the session; skip locally when missing, fail in CI."""
    from tests.pg_cluster import PgCluster, pg_bindir
    from tests.support import IN_CI, free_port

    bindir = pg_bindir()
    if bindir is None:
        if IN_CI:
            pytest.fail("PostgreSQL is required in CI (scripts/install-test-deps.sh installs it)")
        pytest.skip("PostgreSQL server binaries not installed (run `make deps` as root)")
    cluster = PgCluster(bindir, free_port()).init().start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return pg_cluster.create_database()
