"""One line per event; JSON optional ([server] log_format).

Text lines are injection-proof: values that came off the wire (Calling-Station-Id,
identities, subjects, URLs) may hold newlines or terminal escapes. `TextFormatter` escapes
every control character of the message (\\n, \\x1b, …) so one event stays one line, and
appends ` escaped=<fields>` naming what it changed — the `key=` in front of the value in the
format string, or the argument's position. JSON lines are safe by encoding. Tracebacks (our
own frames) print as usual, after the escaped message.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
import sys

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
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
        key = re.search(r"(\w+)[=:]\s*['\"]?$", template[:m.start()])
        names.append((key[1] if key else f"arg{len(names) + 1}", m[0][-1]))
    names += [(f"arg{i + 1}", "s") for i in range(len(names), count)]
    return names[:count]


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
