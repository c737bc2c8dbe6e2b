"""Text log lines are injection-proof: one event, one line, and the line says what was escaped."""

from __future__ import annotations

import json
import logging
import sys

from certgate.logs import JsonFormatter, TextFormatter, escape_control


def _format(msg: str, args: tuple | None = None, exc_info=None) -> str:  # type: ignore[no-untyped-def]
    record = logging.LogRecord("radius.server", logging.INFO, __file__, 1, msg, args, exc_info)
    return TextFormatter().format(record)


def test_a_forged_line_in_a_wire_value_stays_on_its_line() -> None:
    line = _format("eap result=%s calling_station=%s outer_identity=%r",
                   ("reject", "aa\n2026-01-01 00:00:00,000 INFO radius.server: eap result=accept",
                    "x\ny"))
    assert "\n" not in line
    assert "calling_station=aa\\n2026-01-01" in line
    assert line.endswith(" escaped=calling_station")  # %r needed nothing: repr() escapes


def test_terminal_escapes_and_unicode_separators() -> None:
    assert escape_control("a\x1b[31mb\x00c\u2028d\x85é") == "a\\x1b[31mb\\x00c\\u2028d\\x85é"
    line = _format("subject %s", ("CN=evil\r\x1b]0;owned\x07",))
    assert "\x1b" not in line and "\r" not in line and line.endswith(" escaped=arg1")


def test_clean_lines_are_untouched_and_tracebacks_still_print() -> None:
    assert _format("accepted %s after %.1f ms", ("dev-1", 3.25)).endswith(
        "radius.server: accepted dev-1 after 3.2 ms")
    try:
        raise ValueError("boom")
    except ValueError:
        text = _format("failed for %s", ("a\nb",), sys.exc_info())
    first, *rest = text.split("\n")
    assert first.endswith("failed for a\\nb escaped=arg1")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"


def test_a_pre_formatted_message_is_escaped_too() -> None:
    assert _format("drop: bad attribute 'x\ny'").endswith("'x\\ny' escaped=message")


def test_json_lines_are_safe_by_encoding() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "station=%s", ("a\nb",), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line and json.loads(line)["msg"] == "station=a\nb"
