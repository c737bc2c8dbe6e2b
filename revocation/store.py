"""SQLite store (aiosqlite, WAL): inventory + revocation table, challenges, audit.

The interface is deliberately narrow (records in, records out, no SQL leaks to
callers) so a PostgreSQL backend can follow. Writes that must be durable before
they are acknowledged (issuance, revocation) commit before returning.

Cross-process change detection: every status change bumps `meta.change_seq`
and stamps the row's `change_seq`; a watcher polls `PRAGMA data_version`
(free when nothing changed) and reads only rows with a higher sequence.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from certgate.errors import OperatorError
from revocation.inventory import ACTIVE, REVOKED, CertRecord, serial_hex

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
    # are revoked when their grace period ends (revocation/scep_store.py)
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
]

_COLUMNS = (
    "serial, group_name, profile, subject, sans, device_id, not_before, not_after, status, "
    "revoked_at, reason, superseded_by, issued_at, source, spki_sha256, transaction_id, pem"
)


class SerialConflict(Exception):
    """The serial already exists: the caller re-signs with a fresh one."""


class ChallengeUnavailable(Exception):
    """The challenge was consumed (or removed) between check and issuance."""


@dataclass(frozen=True)
class ChallengeRow:
    jti: str
    kind: str
    group: str
    token_hash: str | None
    binding: dict[str, Any]
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None
    used_txid: str | None
    used_spki: str | None
    issued_serial: int | None


@dataclass(frozen=True)
class ChallengeUse:
    """Consume challenge `jti` in the same transaction that records the certificate."""

    jti: str
    transaction_id: str
    spki_sha256: str


@dataclass(frozen=True)
class RevokeOutcome:
    record: CertRecord
    changed: bool  # False when it was already revoked with this reason


def _ts(value: dt.datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def _dt(value: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value, dt.UTC) if value is not None else None


def _row_to_record(row: sqlite3.Row | tuple) -> CertRecord:
    (serial, group, profile, subject, sans, device_id, nb, na, status, revoked_at, reason,
     superseded_by, issued_at, source, spki, txid, pem) = row
    return CertRecord(
        serial=int(serial, 16),
        group=group,
        profile=profile,
        subject=subject,
        sans=tuple(json.loads(sans)),
        device_id=device_id,
        not_before=_dt(nb),
        not_after=_dt(na),
        status=status,
        revoked_at=_dt(revoked_at),
        reason=reason,
        superseded_by=int(superseded_by, 16) if superseded_by else None,
        issued_at=_dt(issued_at),
        source=source,
        spki_sha256=spki,
        transaction_id=txid,
        pem=pem,
    )


def serialized(method):  # noqa: ANN001, ANN202
    """One writer at a time on the shared connection: a second BEGIN from another coroutine
    while one is open fails ("cannot start a transaction within a transaction"), and a plain
    write issued meanwhile would silently join (and roll back with) the open transaction."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        async with self.write_lock:
            return await method(self, *args, **kwargs)

    return wrapper


