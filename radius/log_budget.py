"""A budget of log lines per key (client, reason): counters stay exact, logs stay readable.

20,000 malformed datagrams from one NAS used to write 20,000 lines. Per key, the first
`burst` lines of each `interval` are logged; the rest are counted and the next line that is
logged says how many were suppressed. Pure: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0


class LogBudget:
    MAX_KEYS = 4096  # keys come from configured clients and closed reason sets; a cap anyway

    def __init__(self, burst: int = 5, interval: float = 10.0) -> None:
        self.burst = burst
        self.interval = interval
        self._windows: dict[tuple[str, str], _Window] = {}

    def allow(self, key: tuple[str, str], now: float) -> int | None:
        """None: do not log this one. Otherwise log it, mentioning the returned number of
        lines suppressed for this key since the last logged one (0: none)."""
        w = self._windows.get(key)
        if w is None or now - w.started >= self.interval:
            if w is None and len(self._windows) >= self.MAX_KEYS:
                self._windows.clear()
            suppressed = w.suppressed if w is not None else 0
            self._windows[key] = _Window(now, 1)
            return suppressed
        if w.logged < self.burst:
            w.logged += 1
            suppressed, w.suppressed = w.suppressed, 0
            return suppressed
        w.suppressed += 1
        return None


def suppressed_note(count: int) -> str:
    return f" ({count} similar line(s) suppressed)" if count else ""
