"""The store: inventory + revocation table, challenges, CRL numbers, audit, change feed.

Records in, records out (`store.records`); SQL written once for both backends (see
`store.driver`). Writes that must be durable before they are acknowledged (issuance,
revocation) commit before returning.

Change feed: every issuance, revocation and hold release takes the next value of one
store-wide sequence (`meta.change_seq`, bumped first in the writing transaction, so its row
lock orders commits by sequence on PostgreSQL as BEGIN IMMEDIATE does on SQLite) and stamps
the certificate's `change_seq`. A node reads `changes_since(its position)` whenever the driver
wakes it (LISTEN/NOTIFY on PostgreSQL, `PRAGMA data_version` on SQLite), after every
reconnect, and at a slow safety interval: a missed wake-up delays, never loses, a change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import repeat
from operator import itemgetter
from typing import Any

from store.driver import Driver, Row, Tx
from store.errors import ChallengeUnavailable, SerialConflict, StoreUnavailable, UniqueViolation
from store.records import (
    ACTIVE,
    REVOKED,
    CertRecord,
    ChallengeRow,
    ChallengeUse,
    Change,
    IndexSnapshot,
    Issued,
    RevokeOutcome,
    serial_hex,
)

MAX_SERIAL_ATTEMPTS = 5

CERT_COLUMNS = (
    "serial, group_name, profile, subject, sans, device_id, not_before, not_after, status, "
    "revoked_at, reason, superseded_by, issued_at, source, spki_sha256, transaction_id, pem"
)
_FEED_COLUMNS = "change_seq, group_name, serial, status, reason, profile, not_after"


_FIRST = itemgetter(0)
# the distinct group names as a skip scan of the index: one probe per group, not 3 M rows
_GROUP_NAMES = (
    "WITH RECURSIVE g(name) AS (SELECT min(group_name) FROM certificates UNION ALL "
    "SELECT (SELECT min(group_name) FROM certificates WHERE group_name > g.name) FROM g "
    "WHERE g.name IS NOT NULL) SELECT name FROM g WHERE name IS NOT NULL")


def ts(value: dt.datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def from_ts(value: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value, dt.UTC) if value is not None else None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def cert_from_row(row: Row) -> CertRecord:
    (serial, group, profile, subject, sans, device_id, nb, na, status, revoked_at, reason,
     superseded_by, issued_at, source, spki, txid, pem) = row
    return CertRecord(
        serial=int(serial, 16), group=group, profile=profile, subject=subject,
        sans=tuple(json.loads(sans)), device_id=device_id, not_before=from_ts(nb),
        not_after=from_ts(na), status=status, revoked_at=from_ts(revoked_at), reason=reason,
        superseded_by=int(superseded_by, 16) if superseded_by else None,
        issued_at=from_ts(issued_at), source=source, spki_sha256=spki, transaction_id=txid,
        pem=pem,
    )


def _change_from_row(row: Row) -> Change:
    seq, group, serial, status, reason, profile, not_after = row
    return Change(int(seq), group, int(serial, 16), status, reason, profile, from_ts(not_after))


def observed(op: str):  # noqa: ANN201
    """Count the outcome of a store operation: `on_error(op)` when the database did not
    answer, `on_ok()` otherwise (the `certgate_store_up` / `_errors_total{op}` metrics)."""

    def wrap(method):  # noqa: ANN001, ANN202
        @functools.wraps(method)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            health = self.health if hasattr(self, "health") else self.store.health
            try:
                result = await method(self, *args, **kwargs)
            except StoreUnavailable:
                health.error(op)
                raise
            health.ok()
            return result

        return wrapper

    return wrap


class Health:
    """Callbacks the composition root sets to export store health; no-ops by default."""

    def __init__(self) -> None:
        self.on_error: Callable[[str], None] | None = None
        self.on_ok: Callable[[], None] | None = None

    def error(self, op: str) -> None:
        if self.on_error is not None:
            self.on_error(op)

    def ok(self) -> None:
        if self.on_ok is not None:
            self.on_ok()


class Store:
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.health = Health()
        #: Called with each audit row ({at, actor, action, serial, group, details}) once
        #: the transaction that wrote it has committed (the live audit stream).
        self.on_audit: Callable[[dict[str, Any]], None] | None = None
        self._uncommitted: dict[int, list[dict[str, Any]]] = {}
        #: Merged into every audit row's details written by this process (e.g. the OS user
        #: running a CLI command).
        self.audit_context: dict[str, Any] = {}
        #: awaited by close() before the driver closes (a CLI's audit sinks flush there)
        self.before_close: list[Callable[[], Awaitable[None]]] = []

    @contextlib.asynccontextmanager
    async def transaction(self, op: str) -> AsyncIterator[Tx]:
        """driver.transaction, handing the audit rows it wrote to on_audit after commit."""
        rows: list[dict[str, Any]] = []
        async with self.driver.transaction(op) as tx:
            self._uncommitted[id(tx)] = rows
            try:
                yield tx
            finally:
                del self._uncommitted[id(tx)]
        if self.on_audit is not None:
            for row in rows:
                try:
                    self.on_audit(row)
                except Exception:  # noqa: BLE001 - the write is committed; a listener bug must not undo the answer
                    continue

    @property
    def backend(self) -> str:
        return self.driver.backend

    @property
    def description(self) -> str:
        return self.driver.description

    async def close(self) -> None:
        hooks, self.before_close = self.before_close, []
        for hook in hooks:
            try:
                await hook()
            except Exception:  # noqa: BLE001 - closing the store must not fail on a listener
                continue
        await self.driver.close()

    @observed("ping")
    async def ping(self) -> None:
        await self.driver.ping()

    async def schema_version(self) -> int:
        return await self.driver.schema_version()

    async def wait_for_change(self, timeout: float) -> None:
        await self.driver.wait_for_change(timeout)

    # -- certificates -----------------------------------------------------------------

    async def bump_seq(self, tx: Tx) -> int:
        row = await tx.fetchone(
            "UPDATE meta SET value=value+1 WHERE key='change_seq' RETURNING value")
        assert row is not None
        seq = int(row[0])
        await self.driver.notify_change(tx, seq)
        return seq

    @observed("record_certificate")
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
        now = now or _utcnow()
        try:
            async with self.transaction("record_certificate") as tx:
                if challenge is not None:
                    changed = await tx.execute(
                        "UPDATE challenges SET used_at=?, used_txid=?, used_spki=?, "
                        "issued_serial=? WHERE jti=? AND used_at IS NULL",
                        (ts(now), challenge.transaction_id, challenge.spki_sha256,
                         record.serial_hex, challenge.jti),
                    )
                    if changed != 1:
                        raise ChallengeUnavailable(challenge.jti)
                seq = await self.bump_seq(tx)
                await tx.execute(
                    f"INSERT INTO certificates ({CERT_COLUMNS}, change_seq) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (record.serial_hex, record.group, record.profile, record.subject,
                     json.dumps(list(record.sans)), record.device_id, ts(record.not_before),
                     ts(record.not_after), ACTIVE, None, None, None,
                     ts(record.issued_at or now), record.source, record.spki_sha256,
                     record.transaction_id, record.pem, seq),
                )
                if supersedes is not None:
                    await tx.execute(
                        "UPDATE certificates SET superseded_by=? WHERE serial=?",
                        (record.serial_hex, serial_hex(supersedes)),
                    )
                await self._audit(tx, now, actor, "issue", record.serial_hex, record.group,
                                  {"subject": record.subject, "profile": record.profile,
                                   "source": record.source,
                                   "supersedes": serial_hex(supersedes) if supersedes else None,
                                   "challenge": challenge.jti if challenge is not None else None})
        except UniqueViolation:
            raise SerialConflict(record.serial_hex) from None

    async def record_signed(
        self,
        sign: Callable[[int], Awaitable[Issued]],
        new_serial: Callable[[], int],
        *,
        actor: str,
        now: dt.datetime,
        challenge: ChallengeUse | None = None,
        supersedes: int | None = None,
    ) -> Issued:
        """`sign(new_serial())` (off the loop), then record it (with challenge consumption) in one
        transaction; a new serial on a clash. Returns only once the store committed it."""
        for _ in range(MAX_SERIAL_ATTEMPTS):
            issued = await sign(new_serial())
            try:
                await self.record_certificate(
                    issued.record, actor, challenge=challenge, supersedes=supersedes, now=now
                )
            except SerialConflict:
                continue
            return issued
        raise RuntimeError("could not allocate a unique serial number")

    @observed("get")
    async def get(self, serial: int) -> CertRecord | None:
        async with self.driver.reader("get") as tx:
            row = await tx.fetchone(f"SELECT {CERT_COLUMNS} FROM certificates WHERE serial=?",
                                    (serial_hex(serial),))
        return cert_from_row(row) if row else None

    @observed("find")
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
            args.append(ts(expiring_before))
        sql = f"SELECT {CERT_COLUMNS} FROM certificates"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY issued_at, serial"
        if limit:
            sql += f" LIMIT {int(limit)}"
        async with self.driver.reader("find") as tx:
            rows = await tx.fetchall(sql, args)
        return [cert_from_row(r) for r in rows]

    @observed("revoke")
    async def revoke(
        self, serial: int, reason: str, actor: str, now: dt.datetime | None = None,
        details: dict | None = None,
    ) -> RevokeOutcome | None:
        """Mark revoked; committed (and audited) before returning. None if unknown serial.

        certificateHold may later be released or turned final; any other reason is final.
        """
        now = now or _utcnow()
        async with self.transaction("revoke") as tx:
            seq = await self.bump_seq(tx)  # first: the row lock serializes revokers
            row = await tx.fetchone(f"SELECT {CERT_COLUMNS} FROM certificates WHERE serial=?",
                                    (serial_hex(serial),))
            if row is None:
                return None
            record = cert_from_row(row)
            if record.status == REVOKED and (
                record.reason == reason or record.reason != "certificateHold"
            ):
                return RevokeOutcome(record, changed=False)
            revoked_at = now if record.status != REVOKED else record.revoked_at
            await tx.execute(
                "UPDATE certificates SET status='revoked', revoked_at=?, reason=?, change_seq=? "
                "WHERE serial=?",
                (ts(revoked_at), reason, seq, record.serial_hex),
            )
            await self._audit(tx, now, actor, "revoke", record.serial_hex, record.group,
                              {"reason": reason, **(details or {})})
        updated = CertRecord(**{**record.__dict__, "status": REVOKED, "reason": reason,
                                "revoked_at": from_ts(ts(revoked_at))})
        return RevokeOutcome(updated, changed=True)

    @observed("release_hold")
    async def release_hold(self, serial: int, actor: str, now: dt.datetime | None = None) -> bool:
        now = now or _utcnow()
        async with self.transaction("release_hold") as tx:
            seq = await self.bump_seq(tx)
            row = await tx.fetchone(
                "UPDATE certificates SET status='active', revoked_at=NULL, reason=NULL, "
                "change_seq=? WHERE serial=? AND status='revoked' AND reason='certificateHold' "
                "RETURNING group_name",
                (seq, serial_hex(serial)),
            )
            if row is not None:  # the group too: the audit event says whose device it is
                await self._audit(tx, now, actor, "release-hold", serial_hex(serial), row[0], {})
        return row is not None

    @observed("status_counts")
    async def status_counts(self) -> dict[tuple[str, str], int]:
        """Device certificates per (group, status). Counted over the (group_name, status)
        index, all profiles, minus the few RA/server/NAS rows (the profile index): a
        covering-index count, not a 3 M-row table scan; on its own connection (`scan`)."""
        rows: list[Row] = []
        await self.driver.scan("status_counts", "SELECT group_name, status, count(*) FROM "
                               "certificates GROUP BY group_name, status", (), rows.extend)
        others: list[Row] = []
        await self.driver.scan("status_counts", "SELECT group_name, status, count(*) FROM "
                               "certificates WHERE profile<>'device' GROUP BY group_name, status",
                               (), others.extend)
        counts = {(g, st): int(n) for g, st, n in rows}
        for g, st, n in others:
            counts[(g, st)] -= int(n)
        return {k: n for k, n in counts.items() if n}

    @observed("expiring_counts")
    async def expiring_counts(self, now: dt.datetime, within: dt.timedelta) -> dict[str, int]:
        rows: list[Row] = []
        await self.driver.scan(
            "expiring_counts",
            "SELECT group_name, count(*) FROM certificates WHERE profile='device' AND "
            "status='active' AND not_after>? AND not_after<=? GROUP BY group_name",
            (ts(now), ts(now + within)), rows.extend)
        return {g: int(n) for g, n in rows}

    # -- change feed ----------------------------------------------------------------------

    @observed("feed")
    async def current_seq(self) -> int:
        async with self.driver.reader("feed") as tx:
            row = await tx.fetchone("SELECT value FROM meta WHERE key='change_seq'")
        return int(row[0]) if row else 0

    @observed("feed")
    async def changes_since(self, seq: int, limit: int = 10_000) -> list[Change]:
        """Certificates changed after `seq`, in sequence order (at most `limit`)."""
        async with self.driver.reader("feed") as tx:
            rows = await tx.fetchall(
                f"SELECT {_FEED_COLUMNS} FROM certificates WHERE change_seq>? "
                f"ORDER BY change_seq LIMIT {int(limit)}", (seq,))
        return [_change_from_row(r) for r in rows]

    @observed("load_index")
    async def load_index(self, now: dt.datetime) -> IndexSnapshot:
        """Start-up load: per group, three range reads of the covering index
        `certificates_load` on their own connection (`scan`), straight into sets of serials
        (C-level map, no per-row Python code, no list of (group, serial) tuples: at 3 M rows
        those took the process past 900 MB and 9 s). The position is read first: rows read
        after it may already show later changes, and replaying `changes_since(seq)` over
        them is harmless."""
        seq = await self.current_seq()
        snapshot = IndexSnapshot(seq, {}, {}, {})
        groups: list[Row] = []
        await self.driver.scan("load_index", _GROUP_NAMES, (), groups.extend)
        for (group,) in groups:
            for target, sql, args in (
                    (snapshot.issued, "status='active' AND profile='device' AND not_after>?",
                     (group, ts(now))),
                    (snapshot.revoked, "status='revoked'", (group,)),
                    (snapshot.held, "status='revoked' AND reason='certificateHold'", (group,))):
                serials: set[int] = set()
                await self.driver.scan(
                    "load_index", f"SELECT serial FROM certificates WHERE group_name=? AND {sql}",
                    args, lambda rows, into=serials: into.update(
                        map(int, map(_FIRST, rows), repeat(16))))
                if serials:
                    target[group] = serials
        return snapshot

    @observed("revoked_entries")
    async def revoked_entries(self, group: str) -> list[tuple[int, dt.datetime, str | None]]:
        """A group's CRL entries: (serial, revocation time, reason)."""
        return await self._crl_entries("revoked_entries", "", (group,))

    async def _crl_entries(self, op: str, more: str, params: tuple
                           ) -> list[tuple[int, dt.datetime, str | None]]:
        """(serial, revocation time, reason) of a group's revoked rows, streamed; one
        datetime per distinct second (revocations come in batches)."""
        times: dict[int, dt.datetime] = {}
        out: list[tuple[int, dt.datetime, str | None]] = []
        async for rows in self.driver.stream(
                op, "SELECT serial, revoked_at, reason FROM certificates "
                "WHERE group_name=? AND status='revoked'" + more, params):
            for serial, at, reason in rows:
                when = times.get(at)
                if when is None:
                    when = times[at] = dt.datetime.fromtimestamp(at, dt.UTC)
                out.append((int(serial, 16), when, reason))
        return out

    @observed("crl_changes")
    async def committed_seq(self) -> int:
        """The change position with no write in progress: read inside a write transaction,
        so on SQLite (one connection, where a read sees another task's uncommitted write) it
        is not the number of a revocation whose row is not written yet. Every change up to
        it is committed; crl_rows/crl_changes up to it then miss nothing."""
        async with self.driver.transaction("crl_changes") as tx:
            row = await tx.fetchone("SELECT value FROM meta WHERE key='change_seq'")
        return int(row[0]) if row else 0

    @observed("crl_rows")
    async def crl_rows(self, group: str, upto_seq: int
                       ) -> list[tuple[int, dt.datetime, str | None]]:
        """A group's CRL entries as of change `upto_seq`, leaving out certificates changed
        after it (read them with crl_changes): no transaction has to span both reads."""
        return await self._crl_entries("crl_rows", " AND change_seq<=?", (group, upto_seq))

    @observed("crl_changes")
    async def crl_changes(self, group: str, after_seq: int, upto_seq: int
                          ) -> list[tuple[int, str, dt.datetime | None, str | None]]:
        """(serial, status, revoked_at, reason) of the group's certificates changed in
        (after_seq, upto_seq]: what a CRL kept up to date applies (revocation/crl_delta.py).
        Writers take their change number first and commit in its order, so once `upto_seq`
        is the store's position every change up to it is visible."""
        # no group_name in the WHERE: SQLite would then pick the (group_name, status) index
        # and walk the whole group (1.7 s at 3 M rows) instead of the few changed rows
        async with self.driver.reader("crl_changes") as tx:
            rows = await tx.fetchall(
                "SELECT group_name, serial, status, revoked_at, reason FROM certificates "
                "WHERE change_seq>? AND change_seq<=? ORDER BY change_seq",
                (after_seq, upto_seq))
        return [(int(serial, 16), status, from_ts(at), reason)
                for g, serial, status, at, reason in rows if g == group]

    @observed("crl_check")
    async def revoked_count(self, group: str) -> int:
        async with self.driver.reader("crl_check") as tx:
            row = await tx.fetchone("SELECT count(*) FROM certificates WHERE group_name=? "
                                    "AND status='revoked'", (group,))
        return int(row[0]) if row else 0

    @observed("crl_check")
    async def crl_number(self, group: str) -> int:
        """The last CRL number reserved for `group` (0: none yet)."""
        async with self.driver.reader("crl_check") as tx:
            row = await tx.fetchone("SELECT crl_number FROM crl_state WHERE group_name=?",
                                    (group,))
        return int(row[0]) if row else 0

    # -- challenges ---------------------------------------------------------------------

    @observed("add_challenge")
    async def add_challenge(
        self, jti: str, kind: str, group: str, token_hash: str | None, binding: dict,
        created_at: dt.datetime, expires_at: dt.datetime, created_by: str,
    ) -> None:
        try:
            async with self.transaction("add_challenge") as tx:
                await tx.execute(
                    "INSERT INTO challenges (jti, kind, group_name, token_hash, binding, "
                    "created_at, expires_at, created_by) VALUES (?,?,?,?,?,?,?,?)",
                    (jti, kind, group, token_hash, json.dumps(binding), ts(created_at),
                     ts(expires_at), created_by),
                )
                await self._audit(tx, created_at, created_by, f"challenge-create:{kind}", None,
                                  group, {"jti": jti, "expires_at": expires_at.isoformat()})
        except UniqueViolation:
            raise ChallengeUnavailable(jti) from None

    @observed("get_challenge")
    async def get_challenge(self, jti: str) -> ChallengeRow | None:
        async with self.driver.reader("get_challenge") as tx:
            row = await tx.fetchone(
                "SELECT jti, kind, group_name, token_hash, binding, created_at, expires_at, "
                "used_at, used_txid, used_spki, issued_serial FROM challenges WHERE jti=?",
                (jti,))
        if row is None:
            return None
        return ChallengeRow(
            jti=row[0], kind=row[1], group=row[2], token_hash=row[3],
            binding=json.loads(row[4]), created_at=from_ts(row[5]),  # type: ignore[arg-type]
            expires_at=from_ts(row[6]), used_at=from_ts(row[7]),  # type: ignore[arg-type]
            used_txid=row[8], used_spki=row[9],
            issued_serial=int(row[10], 16) if row[10] else None,
        )

    @observed("sweep_challenges")
    async def sweep_challenges(self, now: dt.datetime) -> int:
        async with self.driver.transaction("sweep_challenges") as tx:
            return await tx.execute(
                "DELETE FROM challenges WHERE used_at IS NULL AND expires_at<?",
                (ts(now - dt.timedelta(days=1)),))

    # -- CRL numbering -------------------------------------------------------------------

    @observed("next_crl_number")
    async def next_crl_number(self, group: str, this_update: dt.datetime,
                              next_update: dt.datetime) -> int:
        """Reserve the next CRL number for `group`: monotonic and durable across nodes (one
        atomic upsert; concurrent callers wait on the row lock and get distinct numbers)."""
        async with self.driver.transaction("next_crl_number") as tx:
            row = await tx.fetchone(
                "INSERT INTO crl_state (group_name, crl_number, this_update, next_update) "
                "VALUES (?,1,?,?) ON CONFLICT(group_name) DO UPDATE SET "
                "crl_number=crl_state.crl_number+1, this_update=excluded.this_update, "
                "next_update=excluded.next_update RETURNING crl_number",
                (group, ts(this_update), ts(next_update)),
            )
        assert row is not None
        return int(row[0])

    # -- audit ----------------------------------------------------------------------------

    @observed("audit")
    async def audit(self, actor: str, action: str, serial: int | None = None,
                    group: str | None = None, details: dict | None = None,
                    now: dt.datetime | None = None) -> None:
        async with self.transaction("audit") as tx:
            await self._audit(tx, now or _utcnow(), actor, action,
                              serial_hex(serial) if serial is not None else None, group,
                              details or {})

    @observed("audit_log")
    async def audit_log(self, serial: int | None = None, limit: int = 100) -> list[dict]:
        sql = "SELECT at, actor, action, serial, group_name, details FROM audit"
        args: tuple[Any, ...] = ()
        if serial is not None:
            sql += " WHERE serial=?"
            args = (serial_hex(serial),)
        sql += f" ORDER BY id DESC LIMIT {int(limit)}"
        async with self.driver.reader("audit_log") as tx:
            rows = await tx.fetchall(sql, args)
        return [
            {"at": from_ts(at).isoformat(), "actor": actor, "action": action,  # type: ignore[union-attr]
             "serial": s, "group": g, "details": json.loads(d)}
            for at, actor, action, s, g, d in rows
        ]

    async def audit_between(self, since: dt.datetime | None = None,
                            until: dt.datetime | None = None,
                            batch: int = 1000) -> AsyncIterator[dict[str, Any]]:
        """Audit rows with since <= at < until, oldest first, read in keyset pages of
        `batch` rows (constant memory, no long-held cursor: works the same on both backends)."""
        last = 0
        while True:
            where, args = ["id>?"], [last]
            if since is not None:
                where.append("at>=?")
                args.append(ts(since))
            if until is not None:
                where.append("at<?")
                args.append(ts(until))
            async with self.driver.reader("audit_between") as tx:
                rows = await tx.fetchall(
                    "SELECT id, at, actor, action, serial, group_name, details FROM audit WHERE "
                    + " AND ".join(where) + f" ORDER BY id LIMIT {int(batch)}", args)
            for row_id, at, actor, action, s, g, d in rows:
                last = row_id
                yield {"id": row_id, "at": from_ts(at), "actor": actor, "action": action,
                       "serial": s, "group": g, "details": json.loads(d)}
            if len(rows) < batch:
                return

    async def _audit(self, tx: Tx, now: dt.datetime, actor: str, action: str,
                     serial: str | None, group: str | None, details: dict) -> None:
        if self.audit_context:
            details = {**self.audit_context, **details}
        pending = self._uncommitted.get(id(tx))
        if pending is not None:
            pending.append({"at": now, "actor": actor, "action": action, "serial": serial,
                            "group": group, "details": details})
        await tx.execute(
            "INSERT INTO audit (at, actor, action, serial, group_name, details) "
            "VALUES (?,?,?,?,?,?)",
            (ts(now), actor, action, serial, group, json.dumps(details, default=str)),
        )
