"""What a database backend gives the store: transactions, reads, streams, change wake-ups.

The store's SQL is written once, with `?` placeholders, in the subset SQLite and PostgreSQL
share (`RETURNING`, `ON CONFLICT`, `IS NOT DISTINCT FROM`); a driver translates
placeholders, runs statements, maps its exceptions onto `store.errors`
(`UniqueViolation`, `StoreUnavailable`) and owns what differs: connections, locking,
migrations, and how a node learns that another node committed a change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = tuple[Any, ...]


class Tx(Protocol):
    """Statements inside one transaction (or, for `Driver.reader`, autocommit reads)."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per row (bulk inserts: `storage copy`)."""

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None: ...

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...


class Driver(ABC):
    backend: str  # "sqlite" | "postgresql"
    description: str  # where the data lives, without secrets (logs, errors)
    latest_version: int  # the schema version this code migrates to (numbered per backend)

    @abstractmethod
    def transaction(self, op: str) -> AbstractAsyncContextManager[Tx]:
        """A read-write transaction: commits on success, rolls back on any exception.
        Writers that touch the change sequence are serialized by its row lock."""

    @abstractmethod
    def reader(self, op: str) -> AbstractAsyncContextManager[Tx]:
        """Autocommit reads of committed data."""

    @abstractmethod
    def stream(self, op: str, sql: str, args: Sequence[Any] = (),
               chunk: int = 10_000) -> AsyncIterator[list[Row]]:
        """A large read in chunks, so a million rows never sit on the event loop at once."""

    @abstractmethod
    async def scan(self, op: str, sql: str, args: Sequence[Any],
                   consume: Callable[[list[Row]], None], chunk: int = 50_000) -> None:
        """A large or slow read of committed data whose rows are handed to `consume`, chunk
        by chunk, away from the connection writers use: a 3 M-row scan never queues a
        revocation behind it. SQLite runs it on a private read-only connection in a thread
        (`consume` then runs in that thread and must touch only its own data); PostgreSQL on
        a pooled connection, `consume` on the event loop between fetches."""

    @abstractmethod
    async def notify_change(self, tx: Tx, seq: int) -> None:
        """Inside the transaction that took change `seq`: wake the other nodes on commit."""

    @abstractmethod
    async def wait_for_change(self, timeout: float) -> None:
        """Return when another connection may have committed a change, or after `timeout`.
        May return early without a change; raises StoreUnavailable when the database is
        gone (the caller reconnects by calling again)."""

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def migrate(self) -> int:
        """Apply pending migrations (one transaction each); refuse a newer schema. Returns
        the version now in place."""

    @abstractmethod
    async def tables(self) -> dict[str, tuple[str, ...]]:
        """certgate's tables (not the migration bookkeeping) and their columns, in order."""

    @abstractmethod
    async def ping(self) -> None:
        """A round trip to the database (readiness); StoreUnavailable when it fails."""

    @abstractmethod
    async def reset_sequences(self, tx: Tx) -> None:
        """After rows were copied in with explicit ids: move id generators past them."""

    @abstractmethod
    async def close(self) -> None: ...
