"""SQLite backend (aiosqlite, WAL): the embedded default for one box and the demo.

One connection; writers are serialized by an asyncio lock around BEGIN IMMEDIATE ... COMMIT
(a second BEGIN on the same connection would fail, and a plain write issued meanwhile would
silently join the open transaction). Other processes (the CLI) write the same file; this
process learns of their commits from `PRAGMA data_version` on a private read-only
connection, which changes only when another connection committed (microseconds when idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from store.driver import Driver, Row, Tx
from store.errors import SchemaTooNew, StoreOpenError, StoreUnavailable, UniqueViolation

log = logging.getLogger("certgate.store")

POLL_SECONDS = 0.25  # how often wait_for_change looks at data_version

MIGRATIONS: list[str] = [
    # v1
    """
    CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        group_name TEXT NOT NULL,
        profile TEXT NOT NULL DEFAULT 'device',
        subject TEXT NOT NULL,
        sans TEXT NOT NULL DEFAULT '[]',
        device_id TEXT,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
        revoked_at INTEGER,
        reason TEXT,
        superseded_by TEXT,
        issued_at INTEGER NOT NULL,
        source TEXT NOT NULL,
        spki_sha256 TEXT,
        transaction_id TEXT,
        change_seq INTEGER NOT NULL DEFAULT 0,
        pem TEXT NOT NULL
    );
    CREATE INDEX certificates_group_status ON certificates(group_name, status);
    CREATE INDEX certificates_device ON certificates(device_id);
    CREATE INDEX certificates_change_seq ON certificates(change_seq);
    CREATE INDEX certificates_not_after ON certificates(not_after);
    CREATE TABLE challenges (
        jti TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        group_name TEXT NOT NULL,
        token_hash TEXT,
        binding TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        created_by TEXT,
        used_at INTEGER,
        used_txid TEXT,
        used_spki TEXT,
        issued_serial TEXT
    );
    CREATE INDEX challenges_expires ON challenges(expires_at);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        serial TEXT,
        group_name TEXT,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
    CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta VALUES ('change_seq', 0);
    """,
    # v2: CRL numbering, accounting sessions, pending (manual approval) SCEP requests
    """
    CREATE TABLE crl_state (
        group_name TEXT PRIMARY KEY,
        crl_number INTEGER NOT NULL,
        this_update INTEGER NOT NULL,
        next_update INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        client TEXT NOT NULL,
        acct_session_id TEXT NOT NULL,
        nas_ip TEXT,
        nas_identifier TEXT,
        calling_station_id TEXT,
        user_name TEXT,
        serial TEXT,
        group_name TEXT,
        started_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        stopped_at INTEGER,
        disconnect_result TEXT,
        PRIMARY KEY (client, acct_session_id)
    );
    CREATE INDEX sessions_serial ON sessions(serial, stopped_at);
    CREATE TABLE scep_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        group_name TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        spki_sha256 TEXT NOT NULL,
        csr_der BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'approved', 'rejected', 'issued')),
        created_at INTEGER NOT NULL,
        decided_at INTEGER,
        decided_by TEXT,
        issued_serial TEXT,
        UNIQUE (group_name, transaction_id)
    );
    """,
    # v3: SCEP enrollment: pending requests remember their challenge; superseded certificates
    # are revoked when their grace period ends (store/scep_requests.py)
    """
    ALTER TABLE scep_requests ADD COLUMN challenge_jti TEXT;
    ALTER TABLE scep_requests ADD COLUMN device_id TEXT;
    ALTER TABLE scep_requests ADD COLUMN details TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX scep_requests_status ON scep_requests(status, created_at);
    CREATE TABLE revocations_due (
        serial TEXT PRIMARY KEY,
        group_name TEXT NOT NULL,
        reason TEXT NOT NULL,
        due_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        actor TEXT NOT NULL
    );
    CREATE INDEX revocations_due_at ON revocations_due(due_at);
    """,
    # v4: multi-node: which node holds an accounting session (one Disconnect per session)
    """
    ALTER TABLE sessions ADD COLUMN node TEXT;
    CREATE INDEX certificates_profile_not_after ON certificates(profile, not_after);
    """,
    # v5: MDM compliance webhooks: the newest event per device (an older one never wins);
    # sessions by group (CoA after a config reload)
    """
    CREATE TABLE device_events (
        device_id TEXT PRIMARY KEY,
        event TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_at_ms INTEGER NOT NULL,
        received_at INTEGER NOT NULL
    );
    CREATE INDEX sessions_group ON sessions(group_name, stopped_at);
    """,
    # v6: the start-up load reads a group's serials from one covering index, no table rows
    # (Store.load_index: 3 M certificates in ~2 s instead of ~5 s); it also serves what
    # certificates_group_status did (its leading columns)
    """
    CREATE INDEX certificates_load
        ON certificates(group_name, status, profile, not_after, serial, reason);
    DROP INDEX certificates_group_status;
    """,
]


class _Tx:
    __slots__ = ("_db", "_op", "notified")

    def __init__(self, db: aiosqlite.Connection, op: str) -> None:
        self._db = db
        self._op = op
        self.notified = False

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            cur = await self._db.execute(sql, tuple(args))
        except sqlite3.Error as exc:
            raise _translate(self._op, exc) from None
        return cur.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self._db.executemany(sql, [tuple(r) for r in rows])
        except sqlite3.Error as exc:
            raise _translate(self._op, exc) from None

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        # One trip to aiosqlite's thread (execute + fetch + close), not three: a point read
        # (OCSP's store.get) cost 100-150 us of CPU that way, 30-50 us this way (bench/README.md
        # "OCSP"). Callers select one row (a key, LIMIT 1 or an aggregate).
        try:
            rows = await self._db.execute_fetchall(sql, tuple(args))
        except sqlite3.Error as exc:
            raise _translate(self._op, exc) from None
        for row in rows:
            return row  # type: ignore[return-value]
        return None

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        try:
            async with self._db.execute(sql, tuple(args)) as cur:
                return list(await cur.fetchall())  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise _translate(self._op, exc) from None


def _translate(op: str, exc: sqlite3.Error) -> Exception:
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc).upper():
        return UniqueViolation(str(exc))
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return exc  # our bug or a constraint: not an outage
    return StoreUnavailable(op, str(exc))


class _NoStatementParameters(logging.Filter):
    """aiosqlite logs every call at DEBUG with its repr, SQL parameters included (challenge
    hashes, device IDs): drop those records, keep its warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