class Store:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self.write_lock = asyncio.Lock()  # held around every BEGIN ... COMMIT

    @classmethod
    async def open(cls, path: Path) -> Store:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(path, isolation_level=None)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            store = cls(db, path)
            await store._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise OperatorError(
                f"cannot open the store {path}: {exc}. Check [storage] path, its directory's "
                "permissions and free space"
            ) from None
        return store

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cur:
            (version,) = await cur.fetchone()  # type: ignore[misc]
        if version > len(MIGRATIONS):
            raise OperatorError(
                f"the store {self.path} has schema v{version}, newer than this certgate "
                f"(v{len(MIGRATIONS)}): upgrade certgate"
            )
        for number in range(version, len(MIGRATIONS)):
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(MIGRATIONS[number]):
                    await self._db.execute(statement)
                await self._db.execute(f"PRAGMA user_version={number + 1}")
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0])  # type: ignore[index]

    # -- certificates -----------------------------------------------------------------

    @serialized
    async def record_certificate(
        self,
        record: CertRecord,
        actor: str,
        *,
        challenge: ChallengeUse | None = None,
        supersedes: int | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        """Insert an issued certificate (and consume its challenge) in one transaction."""
        now = now or dt.datetime.now(dt.UTC)
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            if challenge is not None:
                cur = await self._db.execute(
                    "UPDATE challenges SET used_at=?, used_txid=?, used_spki=?, issued_serial=? "
                    "WHERE jti=? AND used_at IS NULL",
                    (_ts(now), challenge.transaction_id, challenge.spki_sha256,
                     record.serial_hex, challenge.jti),
                )
                if cur.rowcount != 1:
                    raise ChallengeUnavailable(challenge.jti)
            try:
                await self._db.execute(
                    f"INSERT INTO certificates ({_COLUMNS}) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (record.serial_hex, record.group, record.profile, record.subject,
                     json.dumps(list(record.sans)), record.device_id, _ts(record.not_before),
                     _ts(record.not_after), ACTIVE, None, None, None,
                     _ts(record.issued_at or now), record.source, record.spki_sha256,
                     record.transaction_id, record.pem),
                )
            except sqlite3.IntegrityError:
                raise SerialConflict(record.serial_hex) from None
            if supersedes is not None:
                await self._db.execute(
                    "UPDATE certificates SET superseded_by=? WHERE serial=?",
                    (record.serial_hex, serial_hex(supersedes)),
                )
            await self._audit(now, actor, "issue", record.serial_hex, record.group,
                              {"subject": record.subject, "profile": record.profile,
                               "source": record.source,
                               "supersedes": serial_hex(supersedes) if supersedes else None})
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise

    async def get(self, serial: int) -> CertRecord | None:
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM certificates WHERE serial=?", (serial_hex(serial),)
        ) as cur:
            row = await cur.fetchone()
        return _row_to_record(row) if row else None

    async def find(
        self,
        *,
        group: str | None = None,
        status: str | None = None,
        device_id: str | None = None,
        subject_cn: str | None = None,
        profile: str | None = "device",
        expiring_before: dt.datetime | None = None,
        transaction_id: str | None = None,
        limit: int | None = None,
    ) -> list[CertRecord]:
        where, args = [], []
        for column, value in (("group_name", group), ("status", status),
                              ("device_id", device_id), ("profile", profile),
                              ("transaction_id", transaction_id)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if subject_cn is not None:
            where.append("(subject=? OR subject LIKE ? OR subject LIKE ?)")
            args += [f"CN={subject_cn}", f"CN={subject_cn},%", f"%,CN={subject_cn}"]
        if expiring_before is not None:
            where.append("not_after<=? AND status='active'")
            args.append(_ts(expiring_before))
        sql = f"SELECT {_COLUMNS} FROM certificates"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY issued_at, serial"
        if limit:
            sql += f" LIMIT {int(limit)}"
        async with self._db.execute(sql, args) as cur:
            rows = await cur.fetchall()
        return [_row_to_record(r) for r in rows]

    @serialized
    async def revoke(
        self, serial: int, reason: str, actor: str, now: dt.datetime | None = None,
        details: dict | None = None,
    ) -> RevokeOutcome | None:
        """Mark revoked; committed (and audited) before returning. None if unknown serial.

        certificateHold may later be released or turned final; any other reason is final.
        """
        now = now or dt.datetime.now(dt.UTC)
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            async with self._db.execute(
                f"SELECT {_COLUMNS} FROM certificates WHERE serial=?", (serial_hex(serial),)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                await self._db.execute("ROLLBACK")
                return None
            record = _row_to_record(row)
            if record.status == REVOKED and (
                record.reason == reason or record.reason != "certificateHold"
            ):
                await self._db.execute("ROLLBACK")
                return RevokeOutcome(record, changed=False)
            seq = await self._bump_seq()
            await self._db.execute(
                "UPDATE certificates SET status='revoked', revoked_at=?, reason=?, change_seq=? "
                "WHERE serial=?",
                (_ts(now) if record.status != REVOKED else _ts(record.revoked_at), reason, seq,
                 record.serial_hex),
            )
            await self._audit(now, actor, "revoke", record.serial_hex, record.group,
                              {"reason": reason, **(details or {})})
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        updated = await self.get(serial)
        assert updated is not None
        return RevokeOutcome(updated, changed=True)

    @serialized
    async def release_hold(self, serial: int, actor: str, now: dt.datetime | None = None) -> bool:
        now = now or dt.datetime.now(dt.UTC)
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            seq = await self._bump_seq()
            cur = await self._db.execute(
                "UPDATE certificates SET status='active', revoked_at=NULL, reason=NULL, "
                "change_seq=? WHERE serial=? AND status='revoked' AND reason='certificateHold'",
                (seq, serial_hex(serial)),
            )
            if cur.rowcount != 1:
                await self._db.execute("ROLLBACK")
                return False
            await self._audit(now, actor, "release-hold", serial_hex(serial), None, {})
            await self._db.execute("COMMIT")
            return True
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise

    async def status_counts(self) -> dict[tuple[str, str], int]:
        async with self._db.execute(
            "SELECT group_name, status, count(*) FROM certificates WHERE profile='device' "
            "GROUP BY group_name, status"
        ) as cur:
            rows = await cur.fetchall()
        return {(g, s): n for g, s, n in rows}

    async def expiring_counts(self, now: dt.datetime, within: dt.timedelta) -> dict[str, int]:
        async with self._db.execute(
            "SELECT group_name, count(*) FROM certificates WHERE profile='device' AND "
            "status='active' AND not_after>? AND not_after<=? GROUP BY group_name",
            (_ts(now), _ts(now + within)),
        ) as cur:
            rows = await cur.fetchall()
        return dict(rows)  # type: ignore[arg-type]

    async def _bump_seq(self) -> int:
        await self._db.execute("UPDATE meta SET value=value+1 WHERE key='change_seq'")
        async with self._db.execute("SELECT value FROM meta WHERE key='change_seq'") as cur:
            (seq,) = await cur.fetchone()  # type: ignore[misc]
        return int(seq)

    # -- challenges ---------------------------------------------------------------------

    @serialized
    async def add_challenge(
        self, jti: str, kind: str, group: str, token_hash: str | None, binding: dict,
        created_at: dt.datetime, expires_at: dt.datetime, created_by: str,
    ) -> None:
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            await self._db.execute(
                "INSERT INTO challenges (jti, kind, group_name, token_hash, binding, created_at, "
                "expires_at, created_by) VALUES (?,?,?,?,?,?,?,?)",
                (jti, kind, group, token_hash, json.dumps(binding), _ts(created_at),
                 _ts(expires_at), created_by),
            )
            await self._audit(created_at, created_by, f"challenge-create:{kind}", None, group,
                              {"jti": jti, "expires_at": expires_at.isoformat()})
            await self._db.execute("COMMIT")
        except sqlite3.IntegrityError:
            await self._db.execute("ROLLBACK")
            raise ChallengeUnavailable(jti) from None
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise

    async def get_challenge(self, jti: str) -> ChallengeRow | None:
        async with self._db.execute(
            "SELECT jti, kind, group_name, token_hash, binding, created_at, expires_at, used_at, "
            "used_txid, used_spki, issued_serial FROM challenges WHERE jti=?",
            (jti,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return ChallengeRow(
            jti=row[0], kind=row[1], group=row[2], token_hash=row[3],
            binding=json.loads(row[4]), created_at=_dt(row[5]), expires_at=_dt(row[6]),
            used_at=_dt(row[7]), used_txid=row[8], used_spki=row[9],
            issued_serial=int(row[10], 16) if row[10] else None,
        )

    @serialized
    async def sweep_challenges(self, now: dt.datetime) -> int:
        cur = await self._db.execute(
            "DELETE FROM challenges WHERE used_at IS NULL AND expires_at<?",
            (_ts(now - dt.timedelta(days=1)),),
        )
        return cur.rowcount

    # -- CRL numbering -------------------------------------------------------------------

    @serialized
    async def next_crl_number(self, group: str, this_update: dt.datetime,
                              next_update: dt.datetime) -> int:
        """Reserve the next CRL number for `group` (monotonic, durable)."""
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            async with self._db.execute(
                "SELECT crl_number FROM crl_state WHERE group_name=?", (group,)
            ) as cur:
                row = await cur.fetchone()
            number = (row[0] + 1) if row else 1
            await self._db.execute(
                "INSERT INTO crl_state (group_name, crl_number, this_update, next_update) "
                "VALUES (?,?,?,?) ON CONFLICT(group_name) DO UPDATE SET crl_number=excluded."
                "crl_number, this_update=excluded.this_update, next_update=excluded.next_update",
                (group, number, _ts(this_update), _ts(next_update)),
            )
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        return number

    # -- audit ----------------------------------------------------------------------------

    @serialized
    async def audit(self, actor: str, action: str, serial: int | None = None,
                    group: str | None = None, details: dict | None = None,
                    now: dt.datetime | None = None) -> None:
        await self._audit(now or dt.datetime.now(dt.UTC), actor, action,
                          serial_hex(serial) if serial is not None else None, group, details or {})

    async def audit_log(self, serial: int | None = None, limit: int = 100) -> list[dict]:
        sql = "SELECT at, actor, action, serial, group_name, details FROM audit"
        args: Iterable[Any] = ()
        if serial is not None:
            sql += " WHERE serial=?"
            args = (serial_hex(serial),)
        sql += f" ORDER BY id DESC LIMIT {int(limit)}"
        async with self._db.execute(sql, tuple(args)) as cur:
            rows = await cur.fetchall()
        return [
            {"at": _dt(at).isoformat(), "actor": actor, "action": action, "serial": s,
             "group": g, "details": json.loads(d)}
            for at, actor, action, s, g, d in rows
        ]

    async def _audit(self, now: dt.datetime, actor: str, action: str, serial: str | None,
                     group: str | None, details: dict) -> None:
        await self._db.execute(
            "INSERT INTO audit (at, actor, action, serial, group_name, details) "
            "VALUES (?,?,?,?,?,?)",
            (_ts(now), actor, action, serial, group, json.dumps(details, default=str)),
        )


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
