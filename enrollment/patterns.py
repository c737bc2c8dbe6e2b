"""`re:` patterns in challenge bindings, matched in linear time.

A challenge may bind the CSR's CN or SANs to a pattern (`re:dev-[0-9]+`). Python's `re`
backtracks: `re:(a+)+b` against a 25-character CN took 2 s on the event loop that also
answers RADIUS. Patterns are compiled with RE2 (google-re2, the linear-time engine behind
Go's regexp and Chrome): matching time is linear in the input whatever the pattern, and
constructs that need backtracking (backreferences, lookaround) are refused when the
challenge is created. Patterns and matched values are length-bounded too.
"""

from __future__ import annotations

import functools

import re2

MAX_PATTERN_LENGTH = 256
MAX_VALUE_LENGTH = 1024  # a CN is at most 64 characters (RFC 5280), a SAN a few hundred
MAX_PROGRAM_BYTES = 1 << 20  # RE2's memory budget per compiled pattern

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors come back as exceptions, not lines on stderr
_OPTIONS.max_mem = MAX_PROGRAM_BYTES


class UnsafePattern(ValueError):
    """The pattern is refused; the message says why (the caller names the field)."""


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str):  # type: ignore[no-untyped-def]
    """The compiled pattern, or UnsafePattern (too long, not valid Unicode, not RE2 syntax:
    e.g. a backreference or lookaround, or too large a program)."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise UnsafePattern(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    try:
        pattern.encode("utf-8")  # RE2 takes UTF-8; a lone surrogate (JSON "\ud800") has none
    except UnicodeEncodeError:
        raise UnsafePattern(f"pattern {pattern[:40]!r} not accepted (not valid Unicode: "
                            "lone surrogate)") from None
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        raise UnsafePattern(f"pattern {pattern[:40]!r} not accepted ({detail}); patterns use "
                            "RE2 syntax: no backreferences or lookaround") from None


def fullmatch(pattern: str, value: str) -> bool:
    """Whether `value` matches `pattern` entirely (linear time; over-long values never do)."""
    if len(value) > MAX_VALUE_LENGTH:
        return False
    return compile_pattern(pattern).fullmatch(value) is not None
