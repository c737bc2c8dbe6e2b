"""In-memory revocation index used on the RADIUS hot path.

Keyed by (group name, serial number). Lookups are O(1) set membership; the
store keeps it in step (at once for in-process revocations, by polling a
change counter for revocations written by other processes). Per-group counts
are kept incrementally so the metrics never walk the set.

Certificates on hold (certificateHold) are revoked entries too (the CRL lists them), and also
in a second set: RADIUS admits them into the group's quarantine when it has one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


class RevocationIndex:
    def __init__(self, entries: Iterable[tuple[str, int]] = (),
                 held: Iterable[tuple[str, int]] = ()) -> None:
        self._revoked: set[tuple[str, int]] = set()
        self._held: set[tuple[str, int]] = set()
        self._counts: Counter[str] = Counter()
        self.version = 0  # store change counter this index reflects
        self.replace(entries, 0, held)

    def __len__(self) -> int:
        return len(self._revoked)

    def is_revoked(self, group: str, serial: int) -> bool:
        return (group, serial) in self._revoked

    def is_held(self, group: str, serial: int) -> bool:
        """On certificateHold (a revoked entry that may be released)."""
        return (group, serial) in self._held

    def add(self, group: str, serial: int, held: bool = False) -> None:
        """Revoked (``held``: on certificateHold); a hold turned final is no longer held."""
        key = (group, serial)
        if key not in self._revoked:
            self._revoked.add(key)
            self._counts[group] += 1
        if held:
            self._held.add(key)
        else:
            self._held.discard(key)

    def discard(self, group: str, serial: int) -> None:
        """Only for a released certificateHold."""
        key = (group, serial)
        self._held.discard(key)
        if key in self._revoked:
            self._revoked.remove(key)
            self._counts[group] -= 1

    def replace(self, entries: Iterable[tuple[str, int]], version: int,
                held: Iterable[tuple[str, int]] = ()) -> None:
        self._revoked = set(entries)
        self._held = set(held) & self._revoked
        self._counts = Counter(g for g, _ in self._revoked)
        self.version = version

    def count_for(self, group: str) -> int:
        return self._counts.get(group, 0)
