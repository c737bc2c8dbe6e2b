"""Store operations for SCEP enrollment: pending requests (manual approval) and
superseded certificates waiting for their grace period to end.

Kept apart from `revocation.store` (already large) but on the same connection and
transactions: a `ScepStore` wraps the process's `Store`. Schema: v2 `scep_requests`,
v3 columns `challenge_jti`, `device_id`, `details` and table `revocations_due`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from revocation.inventory import serial_hex
from revocation.store import ChallengeUnavailable, ChallengeUse, Store, _dt, _ts, serialized

PENDING, APPROVED, REJECTED, ISSUED = "pending", "approved", "rejected", "issued"
REQUEST_STATUSES = (PENDING, APPROVED, REJECTED, ISSUED)

_REQUEST_COLUMNS = (
    "id, group_name, transaction_id, subject, spki_sha256, csr_der, status, created_at, "
    "decided_at, decided_by, issued_serial, challenge_jti, device_id, details"
)


@dataclass(frozen=True)
class ScepRequest:
    id: int
    group: str
    transaction_id: str
    subject: str
    spki_sha256: str
    csr_der: bytes
    status: str
    created_at: dt.datetime
    decided_at: dt.datetime | None
    decided_by: str | None
    issued_serial: int | None
    challenge_jti: str | None
    device_id: str | None
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        def ts(v: dt.datetime | None) -> str | None:
            return v.isoformat().replace("+00:00", "Z") if v else None

        return {
            "id": self.id,
            "group": self.group,
            "transaction_id": self.transaction_id,
            "subject": self.subject,
            "spki_sha256": self.spki_sha256,
            "status": self.status,
            "created_at": ts(self.created_at),
            "decided_at": ts(self.decided_at),
            "decided_by": self.decided_by,
            "issued_serial": serial_hex(self.issued_serial) if self.issued_serial else None,
            "device_id": self.device_id,
            "details": self.details,
        }


def _row(row: tuple) -> ScepRequest:
    (rid, group, txid, subject, spki, csr, status, created, decided, by, issued, jti, device,
     details) = row
    return ScepRequest(
        id=int(rid), group=group, transaction_id=txid, subject=subject, spki_sha256=spki,
        csr_der=bytes(csr), status=status, created_at=_dt(created),  # type: ignore[arg-type]
        decided_at=_dt(decided), decided_by=by,
        issued_serial=int(issued, 16) if issued else None, challenge_jti=jti,
        device_id=device, details=json.loads(details or "{}"),
    )


class RequestConflict(Exception):
    """A request with this (group, transactionID) already exists."""


class ScepStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.write_lock = store.write_lock
        self._db = store._db  # noqa: SLF001 - same connection, same transactions

    # -- pending requests ---------------------------------------------------------------

    @serialized
    async def add_request(
        self, group: str, transaction_id: str, subject: str, spki_sha256: str, csr_der: bytes,
        now: dt.datetime, *, challenge: ChallengeUse | None = None, device_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> ScepRequest:
        """Store a PENDING request; reserve its challenge (used, no serial yet) atomically.

        Raises RequestConflict if (group, transactionID) exists, ChallengeUnavailable if
        the challenge was consumed meanwhile.
        """
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            async with self._db.execute(
                "SELECT 1 FROM scep_requests WHERE group_name=? AND transaction_id=?",
                (group, transaction_id),
            ) as cur:
                if await cur.fetchone() is not None:
                    raise RequestConflict(transaction_id)
            if challenge is not None:
                cur = await self._db.execute(
                    "UPDATE challenges SET used_at=?, used_txid=?, used_spki=? "
                    "WHERE jti=? AND used_at IS NULL",
                    (_ts(now), challenge.transaction_id, challenge.spki_sha256, challenge.jti),
                )
                if cur.rowcount != 1:
                    raise ChallengeUnavailable(challenge.jti)
            cur = await self._db.execute(
                "INSERT INTO scep_requests (group_name, transaction_id, subject, spki_sha256, "
                "csr_der, status, created_at, challenge_jti, device_id, details) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                (group, transaction_id, subject, spki_sha256, csr_der, PENDING, _ts(now),
                 challenge.jti if challenge else None, device_id, json.dumps(details or {})),
            )
            rid = cur.lastrowid
            await self.store._audit(now, "scep", "request-pending", None, group,  # noqa: SLF001
                                    {"id": rid, "subject": subject, "transaction_id": transaction_id})
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        found = await self.get_request(int(rid))  # type: ignore[arg-type]
        assert found is not None
        return found

    async def get_request(self, request_id: int) -> ScepRequest | None:
        async with self._db.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM scep_requests WHERE id=?", (request_id,)
        ) as cur:
            row = await cur.fetchone()
        return _row(row) if row else None

    async def find_request(self, group: str, transaction_id: str) -> ScepRequest | None:
        async with self._db.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM scep_requests WHERE group_name=? AND transaction_id=?",
            (group, transaction_id),
        ) as cur:
            row = await cur.fetchone()
        return _row(row) if row else None

    async def list_requests(self, status: str | None = None, group: str | None = None) -> list[ScepRequest]:
        where, args = [], []
        for column, value in (("status", status), ("group_name", group)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        sql = f"SELECT {_REQUEST_COLUMNS} FROM scep_requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        async with self._db.execute(sql + " ORDER BY id", args) as cur:
            rows = await cur.fetchall()
        return [_row(r) for r in rows]

    @serialized
    async def decide(self, request_id: int, approve: bool, actor: str, now: dt.datetime,
                     comment: str | None = None) -> ScepRequest | None:
        """pending -> approved/rejected; None if there is no pending request with this id."""
        status = APPROVED if approve else REJECTED
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            cur = await self._db.execute(
                "UPDATE scep_requests SET status=?, decided_at=?, decided_by=? "
                "WHERE id=? AND status='pending'",
                (status, _ts(now), actor, request_id),
            )
            if cur.rowcount != 1:
                await self._db.execute("ROLLBACK")
                return None
            async with self._db.execute(
                "SELECT group_name FROM scep_requests WHERE id=?", (request_id,)
            ) as c:
                (group,) = await c.fetchone()  # type: ignore[misc]
            await self.store._audit(now, actor, f"request-{status}", None, group,  # noqa: SLF001
                                    {"id": request_id, "comment": comment})
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        return await self.get_request(request_id)

    @serialized
    async def mark_issued(self, request_id: int, serial: int) -> None:
        """approved -> issued, and the reserved challenge now names the certificate."""
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            await self._db.execute(
                "UPDATE scep_requests SET status='issued', issued_serial=? WHERE id=?",
                (serial_hex(serial), request_id),
            )
            await self._db.execute(
                "UPDATE challenges SET issued_serial=? WHERE jti=(SELECT challenge_jti FROM "
                "scep_requests WHERE id=?)",
                (serial_hex(serial), request_id),
            )
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise

    @serialized
    async def expire_pending(self, older_than: dt.datetime, now: dt.datetime) -> int:
        """Reject pending requests created before `older_than` ([scep] max_pending_age_days)."""
        cur = await self._db.execute(
            "UPDATE scep_requests SET status='rejected', decided_at=?, decided_by='scep:expired' "
            "WHERE status='pending' AND created_at<?",
            (_ts(now), _ts(older_than)),
        )
        return cur.rowcount

    # -- superseded certificates ----------------------------------------------------------

    @serialized
    async def schedule_revocation(self, serial: int, group: str, reason: str, due_at: dt.datetime,
                                  actor: str, now: dt.datetime) -> None:
        await self._db.execute(
            "INSERT INTO revocations_due (serial, group_name, reason, due_at, created_at, actor) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT(serial) DO UPDATE SET due_at=min(due_at, "
            "excluded.due_at)",
            (serial_hex(serial), group, reason, _ts(due_at), _ts(now), actor),
        )

    async def due_revocations(self, now: dt.datetime) -> list[tuple[int, str, str, str]]:
        """(serial, group, reason, actor) whose due time has passed."""
        async with self._db.execute(
            "SELECT serial, group_name, reason, actor FROM revocations_due WHERE due_at<=? "
            "ORDER BY due_at", (_ts(now),),
        ) as cur:
            rows = await cur.fetchall()
        return [(int(s, 16), g, r, a) for s, g, r, a in rows]

    @serialized
    async def revocation_done(self, serial: int) -> None:
        await self._db.execute("DELETE FROM revocations_due WHERE serial=?", (serial_hex(serial),))
