"""Keeps the in-memory RevocationIndex in step with the store across processes.

`certgate revoke` (another process) writes the store; the server notices within
one poll interval. Each poll is one `PRAGMA data_version` on a private sqlite3
connection, which changes only when another connection committed, so an idle
store costs microseconds; only then are rows with a newer change_seq read.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from revocation.snapshot import RevocationIndex

log = logging.getLogger("certgate.revocation")


@dataclass(frozen=True, slots=True)
class Change:
    group: str
    serial: int
    status: str
    reason: str | None


class RevocationWatcher:
    def __init__(self, path: Path, index: RevocationIndex) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                     check_same_thread=False)
        self._index = index
        self._data_version = -1

    def close(self) -> None:
        self._conn.close()

    def load_all(self) -> int:
        """Full load (start-up): returns the number of revoked entries."""
        self._conn.execute("BEGIN")
        try:
            (seq,) = self._conn.execute("SELECT value FROM meta WHERE key='change_seq'").fetchone()
            rows = self._conn.execute(
                "SELECT group_name, serial FROM certificates WHERE status='revoked'"
            ).fetchall()
        finally:
            self._conn.execute("COMMIT")
        self._index.replace(((g, int(s, 16)) for g, s in rows), seq)
        self._data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        return len(self._index)

    def poll(self) -> list[Change]:
        """Apply changes committed since the last poll (by any connection) and return them."""
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return []
        self._data_version = version
        rows = self._conn.execute(
            "SELECT group_name, serial, status, reason, change_seq FROM certificates "
            "WHERE change_seq>? ORDER BY change_seq",
            (self._index.version,),
        ).fetchall()
        changes = []
        for group, serial_text, status, reason, seq in rows:
            serial = int(serial_text, 16)
            if status == "revoked":
                self._index.add(group, serial)
            else:
                self._index.discard(group, serial)
            self._index.version = max(self._index.version, seq)
            changes.append(Change(group, serial, status, reason))
        if rows:
            log.info("revocation index updated: %d change(s), %d revoked", len(rows),
                     len(self._index))
        return changes
