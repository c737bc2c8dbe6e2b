"""The duplicate-request cache (R8), bounded in entries and bytes and shared fairly by NAS.

Keyed (client address, source port, Identifier, Request Authenticator): a retransmission
gets the exact reply bytes and never advances the EAP/TLS state; a duplicate of a request
still being processed is dropped. Pure: every method takes ``now``.

Entries live ``ttl`` seconds. When the cache is full (``max_entries`` or ``max_bytes`` of
cached replies, up to 4096 bytes each), room is made max-min fairly, as for conversations:
an owner (the RADIUS client) at or above its share (the bound divided by the owners
holding entries) gives up its own oldest entry; one below it takes the oldest entry of the
largest holder. A NAS flooding unique requests therefore recycles its own entries and
cannot evict another NAS's cached replies (whose retransmissions would otherwise be
processed afresh, out of sequence, and rejected).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

DuplicateKey = tuple[str, int, int, bytes]  # (client address, port, Identifier, Authenticator)


class DupStatus(Enum):
    NEW = "NEW"  # process it
    IN_PROGRESS = "IN_PROGRESS"  # same request still being processed: drop
    DONE = "DONE"  # resend the cached reply


@dataclass(slots=True)
class _Cached:
    owner: str
    reply: bytes | None
    expires: float


class DuplicateCache:
    def __init__(self, ttl: float, max_entries: int = 100_000, max_bytes: int = 64 << 20) -> None:
        if ttl <= 0 or max_entries < 1 or max_bytes < 4096:
            raise ValueError("ttl > 0, max_entries >= 1 and max_bytes >= 4096 required")
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0  # reply bytes held
        self._entries: OrderedDict[DuplicateKey, _Cached] = OrderedDict()  # by expiry
        self._by_owner: dict[str, OrderedDict[DuplicateKey, None]] = {}
        self._bytes_by_owner: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def count_for(self, owner: str) -> int:
        return len(self._by_owner.get(owner, ()))

    def begin(self, key: DuplicateKey, now: float, owner: str = "") -> tuple[DupStatus, bytes | None]:
        cached = self._entries.get(key)
        if cached is not None and cached.expires > now:
            if cached.reply is None:
                return DupStatus.IN_PROGRESS, None
            return DupStatus.DONE, cached.reply
        if cached is not None:
            self._remove(key)
        self._make_room(owner, 0)
        self._insert(key, _Cached(owner, None, now + self.ttl))
        return DupStatus.NEW, None

    def finish(self, key: DuplicateKey, reply: bytes, now: float) -> None:
        cached = self._entries.get(key)
        if cached is None:  # made room for someone else meanwhile: nothing to resend
            return
        owner, size = cached.owner, len(reply)
        if self.bytes + size > self.max_bytes:
            self._remove(key)
            self._make_room(owner, size)
            self._insert(key, _Cached(owner, reply, now + self.ttl))
            return
        cached.reply, cached.expires = reply, now + self.ttl  # in place: the common case
        self._entries.move_to_end(key)
        self._by_owner[owner].move_to_end(key)
        self.bytes += size
        self._bytes_by_owner[owner] += size

    def abandon(self, key: DuplicateKey) -> None:
        """No reply was sent (silent drop): let a retransmission be processed afresh."""
        if key in self._entries:
            self._remove(key)

    def expire(self, now: float) -> int:
        n = 0
        while self._entries:
            key, cached = next(iter(self._entries.items()))
            if cached.expires > now:
                break
            self._remove(key)
            n += 1
        return n

    # --- bookkeeping ------------------------------------------------------------------

    def _insert(self, key: DuplicateKey, cached: _Cached) -> None:
        self._entries[key] = cached
        self._by_owner.setdefault(cached.owner, OrderedDict())[key] = None
        size = len(cached.reply or b"")
        self.bytes += size
        self._bytes_by_owner[cached.owner] = self._bytes_by_owner.get(cached.owner, 0) + size

    def _remove(self, key: DuplicateKey) -> None:
        cached = self._entries.pop(key)
        mine = self._by_owner[cached.owner]
        del mine[key]
        size = len(cached.reply or b"")
        self.bytes -= size
        self._bytes_by_owner[cached.owner] -= size
        if not mine:
            del self._by_owner[cached.owner]
            del self._bytes_by_owner[cached.owner]

    def _make_room(self, owner: str, size: int) -> None:
        """Evict until one more entry of ``size`` bytes fits, max-min fairly by owner."""
        while self._entries and (len(self._entries) >= self.max_entries
                                 or self.bytes + size > self.max_bytes):
            holders = len(self._by_owner) + (owner not in self._by_owner)
            by_count = len(self._entries) >= self.max_entries
            if by_count:
                mine, share = self.count_for(owner), self.max_entries / holders
            else:
                mine, share = self._bytes_by_owner.get(owner, 0) + size, self.max_bytes / holders
            if owner in self._by_owner and mine >= share:
                victim = owner
            elif by_count:
                victim = max(self._by_owner, key=lambda o: len(self._by_owner[o]))
            else:
                victim = max(self._bytes_by_owner, key=self._bytes_by_owner.__getitem__)
            self._remove(next(iter(self._by_owner[victim])))
