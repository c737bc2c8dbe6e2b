"""Conversation table (RADIUS State -> EAP session) and the duplicate-request cache.

Pure: every method takes ``now`` (the shell passes ``time.monotonic()``); no timers, no
I/O. The shell calls ``expire(now)`` periodically.

* State values are >= 16 random bytes, one per conversation (R7); unknown or expired
  State means Access-Reject. Expiry counts from the last request (FreeRADIUS
  ``timer_expire`` semantics).
* Live conversations are capped (R10): over the cap, *new* conversations are refused
  (``Overloaded``); existing ones keep going.
* Duplicate cache (R8), keyed (client address, source port, Identifier, Request
  Authenticator): a retransmission gets the exact reply bytes and never advances the
  EAP/TLS state; a duplicate of a request still being processed is dropped.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

STATE_LENGTH = 16

V = TypeVar("V")


class Overloaded(Exception):
    """The live-conversation cap is reached (our limit, not the peer's fault)."""


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    last_seen: float


class ConversationTable(Generic[V]):
    def __init__(
        self,
        max_conversations: int,
        timeout: float,
        token: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if max_conversations < 1 or timeout <= 0:
            raise ValueError("max_conversations >= 1 and timeout > 0 required")
        self.max_conversations = max_conversations
        self.timeout = timeout
        self._token = token
        self._entries: OrderedDict[bytes, _Entry[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def full(self) -> bool:
        return len(self._entries) >= self.max_conversations

    def add(self, value: V, now: float) -> bytes:
        """Store a new conversation; returns its State. Raises ``Overloaded``."""
        if self.full:
            raise Overloaded(f"{len(self._entries)} live conversations")
        while True:
            state = self._token(STATE_LENGTH)
            if len(state) < STATE_LENGTH:
                raise ValueError("State token too short")
            if state not in self._entries:
                break
        self._entries[state] = _Entry(value, now)
        return state

    def get(self, state: bytes, now: float) -> V | None:
        """The live conversation for State (refreshing its expiry), else None."""
        entry = self._entries.get(state)
        if entry is None:
            return None
        if now - entry.last_seen >= self.timeout:
            return None  # expire() will collect and count it
        entry.last_seen = now
        self._entries.move_to_end(state)
        return entry.value

    def remove(self, state: bytes) -> V | None:
        entry = self._entries.pop(state, None)
        return None if entry is None else entry.value

    def expire(self, now: float) -> list[V]:
        """Remove and return conversations idle for ``timeout`` seconds or more."""
        expired: list[V] = []
        while self._entries:
            state, entry = next(iter(self._entries.items()))
            if now - entry.last_seen < self.timeout:
                break
            del self._entries[state]
            expired.append(entry.value)
        return expired


DuplicateKey = tuple[str, int, int, bytes]  # (client address, port, Identifier, Authenticator)


class DupStatus(Enum):
    NEW = "NEW"  # process it
    IN_PROGRESS = "IN_PROGRESS"  # same request still being processed: drop
    DONE = "DONE"  # resend the cached reply


@dataclass(slots=True)
class _Cached:
    reply: bytes | None
    expires: float


class DuplicateCache:
    def __init__(self, ttl: float, max_entries: int = 100_000) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("ttl > 0 and max_entries >= 1 required")
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[DuplicateKey, _Cached] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self, key: DuplicateKey, now: float) -> tuple[DupStatus, bytes | None]:
        cached = self._entries.get(key)
        if cached is not None and cached.expires > now:
            if cached.reply is None:
                return DupStatus.IN_PROGRESS, None
            return DupStatus.DONE, cached.reply
        self._entries[key] = _Cached(None, now + self.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return DupStatus.NEW, None

    def finish(self, key: DuplicateKey, reply: bytes, now: float) -> None:
        self._entries[key] = _Cached(reply, now + self.ttl)
        self._entries.move_to_end(key)

    def abandon(self, key: DuplicateKey) -> None:
        """No reply was sent (silent drop): let a retransmission be processed afresh."""
        self._entries.pop(key, None)

    def expire(self, now: float) -> int:
        n = 0
        while self._entries:
            key, cached = next(iter(self._entries.items()))
            if cached.expires > now:
                break
            del self._entries[key]
            n += 1
        return n
