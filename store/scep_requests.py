"""Store operations for SCEP enrollment: pending requests (manual approval) and superseded
certificates waiting for their grace period to end. Same driver and transactions as
`store.store.Store`, which a `ScepStore` wraps."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from store.driver import Row
from store.errors import ChallengeUnavailable, RequestConflict, UniqueViolation
from store.records import PENDING, ChallengeUse, ScepRequest, serial_hex
from store.store import Store, from_ts, observed, ts

REQUEST_COLUMNS = (
    "id, group_name, transaction_id, subject, spki_sha256, csr_der, status, created_at, "
    "decided_at, decided_by, issued_serial, challenge_jti, device_id, details"
)


def request_from_row(row: Row) -> ScepRequest:
    (rid, group, txid, subject, spki, csr, status, created, decided, by, issued, jti, device,
     details) = row
    return ScepRequest(
        id=int(rid), group=group, transaction_id=txid, subject=subject, spki_sha256=spki,
        csr_der=bytes(csr), status=status, created_at=from_ts(created),  # type: ignore[arg-type]
        decided_at=from_ts(decided), decided_by=by,
        issued_serial=int(issued, 16) if issued else None, challenge_jti=jti,
        device_id=device, details=json.loads(details or "{}"),
    )


class ScepStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.driver = store.driver

    # -- pending requests ---------------------------------------------------------------

    @observed("add_request")
    async def add_request(
        self, group: str, transaction_id: str, subject: str, spki_sha256: str, csr_der: bytes,
        now: dt.datetime, *, challenge: ChallengeUse | None = None, device_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> ScepRequest:
        """Store a PENDING request; reserve its challenge (used, no serial yet) atomically.

        Raises RequestConflict if (group, transactionID) exists, ChallengeUnavailable if
        the challenge was consumed meanwhile.
        """
        try:
            async with self.store.transaction("add_request") as tx:
                if await tx.fetchone(
                        "SELECT 1 FROM scep_requests WHERE group_name=? AND transaction_id=?",
                        (group, transaction_id)) is not None:
                    raise RequestConflict(transaction_id)
                if challenge is not None:
                    changed = await tx.execute(
                        "UPDATE challenges SET used_at=?, used_txid=?, used_spki=? "
                        "WHERE jti=? AND used_at IS NULL",
                        (ts(now), challenge.transaction_id, challenge.spki_sha256, challenge.jti),
                    )
                    if changed != 1:
                        raise ChallengeUnavailable(challenge.jti)
                row = await tx.fetchone(
                    f"INSERT INTO scep_requests (group_name, transaction_id, subject, spki_sha256, "
                    "csr_der, status, created_at, challenge_jti, device_id, details) "
                    f"VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING {REQUEST_COLUMNS}",
                    (group, transaction_id, subject, spki_sha256, csr_der, PENDING, ts(now),
                     challenge.jti if challenge else None, device_id, json.dumps(details or {})),
                )
                assert row is not None
                found = request_from_row(row)
                await self.store._audit(  # noqa: SLF001 - same transaction
                    tx, now, "scep", "request-pending", None, group,
                    {"id": found.id, "subject": subject, "transaction_id": transaction_id})
        except UniqueViolation:
            raise RequestConflict(transaction_id) from None
        return found

    @observed("get_request")
    async def get_request(self, request_id: int) -> ScepRequest | None:
        async with self.driver.reader("get_request") as tx:
            row = await tx.fetchone(f"SELECT {REQUEST_COLUMNS} FROM scep_requests WHERE id=?",
                                    (request_id,))
        return request_from_row(row) if row else None

    @observed("find_request")
    async def find_request(self, group: str, transaction_id: str) -> ScepRequest | None:
        async with self.driver.reader("find_request") as tx:
            row = await tx.fetchone(
                f"SELECT {REQUEST_COLUMNS} FROM scep_requests WHERE group_name=? AND "
                "transaction_id=?", (group, transaction_id))
        return request_from_row(row) if row else None

    @observed("list_requests")
    async def list_requests(self, status: str | None = None,
                            group: str | None = None) -> list[ScepRequest]:
        where, args = [], []
        for column, value in (("status", status), ("group_name", group)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        sql = f"SELECT {REQUEST_COLUMNS} FROM scep_requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        async with self.driver.reader("list_requests") as tx:
            rows = await tx.fetchall(sql + " ORDER BY id", args)
        return [request_from_row(r) for r in rows]

    @observed("pending_counts")
    async def pending_counts(self) -> dict[str, int]:
        """Pending (manual approval) requests per group, for the metrics gauge."""
        async with self.driver.reader("pending_counts") as tx:
            rows = await tx.fetchall(
                "SELECT group_name, count(*) FROM scep_requests WHERE status=? "
                "GROUP BY group_name", (PENDING,))
        return {g: int(n) for g, n in rows}

    @observed("decide_request")
    async def decide(self, request_id: int, approve: bool, actor: str, now: dt.datetime,
                     comment: str | None = None) -> ScepRequest | None:
        """pending -> approved/rejected; None if there is no pending request with this id."""
        status = "approved" if approve else "rejected"
        async with self.store.transaction("decide_request") as tx:
            row = await tx.fetchone(
                "UPDATE scep_requests SET status=?, decided_at=?, decided_by=? "
                f"WHERE id=? AND status='pending' RETURNING {REQUEST_COLUMNS}",
                (status, ts(now), actor, request_id),
            )
            if row is None:
                return None
            decided = request_from_row(row)
            await self.store._audit(tx, now, actor, f"request-{status}", None,  # noqa: SLF001
                                    decided.group, {"id": request_id, "comment": comment})
        return decided

    @observed("mark_issued")
    async def mark_issued(self, request_id: int, serial: int) -> None:
        """approved -> issued, and the reserved challenge now names the certificate."""
        async with self.driver.transaction("mark_issued") as tx:
            await tx.execute("UPDATE scep_requests SET status='issued', issued_serial=? WHERE id=?",
                             (serial_hex(serial), request_id))
            await tx.execute(
                "UPDATE challenges SET issued_serial=? WHERE jti=(SELECT challenge_jti FROM "
                "scep_requests WHERE id=?)", (serial_hex(serial), request_id))

    @observed("expire_pending")
    async def expire_pending(self, older_than: dt.datetime, now: dt.datetime) -> int:
        """Reject pending requests created before `older_than` ([scep] max_pending_age_days)."""
        async with self.driver.transaction("expire_pending") as tx:
            return await tx.execute(
                "UPDATE scep_requests SET status='rejected', decided_at=?, "
                "decided_by='scep:expired' WHERE status='pending' AND created_at<?",
                (ts(now), ts(older_than)))

    # -- superseded certificates ----------------------------------------------------------

    @observed("schedule_revocation")
    async def schedule_revocation(self, serial: int, group: str, reason: str, due_at: dt.datetime,
                                  actor: str, now: dt.datetime) -> None:
        async with self.driver.transaction("schedule_revocation") as tx:
            await tx.execute(
                "INSERT INTO revocations_due (serial, group_name, reason, due_at, created_at, "
                "actor) VALUES (?,?,?,?,?,?) ON CONFLICT(serial) DO UPDATE SET due_at=CASE "
                "WHEN excluded.due_at<revocations_due.due_at THEN excluded.due_at "
                "ELSE revocations_due.due_at END",
                (serial_hex(serial), group, reason, ts(due_at), ts(now), actor),
            )

    @observed("due_revocations")
    async def due_revocations(self, now: dt.datetime) -> list[tuple[int, str, str, str]]:
        """(serial, group, reason, actor) whose due time has passed."""
        async with self.driver.reader("due_revocations") as tx:
            rows = await tx.fetchall(
                "SELECT serial, group_name, reason, actor FROM revocations_due WHERE due_at<=? "
                "ORDER BY due_at", (ts(now),))
        return [(int(s, 16), g, r, a) for s, g, r, a in rows]

    @observed("revocation_done")
    async def revocation_done(self, serial: int) -> None:
        async with self.driver.transaction("revocation_done") as tx:
            await tx.execute("DELETE FROM revocations_due WHERE serial=?", (serial_hex(serial),))
