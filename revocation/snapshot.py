"""In-memory revocation index used on the RADIUS hot path.

Keyed by (group name, serial number). Lookups are O(1) set membership; the
store keeps it in step (at once for in-process revocations, by polling a
change counter for revocations written by other processes).
"""

from __future__ import annotations

from collections.abc import Iterable


class RevocationIndex:
    def __init__(self, entries: Iterable[tuple[str, int]] = ()) -> None:
        self._revoked: set[tuple[str, int]] = set(entries)
        self.version = 0  # store change counter this index reflects

    def __len__(self) -> int:
        return len(self._revoked)

    def is_revoked(self, group: str, serial: int) -> bool:
        return (group, serial) in self._revoked

    def add(self, group: str, serial: int) -> None:
        self._revoked.add((group, serial))

    def discard(self, group: str, serial: int) -> None:
        """Only for a released certificateHold."""
        self._revoked.discard((group, serial))

    def replace(self, entries: Iterable[tuple[str, int]], version: int) -> None:
        self._revoked = set(entries)
        self.version = version

    def count_for(self, group: str) -> int:
        return sum(1 for g, _ in self._revoked if g == group)
