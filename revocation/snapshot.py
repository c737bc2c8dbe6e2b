"""In-memory revocation index used on the RADIUS hot path.

Per group, a set of revoked serial numbers: a lookup is one dict and one set probe, and a
million entries cost a set slot and an int each (no (group, serial) tuple per entry). The
store keeps it in step (at once for in-process revocations, by polling a change counter for
revocations written by other processes). Per-group counts are the sets' sizes, so the
metrics never walk them.

Certificates on hold (certificateHold) are revoked entries too (the CRL lists them), and also
in a second set: RADIUS admits them into the group's quarantine when it has one.
"""

from __future__ import annotations

from collections.abc import Iterable


class RevocationIndex:
    def __init__(self, entries: Iterable[tuple[str, int]] = (),
                 held: Iterable[tuple[str, int]] = ()) -> None:
        self._revoked: dict[str, set[int]] = {}
        self._held: dict[str, set[int]] = {}
        self.version = 0  # store change counter this index reflects
        self.replace(entries, 0, held)

    def __len__(self) -> int:
        return sum(len(s) for s in self._revoked.values())

    def is_revoked(self, group: str, serial: int) -> bool:
        serials = self._revoked.get(group)
        return serials is not None and serial in serials

    def is_held(self, group: str, serial: int) -> bool:
        """On certificateHold (a revoked entry that may be released)."""
        serials = self._held.get(group)
        return serials is not None and serial in serials

    def add(self, group: str, serial: int, held: bool = False) -> None:
        """Revoked (``held``: on certificateHold); a hold turned final is no longer held."""
        self._revoked.setdefault(group, set()).add(serial)
        if held:
            self._held.setdefault(group, set()).add(serial)
        elif group in self._held:
            self._held[group].discard(serial)

    def discard(self, group: str, serial: int) -> None:
        """Only for a released certificateHold."""
        for table in (self._held, self._revoked):
            serials = table.get(group)
            if serials is not None:
                serials.discard(serial)

    def replace(self, entries: Iterable[tuple[str, int]], version: int,
                held: Iterable[tuple[str, int]] = ()) -> None:
        revoked: dict[str, set[int]] = {}
        for group, serial in entries:
            revoked.setdefault(group, set()).add(serial)
        on_hold: dict[str, set[int]] = {}
        for group, serial in held:
            if serial in revoked.get(group, ()):
                on_hold.setdefault(group, set()).add(serial)
        self.load(revoked, on_hold, version)

    def load(self, revoked: dict[str, set[int]], held: dict[str, set[int]], version: int) -> None:
        """Take per-group sets as they are (the start-up load; no copy of a million entries).
        ``held`` must be a subset of ``revoked``."""
        self._revoked = revoked
        self._held = held
        self.version = version

    def count_for(self, group: str) -> int:
        return len(self._revoked.get(group, ()))
