"""Which device certificates certgate issued: the RADIUS allow-list behind the chain check.

A chain that verifies to a group intermediate is not enough on its own: a certificate minted
with a stolen group CA key, or an RA/server certificate under a group CA, verifies too. So
RADIUS also asks whether the inventory holds the serial as a device certificate of that group.

Positive answers are cached in memory (a set); a miss is one point read on a private
read-only sqlite3 connection (~10 µs), which also covers a certificate issued a moment ago by
another process. Revoked certificates stay "issued": revocation is checked separately, with
its own reason.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from revocation.inventory import serial_hex


class IssuedIndex:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                     check_same_thread=False)
        self._known: set[tuple[str, int]] = set()

    def close(self) -> None:
        self._conn.close()

    def __len__(self) -> int:
        return len(self._known)

    def is_issued(self, group: str, serial: int) -> bool:
        key = (group, serial)
        if key in self._known:
            return True
        row = self._conn.execute(
            "SELECT 1 FROM certificates WHERE serial=? AND group_name=? AND profile='device'",
            (serial_hex(serial), group),
        ).fetchone()
        if row is None:
            return False
        self._known.add(key)
        return True