logging.getLogger("aiosqlite").addFilter(_NoStatementParameters())


async def _wal(db: aiosqlite.Connection) -> None:
    """journal_mode=WAL. Two processes opening a fresh file at once can get SQLITE_BUSY
    without the busy handler being consulted (SQLite avoids a lock-upgrade deadlock), so
    retry a few times over ~3 s before giving up."""
    delay = 0.02
    for _ in range(8):
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            await asyncio.sleep(delay)
            delay *= 2
    await db.execute("PRAGMA journal_mode=WAL")


def _owner_only(path: Path) -> None:
    """The store holds the inventory and challenge hashes: 0600 for it and its -wal/-shm,
    whatever the umask or an older certgate left behind."""
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = candidate.stat().st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(candidate, 0o600)
            log.warning("store file %s was mode %o: now 0600", candidate, mode)


def _read_only_uri(path: Path) -> str:
    """A read-only URI for the store file; percent-encoded, so a '?' or '#' in the path is
    part of the name, not of the URI."""
    return path.resolve().as_uri() + "?mode=ro"


class SqliteDriver(Driver):
    backend = "sqlite"
    latest_version = len(MIGRATIONS)

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self.description = str(path)
        self.write_lock = asyncio.Lock()
        self._watch: sqlite3.Connection | None = None
        self._data_version = -1
        self.poll_interval = POLL_SECONDS
        self._local_commit = asyncio.Event()  # this process committed a change: wake the feed now

    @classmethod
    async def open(cls, path: Path, poll_interval: float = POLL_SECONDS) -> SqliteDriver:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():  # created 0600 (WAL and SHM files copy the mode)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = await aiosqlite.connect(path, isolation_level=None)
            # first: switching a fresh file to WAL takes a lock another opener may hold
            await db.execute("PRAGMA busy_timeout=5000")
            await _wal(db)
            _owner_only(path)
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StoreOpenError(
                f"cannot open the store {path}: {exc}. Check [storage] path, its directory's "
                "permissions and free space"
            ) from None
        driver = cls(db, path)
        driver.poll_interval = poll_interval
        return driver

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        await self._db.close()

    @asynccontextmanager
    async def transaction(self, op: str) -> AsyncIterator[Tx]:
        async with self.write_lock:
            tx = _Tx(self._db, op)
            await tx.execute("BEGIN IMMEDIATE")
            try:
                yield tx
                await tx.execute("COMMIT")
                if tx.notified:
                    self._local_commit.set()
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await self._db.execute("ROLLBACK")
                raise

    @asynccontextmanager
    async def reader(self, op: str) -> AsyncIterator[Tx]:
        yield _Tx(self._db, op)

    async def stream(self, op: str, sql: str, args: Sequence[Any] = (),
                     chunk: int = 10_000) -> AsyncIterator[list[Row]]:
        try:
            async with self._db.execute(sql, tuple(args)) as cur:
                while rows := await cur.fetchmany(chunk):
                    yield list(rows)  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise _translate(op, exc) from None

    async def scan(self, op: str, sql: str, args: Sequence[Any],
                   consume: Callable[[list[Row]], None], chunk: int = 50_000) -> None:
        def run() -> None:
            con = sqlite3.connect(_read_only_uri(self.path), uri=True, isolation_level=None,
                                  check_same_thread=False)
            try:
                con.execute("PRAGMA busy_timeout=5000")
                cur = con.execute(sql, tuple(args))
                while rows := cur.fetchmany(chunk):
                    consume(rows)
            finally:
                con.close()

        try:
            await asyncio.to_thread(run)
        except sqlite3.Error as exc:
            raise _translate(op, exc) from None

    async def notify_change(self, tx: Tx, seq: int) -> None:
        """Other processes see the commit through data_version; this one is woken at COMMIT."""
        tx.notified = True

    async def wait_for_change(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            if self._watch is None:
                self._watch = sqlite3.connect(_read_only_uri(self.path), uri=True,
                                              isolation_level=None, check_same_thread=False)
                self._data_version = self._version()
                return
            while True:
                self._local_commit.clear()  # before the check: a commit after it wakes us
                version = self._version()
                if version != self._data_version:
                    self._data_version = version
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._local_commit.wait(), min(self.poll_interval, left))
        except sqlite3.Error as exc:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            raise StoreUnavailable("change-watch", str(exc)) from None

    def _version(self) -> int:
        assert self._watch is not None
        return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    async def schema_version(self) -> int:
        async with self.reader("schema-version") as tx:
            row = await tx.fetchone("PRAGMA user_version")
        return int(row[0])  # type: ignore[index]

    async def ping(self) -> None:
        await self.schema_version()

    async def tables(self) -> dict[str, tuple[str, ...]]:
        async with self.reader("tables") as tx:
            names = await tx.fetchall("SELECT name FROM sqlite_master WHERE type='table' "
                                      "AND name NOT LIKE 'sqlite_%' ORDER BY name")
            out = {}
            for (name,) in names:
                info = await tx.fetchall(f'PRAGMA table_info("{name}")')
                out[name] = tuple(row[1] for row in sorted(info))
        return out

    async def migrate(self) -> int:
        try:
            version = await self.schema_version()
        except StoreUnavailable as exc:
            raise StoreOpenError(f"cannot read the store {self.path}: {exc.detail}") from None
        if version > len(MIGRATIONS):
            raise SchemaTooNew(
                f"the store {self.path} has schema v{version}, newer than this certgate "
                f"(v{len(MIGRATIONS)}): upgrade certgate"
            )
        while version < len(MIGRATIONS):
            try:
                async with self.transaction("migrate") as tx:
                    # read again under the write lock: another process may have migrated
                    row = await tx.fetchone("PRAGMA user_version")
                    version = int(row[0])  # type: ignore[index]
                    if version >= len(MIGRATIONS):
                        break
                    for statement in _split_sql(MIGRATIONS[version]):
                        await tx.execute(statement)
                    await tx.execute(f"PRAGMA user_version={version + 1}")
                    version += 1
            except (StoreUnavailable, sqlite3.Error) as exc:
                raise StoreOpenError(
                    f"cannot migrate the store {self.path} to v{version + 1}: {exc}. Check "
                    "[storage] path, its permissions and free space"
                ) from None
        return len(MIGRATIONS)

    async def reset_sequences(self, tx: Tx) -> None:
        """AUTOINCREMENT already follows explicit ids."""


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        joined = "\n".join(current).strip()
        if joined.endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current))
    return statements
