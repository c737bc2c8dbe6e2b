"""Conversation table (RADIUS State -> EAP session).

Pure: every method takes ``now`` (the shell passes ``time.monotonic()``); no timers, no
I/O. The shell calls ``expire(now)`` periodically.

* State values are >= 16 random bytes, one per conversation (R7); unknown or expired
  State means Access-Reject. Expiry counts from the last request (FreeRADIUS
  ``timer_expire`` semantics).
* Live conversations are capped (R10) and shared fairly. Each conversation has an owner
  (the RADIUS client) and a station (its Calling-Station-Id). A station holds at most
  ``max_per_station`` conversations: a newer one replaces its oldest (a supplicant that
  restarted). When the table is full, a new conversation of a client is admitted by shedding
  the oldest conversation of the client holding the most — unless the newcomer's client is
  itself (one of) the largest, which is refused (``Overloaded``). So one NAS flooding
  Identity responses cannot lock out another NAS: max-min fairness without a knob.
* Optionally (``max_per_client``) one client holds at most that many conversations even
  when the table has room: its new ones are refused (``client_limit``).
* Every conversation ends at ``lifetime`` after it began, however active (a peer trickling
  one fragment before each idle timeout cannot hold a slot for long).
* The duplicate-request cache (R8) is radius.duplicates.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

STATE_LENGTH = 16

V = TypeVar("V")


class Overloaded(Exception):
    """The live-conversation cap is reached (our limit, not the peer's fault)."""


Owner = tuple[str, str | None]  # (client name, calling station)


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    last_seen: float
    created: float
    client: str
    station: str | None


@dataclass(frozen=True, slots=True)
class Shed(Generic[V]):
    """A conversation ended to make room or at its lifetime; `why` is the metric label."""

    value: V
    client: str
    why: str  # "station_limit", "client_share" or "lifetime"


class ConversationTable(Generic[V]):
    def __init__(
        self,
        max_conversations: int,
        timeout: float,
        token: Callable[[int], bytes] = secrets.token_bytes,
        *,
        lifetime: float | None = None,
        max_per_station: int = 4,
        max_per_client: int | None = None,
    ) -> None:
        if max_conversations < 1 or timeout <= 0 or max_per_station < 1:
            raise ValueError("max_conversations >= 1, timeout > 0, max_per_station >= 1 required")
        if max_per_client is not None and max_per_client < 1:
            raise ValueError("max_per_client must be >= 1")
        self.max_per_client = max_per_client
        self.max_conversations = max_conversations
        self.timeout = timeout
        self.lifetime = lifetime if lifetime is not None else 2 * timeout
        if self.lifetime <= 0:
            raise ValueError("lifetime must be positive")
        self.max_per_station = max_per_station
        self._token = token
        self._entries: OrderedDict[bytes, _Entry[V]] = OrderedDict()  # by last activity
        self._by_created: OrderedDict[bytes, None] = OrderedDict()
        self._by_client: dict[str, OrderedDict[bytes, None]] = {}  # oldest first
        self._by_station: dict[Owner, OrderedDict[bytes, None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def full(self) -> bool:
        return len(self._entries) >= self.max_conversations

    def count_for(self, client: str) -> int:
        return len(self._by_client.get(client, ()))

    def admits(self, client: str) -> bool:
        """Would `add` for this client succeed (possibly by shedding someone else's)?"""
        return self.refusal(client) is None

    def refusal(self, client: str) -> str | None:
        """Why `add` for this client would raise ``Overloaded`` (the metric label), or None."""
        mine = self.count_for(client)
        if self.max_per_client is not None and mine >= self.max_per_client:
            return "client_limit"
        if self.full and mine >= max(len(v) for v in self._by_client.values()):
            return "refused"
        return None

    def add(self, value: V, now: float, client: str = "", station: str | None = None
            ) -> tuple[bytes, list[Shed[V]]]:
        """Store a new conversation; returns its State and the conversations shed to make
        room (the caller ends and counts them). Raises ``Overloaded``."""
        shed: list[Shed[V]] = []
        if station is not None:
            mine = self._by_station.get((client, station))
            if mine is not None and len(mine) >= self.max_per_station:
                shed.append(self._shed(next(iter(mine)), "station_limit"))
        if not self.admits(client):
            raise Overloaded(f"{len(self._entries)} live conversations, "
                             f"{self.count_for(client)} of them from {client}")
        if self.full:
            largest = max(self._by_client, key=lambda c: len(self._by_client[c]))
            shed.append(self._shed(next(iter(self._by_client[largest])), "client_share"))
        while True:
            state = self._token(STATE_LENGTH)
            if len(state) < STATE_LENGTH:
                raise ValueError("State token too short")
            if state not in self._entries:
                break
        self._entries[state] = _Entry(value, now, now, client, station)
        self._by_created[state] = None
        self._by_client.setdefault(client, OrderedDict())[state] = None
        if station is not None:
            self._by_station.setdefault((client, station), OrderedDict())[state] = None
        return state, shed

    def get(self, state: bytes, now: float) -> V | None:
        """The live conversation for State (refreshing its expiry), else None."""
        entry = self._entries.get(state)
        if entry is None:
            return None
        if now - entry.last_seen >= self.timeout or now - entry.created >= self.lifetime:
            return None  # expire() will collect and count it
        entry.last_seen = now
        self._entries.move_to_end(state)
        return entry.value

    def remove(self, state: bytes) -> V | None:
        entry = self._pop(state)
        return None if entry is None else entry.value

    def _pop(self, state: bytes) -> _Entry[V] | None:
        entry = self._entries.pop(state, None)
        if entry is None:
            return None
        self._by_created.pop(state, None)
        mine = self._by_client.get(entry.client)
        if mine is not None:
            mine.pop(state, None)
            if not mine:
                del self._by_client[entry.client]
        if entry.station is not None:
            key = (entry.client, entry.station)
            theirs = self._by_station.get(key)
            if theirs is not None:
                theirs.pop(state, None)
                if not theirs:
                    del self._by_station[key]
        return entry

    def _shed(self, state: bytes, why: str) -> Shed[V]:
        entry = self._pop(state)
        assert entry is not None
        return Shed(entry.value, entry.client, why)

    def expire(self, now: float) -> list[V]:
        """Remove and return conversations idle for ``timeout`` seconds or more."""
        expired: list[V] = []
        while self._entries:
            state, entry = next(iter(self._entries.items()))
            if now - entry.last_seen < self.timeout:
                break
            self._pop(state)
            expired.append(entry.value)
        return expired

    def expire_lifetime(self, now: float) -> list[Shed[V]]:
        """Remove and return conversations older than ``lifetime``, however active."""
        ended: list[Shed[V]] = []
        while self._by_created:
            state = next(iter(self._by_created))
            entry = self._entries[state]
            if now - entry.created < self.lifetime:
                break
            ended.append(self._shed(state, "lifetime"))
        return ended
