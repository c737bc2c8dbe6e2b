"""Which device certificates certgate issued: the RADIUS allow-list behind the chain check.

A chain that verifies to a group intermediate is not enough on its own: a certificate minted
with a stolen group CA key, or an RA/server certificate under a group CA, verifies too. So
RADIUS also asks whether the inventory holds the serial as a device certificate of that group.

Pure memory, never a database round trip on the RADIUS path: loaded at start with every
unexpired device certificate that is not revoked, then fed by the store's change feed
(issuances and released holds on any node). A revoked certificate is in the revocation index
instead, so the two together say "issued" (`certgate.change_feed.ChangeFeed.is_issued`);
revocation is checked first, with its own reason.
"""

from __future__ import annotations

from collections.abc import Iterable


class IssuedIndex:
    def __init__(self, entries: Iterable[tuple[str, int]] = ()) -> None:
        self._by_group: dict[str, set[int]] = {}
        self.replace(entries)

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_group.values())

    def is_issued(self, group: str, serial: int) -> bool:
        serials = self._by_group.get(group)
        return serials is not None and serial in serials

    def add(self, group: str, serial: int) -> None:
        serials = self._by_group.get(group)
        if serials is None:
            serials = self._by_group[group] = set()
        serials.add(serial)

    def replace(self, entries: Iterable[tuple[str, int]]) -> None:
        self._by_group = {}
        for group, serial in entries:
            self.add(group, serial)

    def load(self, by_group: dict[str, set[int]]) -> None:
        """Take per-group sets as they are (the start-up load; no copy)."""
        self._by_group = by_group
