"""Store errors, typed by whose fault they are.

`StoreUnavailable` is nobody's fault in particular: the database is unreachable, times out or
refuses work; callers answer "try again" (HTTP 503 + Retry-After, a SCEP FAILURE, RADIUS
`store_unavailable`) and change nothing. The conflicts are the caller's to resolve.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by the store."""


class StoreUnavailable(StoreError):
    """The database did not answer (connection lost, timeout, disk trouble, locked)."""

    def __init__(self, op: str, detail: str) -> None:
        super().__init__(f"store unavailable during {op}: {detail}")
        self.op = op
        self.detail = detail


class StoreOpenError(StoreError):
    """The store cannot be opened or migrated; the message says what to check."""


class SchemaTooNew(StoreOpenError):
    """The database was migrated by a newer certgate: refuse to run against it."""


class UniqueViolation(StoreError):
    """A driver-level unique-key violation (mapped to a conflict by the store)."""


class SerialConflict(StoreError):
    """The serial already exists: the caller re-signs with a fresh one."""


class ChallengeUnavailable(StoreError):
    """The challenge was consumed (or removed) between check and issuance."""


class RequestConflict(StoreError):
    """A SCEP request with this (group, transactionID) already exists."""


class NotEmpty(StoreError):
    """`storage copy` refuses a target that already holds data."""


class SchemaMismatch(StoreError):
    """`storage copy`: source and target are not at this certgate's schema (or differ)."""


class SourceChanged(StoreError):
    """`storage copy`: the source was written while it was being copied (nothing committed)."""
