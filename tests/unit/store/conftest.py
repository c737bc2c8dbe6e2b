from __future__ import annotations

import pytest

from tests.store_support import BACKENDS, StoreSite, make_ca


@pytest.fixture(scope="module")
def ca():
    return make_ca()


@pytest.fixture(params=BACKENDS)
async def site(request, tmp_path):
    """The same tests on SQLite and on a real PostgreSQL (a fresh database per test)."""
    if request.param == "sqlite":
        s = StoreSite("sqlite", path=tmp_path / "s.sqlite")
    else:
        s = StoreSite("postgresql", url=request.getfixturevalue("pg_url"))
    yield s
    await s.close_all()
