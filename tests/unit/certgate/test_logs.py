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


def _json(msg: str, args: tuple | dict | None = None, exc_info=None, **extra) -> dict:  # type: ignore[no-untyped-def]
    record = logging.LogRecord("radius.server", logging.INFO, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def test_json_named_arguments_are_typed_top_level_fields() -> None:
    from radius.server import _ACCEPT_LINE

    out = _json(_ACCEPT_LINE, ("accept", "ok", "nas1", "staff", "TLSv1.3", False, "02-00-00-00-00-01",
                               "anonymous", 6, 12.345, "laptop-01", 0x1A2B, 3600))
    assert list(out)[:4] == ["timestamp", "level", "logger", "msg"]
    assert out["msg"].startswith("eap result=accept reason=ok client=nas1 group=staff")
    assert out | {"timestamp": None} == out | {
        "timestamp": None, "level": "info", "logger": "radius.server", "result": "accept",
        "reason": "ok", "client": "nas1", "group": "staff", "tls": "TLSv1.3", "resumed": False,
        "calling_station": "02-00-00-00-00-01", "outer_identity": "anonymous", "round_trips": 6,
        "ms": 12.3, "identity": "laptop-01", "serial": "1a2b", "session_timeout": 3600}
    assert "exception" not in out


def test_json_timestamp_is_rfc3339_with_milliseconds_and_offset() -> None:
    import datetime as dt
    import re

    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "m", None, None)
    record.created = dt.datetime(2026, 12, 7, 12, 30, 1, 123456, dt.UTC).timestamp()
    out = json.loads(JsonFormatter().format(record))
    assert out["timestamp"] == "2026-12-07T12:30:01.123+00:00"
    assert out["level"] == "warning"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", _json("m")["timestamp"])


def test_json_unnamed_arguments_stay_in_msg_and_base_keys_are_never_overwritten() -> None:
    out = _json("drop from client=%s reason=%s: %s%s level=%s msg=%s", (
        "nas1", "malformed", "bad length", "", "x", "y"), fields={"logger": "z", "extra": 1})
    assert out["msg"] == "drop from client=nas1 reason=malformed: bad length level=x msg=y"
    assert {k: out[k] for k in ("level", "logger")} == {"level": "info", "logger": "radius.server"}
    assert out["field_level"] == "x" and out["field_msg"] == "y" and out["field_logger"] == "z"
    assert out["extra"] == 1
    assert not any(k.startswith("arg") for k in out)  # `bad length` has no name: msg only


def test_json_repeated_names_mapping_args_objects_and_exceptions() -> None:
    out = _json("moved group=%s to group=%s after %d s", ("a", "b", 3))
    assert (out["group"], out["group_2"]) == ("a", "b") and "arg3" not in out
    assert _json("user=%(user)s n=%(n)d", {"user": "bob", "n": 2}) | {"timestamp": 0} == {
        "timestamp": 0, "level": "info", "logger": "radius.server", "msg": "user=bob n=2",
        "user": "bob", "n": 2}
    assert _json("error=%s none=%s", (ValueError("boom"), None))["error"] == "boom"
    try:
        raise ValueError("boom")
    except ValueError:
        out = _json("failed serial=%x", (255,), sys.exc_info())
    assert out["serial"] == "ff"
    assert out["exception"].startswith("Traceback") and out["exception"].endswith("ValueError: boom")


def test_json_wire_values_are_fields_safe_by_encoding() -> None:
    line_out = _json("eap result=%s calling_station=%s", ("reject", "aa\n\x1b[2J\u2028"))
    assert line_out["calling_station"] == "aa\n\x1b[2J\u2028"


def test_text_names_are_not_taken_from_a_conversion_before_a_colon() -> None:
    from certgate.logs import _field_names

    assert _field_names("drop from client=%s reason=%s: %s", 3) == [
        ("client", "s"), ("reason", "s"), ("arg3", "s")]
    assert _field_names("took ms=%.1f: %s", 2) == [("ms", "f"), ("arg2", "s")]


def test_json_fields_come_from_name_equals_only() -> None:
    out = _json("RADIUS server: %s -> %s; store changes: %d", ("STOPPED", "RUNNING", 2))
    assert set(out) == {"timestamp", "level", "logger", "msg"}
