"""asyncpg's pool logs a traceback per failed refill during an outage: one line, rate-limited."""

from __future__ import annotations

import logging

from store.postgres import _OneLineWarnings


def _record(exc: BaseException | None) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("asyncpg.pool", logging.WARNING, __file__, 1,
                             "Failed to restore the pool connection floor; retrying", None, info)


def test_pool_tracebacks_become_one_rate_limited_line(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("store.postgres.time.monotonic", lambda: clock[0])
    f = _OneLineWarnings(interval=30.0)
    first = _record(ConnectionRefusedError(111, "Connect call failed"))
    assert f.filter(first) and first.exc_info is None
    assert first.getMessage() == ("Failed to restore the pool connection floor; retrying: "
                                  "ConnectionRefusedError: [Errno 111] Connect call failed")
    assert "Traceback" not in logging.Formatter().format(first)
    clock[0] += 10
    assert not f.filter(_record(ConnectionRefusedError(111, "again")))  # within the interval
    assert not f.filter(_record(ConnectionRefusedError(111, "again")))
    clock[0] += 25
    later = _record(OSError("down"))
    assert f.filter(later) and later.getMessage().endswith("(2 more since the last one)")
    plain = _record(None)  # lines without a traceback pass untouched
    assert f.filter(plain) and plain.getMessage().startswith("Failed to restore")


def test_the_filter_is_installed_on_asyncpgs_pool_logger() -> None:
    assert any(isinstance(f, _OneLineWarnings) for f in logging.getLogger("asyncpg.pool").filters)
