"""In-memory revocation index used on the RADIUS hot path.

Keyed by (group name, serial number). Lookups are O(1) set membership; the
store keeps it in step (at once for in-process revocations, by polling a
change counter for revocations written by other processes). Per-group counts
are kept incrementally so the metrics never walk the set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


class RevocationIndex:
    def __init__(self, entries: Iterable[tuple[str, int]] = ()) -> None:
        self._revoked: set[tuple[str, int]] = set()
        self._counts: Counter[str] = Counter()
        self.version = 0  # store change counter this index reflects
        self.replace(entries, 0)

    def __len__(self) -> int:
        return len(self._revoked)

    def is_revoked(self, group: str, serial: int) -> bool:
        return (group, serial) in self._revoked

    def add(self, group: str, serial: int) -> None:
        key = (group, serial)
        if key not in self._revoked:
            self._revoked.add(key)
            self._counts[group] += 1

    def discard(self, group: str, serial: int) -> None:
        """Only for a released certificateHold."""
        key = (group, serial)
        if key in self._revoked:
            self._revoked.remove(key)
            self._counts[group] -= 1

    def replace(self, entries: Iterable[tuple[str, int]], version: int) -> None:
        self._revoked = set(entries)
        self._counts = Counter(g for g, _ in self._revoked)
        self.version = version

    def count_for(self, group: str) -> int:
        return self._counts.get(group, 0)
