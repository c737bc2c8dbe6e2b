"""The only package that speaks SQL or imports a database driver.

`open_store(path=...)` gives the embedded SQLite store (one box, the demo);
`open_store(url="postgresql://...")` the PostgreSQL store that several certgate nodes share.
Both are the same `Store` (records in, records out: `store.records`) over a different
`store.driver.Driver`; `ScepStore` and `SessionStore` wrap a `Store` for SCEP requests and
accounting sessions.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from store.copy import copy_store
from store.device_events import DeviceEvent, DeviceEventStore
from store.errors import (
    ChallengeUnavailable,
    NotEmpty,
    RequestConflict,
    SchemaMismatch,
    SchemaTooNew,
    SerialConflict,
    SourceChanged,
    StoreError,
    StoreOpenError,
    StoreUnavailable,
)
from store.scep_requests import ScepStore
from store.sessions import SessionStore
from store.store import Store

__all__ = [
    "DeviceEvent",
    "DeviceEventStore",
    "ChallengeUnavailable", "NotEmpty", "RequestConflict", "SchemaMismatch", "SchemaTooNew",
    "ScepStore", "SerialConflict", "SessionStore", "SourceChanged", "Store", "StoreError",
    "StoreOpenError", "StoreUnavailable", "copy_store", "open_store", "redact_url",
]


def redact_url(url: str) -> str:
    """The URL with its password replaced by *** (for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


async def open_store(path: Path | None = None, url: str | None = None, *, timeout: float = 5.0,
                     pool_size: int = 10, statement_cache: bool = True,
                     poll_interval: float = 0.25, migrate: bool = True) -> Store:
    """Open (and by default migrate) the store. StoreOpenError says what to check."""
    if url is not None:
        from store.postgres import PostgresDriver

        pg = await PostgresDriver.open(url, redact_url(url), timeout=timeout,
                                       pool_size=pool_size, statement_cache=statement_cache)
        driver = pg
    else:
        if path is None:
            raise ValueError("open_store needs a path or a url")
        from store.sqlite import SqliteDriver

        driver = await SqliteDriver.open(path, poll_interval)
    if migrate:
        try:
            await driver.migrate()
        except BaseException:
            await driver.close()
            raise
    return Store(driver)
