"""One line per event; JSON optional ([server] log_format).

Text lines are injection-proof: values that came off the wire (Calling-Station-Id,
identities, subjects, URLs) may hold newlines or terminal escapes. `TextFormatter` escapes
every control character of the message (\\n, \\x1b, …) so one event stays one line, and
appends ` escaped=<fields>` naming what it changed — the `key=` in front of the value in the
format string, or the argument's position. JSON lines (JsonFormatter) carry each `name=%s`
argument as a typed field and are safe by encoding. Tracebacks (our
own frames) print as usual, after the escaped message.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import logging
import re
import sys

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: `name=` or `name:` right before a conversion; not the tail of one (`%s: %s`, `%.1f:`).
_NAME_BEFORE = re.compile(r"(?<![%\w)])([A-Za-z_]\w*)[=:]\s*['\"]?$")
_NAME_EQUALS = re.compile(r"(?<![%\w)])([A-Za-z_]\w*)=['\"]?%")
_CONVERSION = re.compile(r"%(?:\((\w+)\))?[-#0 +]*(?:\d+|\*)?(?:\.(?:\d+|\*))?[diouxXeEfFgGcrsa%]")


def escape_control(text: str) -> str:
    """Control characters as visible escapes; everything else (incl. non-ASCII) unchanged."""
    return _CONTROL.sub(lambda m: _SHORT.get(m[0]) or f"\\x{ord(m[0]):02x}"
                        if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


@functools.lru_cache(maxsize=1024)
def _field_names(template: str, count: int) -> list[tuple[str, str]]:
    """For each %-argument: the `name` of a `name=%s` in front of it (else `arg<i>`) and
    its conversion (`r` needs no escaping: repr() already does it)."""
    names: list[tuple[str, str]] = []
    for m in _CONVERSION.finditer(template):
        if m[0] == "%%":
            continue
        key = _NAME_BEFORE.search(template[:m.start()])
        names.append((key[1] if key else f"arg{len(names) + 1}", m[0][-1]))
    names += [(f"arg{i + 1}", "s") for i in range(len(names), count)]
    return names[:count]


class TextFormatter(logging.Formatter):
    def __init__(self, worker: int | None = None) -> None:
        tag = "" if worker is None else f" worker={worker}"  # [server] workers > 1
        super().__init__(f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        escaped: list[str] = []
        if isinstance(record.args, tuple) and record.args and isinstance(record.msg, str):
            names = _field_names(record.msg, len(record.args))
            args = []
            for (name, conversion), arg in zip(names, record.args, strict=True):
                if conversion != "r" and isinstance(arg, str) and _CONTROL.search(arg):
                    arg = escape_control(arg)
                    escaped.append(name)
                args.append(arg)
            record = copy.copy(record)
            record.args = tuple(args)
        message = record.getMessage()
        if _CONTROL.search(message):  # a str() of an object, or a pre-formatted message
            message = escape_control(message)
            escaped.append("message")
        if escaped:
            record = copy.copy(record)
            record.msg = f"{message} escaped={','.join(dict.fromkeys(escaped))}"
            record.args = None
        return super().format(record)


#: The keys every JSON line has (``exception`` only with a traceback); see JsonFormatter.
BASE_KEYS = ("timestamp", "level", "logger", "msg", "exception")
_JSON_SCALARS = (str, bool, int, float, type(None))


def _field_value(value: object, conversion: str, rendered: str | None) -> object:
    """A %-argument as a JSON value: numbers, booleans and None keep their type; a string is
    the string itself (even under %r); %x/%o/%c give the text as formatted (a serial stays
    hex), %f/%e/%g the number as formatted (``ms=%.1f`` -> 3.2); anything else its str()."""
    if conversion in "xXoc" and rendered is not None:
        return rendered
    if conversion in "eEfFgG" and isinstance(value, int | float) and rendered is not None:
        return float(rendered)
    if isinstance(value, _JSON_SCALARS):
        return value
    return repr(value) if conversion == "r" else str(value)


@functools.lru_cache(maxsize=1024)
def _json_names(template: str) -> frozenset[str]:
    """The names that stand as `name=` right before a conversion."""
    return frozenset(m[1] for m in _NAME_EQUALS.finditer(template))


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The named arguments of a record: ``name=%s`` in the format string names the argument
    after it (``name: %s`` does not: that is prose more often than a key). An argument
    without a name is in ``msg`` only; a name that comes twice gets ``_2``, ``_3``; a
    mapping (``%(name)s``) gives its keys."""
    fields: dict[str, object] = {}
    if isinstance(record.args, dict):
        for key, value in record.args.items():
            fields[str(key)] = value if isinstance(value, _JSON_SCALARS) else str(value)
        return fields
    if not (isinstance(record.args, tuple) and record.args and isinstance(record.msg, str)):
        return fields
    conversions = [m[0] for m in _CONVERSION.finditer(record.msg) if m[0] != "%%"]
    for i, ((name, conversion), value) in enumerate(zip(
            _field_names(record.msg, len(record.args)), record.args, strict=True)):
        if name not in _json_names(record.msg):
            continue  # unnamed (or only `name: %s`, which is prose more often than a key)
        rendered = None
        if i < len(conversions) and "*" not in conversions[i]:
            try:
                rendered = conversions[i] % (value,)
            except (TypeError, ValueError):
                rendered = None
        key, n = name, 1
        while key in fields:
            n += 1
            key = f"{name}_{n}"
        fields[key] = _field_value(value, conversion, rendered)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields are fields.

    Base keys, always in this order: ``timestamp`` (RFC 3339, UTC, milliseconds:
    ``2026-12-07T12:30:01.123+00:00``), ``level`` (lower case), ``logger``, ``msg`` (the
    rendered message, as the text log has it); then each named argument of the message as a
    top-level field (record_fields: ``result=%s reason=%s serial=%x`` gives ``result``,
    ``reason``, ``serial``), then ``extra={"fields": {...}}`` of the call, then
    ``exception`` (the traceback text) when there is one. A field whose name is a base key
    is renamed ``field_<name>``: the base keys always mean the same thing. Values from the
    wire need no escaping: JSON encodes them (ASCII only, so no raw control or U+2028).
    """

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker  # [server] workers > 1: a "worker" key after "logger"

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, object] = {
            "timestamp": when.isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if self.worker is not None:
            out["worker"] = self.worker
        out["msg"] = record.getMessage()
        fields = record_fields(record)
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            fields.update(extra)
        for name, value in fields.items():
            key = f"field_{name}" if name in BASE_KEYS else name
            out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str)


def setup_logging(fmt: str = "text", level: str = "INFO", worker: int | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        handler.setFormatter(TextFormatter(worker))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
