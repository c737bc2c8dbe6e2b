"""One memory budget for what half-done EAP-TLS conversations hold, shared fairly by NAS.

Pure. Without it, 9,900 half-open conversations each buffering ~64 KiB of announced TLS
fragments took the process from 62 MB to 939 MB (issue #10). Two things are charged:

* a reassembly reserves its announced TLS Message Length (or the 64 KiB maximum when the
  peer sends no L bit) before its first fragment is buffered, so an admitted message can
  always complete; released when it completes, fails or its conversation ends;
* a TLS connection, made when the ClientHello arrives, reserves ``TLS_CONNECTION_BYTES``
  (OpenSSL holds ~52 KiB for a server handshake waiting for the client's second flight,
  measured with ``MODE_RELEASE_BUFFERS``); released when the conversation ends.

When a reservation does not fit, the budget is shared like the conversation table:
max-min fair by client (NAS). A client holding less than the largest holder gets room by
shedding the largest holder's oldest accounts (the shell ends those conversations,
``take_shed()``); the largest holder's own reservation is refused, and its conversation
fails with reason ``buffers_full``. So one NAS filling the budget cannot starve another.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

TLS_CONNECTION_BYTES = 56 * 1024


class BufferAccount:
    """What one conversation holds. ``key`` is the shell's handle (its State) for shedding."""

    __slots__ = ("_budget", "client", "held", "key")

    def __init__(self, budget: BufferBudget, client: str) -> None:
        self._budget = budget
        self.client = client
        self.held = 0
        self.key: Hashable | None = None

    def reserve(self, n: int) -> bool:
        """Charge ``n`` more bytes; False when the budget refuses (nothing charged)."""
        return self._budget._reserve(self, n)

    def release(self, n: int | None = None) -> None:
        """Give back ``n`` bytes (all when None). Idempotent once everything is back."""
        self._budget._release(self, self.held if n is None else min(n, self.held))


class BufferBudget:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("buffer budget must be >= 1 byte")
        self.limit = limit
        self.used = 0
        self.peak = 0  # the most held since the last take_peak()
        self._by_client: dict[str, int] = {}
        self._accounts: dict[str, OrderedDict[BufferAccount, None]] = {}  # oldest first
        self._shed: list[BufferAccount] = []

    def account(self, client: str) -> BufferAccount:
        return BufferAccount(self, client)

    def held_by(self, client: str) -> int:
        return self._by_client.get(client, 0)

    def take_shed(self) -> list[BufferAccount]:
        """Accounts emptied to make room for another client since the last call: the
        shell ends their conversations (their bytes are already given back)."""
        shed, self._shed = self._shed, []
        return shed

    def take_peak(self) -> int:
        """The most held since the last call; the next period starts from what is held
        now. Lets the shell notice that a flood's buffers were given back."""
        peak, self.peak = self.peak, self.used
        return peak

    def _reserve(self, account: BufferAccount, n: int) -> bool:
        if n <= 0:
            return True
        if n > self.limit:
            return False
        client = account.client
        while self.used + n > self.limit:
            victim = self._victim(client, n)
            if victim is None:
                return False
            self._release(victim, victim.held)
            self._shed.append(victim)
        account.held += n
        self.used += n
        if self.used > self.peak:
            self.peak = self.used
        self._by_client[client] = self._by_client.get(client, 0) + n
        self._accounts.setdefault(client, OrderedDict())[account] = None
        return True

    def _victim(self, client: str, n: int) -> BufferAccount | None:
        """The oldest account of the largest holder, if taking from it is fairer."""
        largest = max(self._by_client, key=self._by_client.__getitem__, default=None)
        if largest is None or largest == client:
            return None
        if self.held_by(client) + n > self._by_client[largest]:
            return None  # the newcomer would end up holding more than the largest does
        return next(iter(self._accounts[largest]))

    def _release(self, account: BufferAccount, n: int) -> None:
        if n <= 0:
            return
        client = account.client
        account.held -= n
        self.used -= n
        left = self._by_client[client] - n
        if left:
            self._by_client[client] = left
        else:
            del self._by_client[client]
        if not account.held:
            mine = self._accounts[client]
            del mine[account]
            if not mine:
                del self._accounts[client]
