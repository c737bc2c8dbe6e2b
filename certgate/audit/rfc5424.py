"""RFC 5424 syslog messages from audit events: pure, event and time in, bytes out.

One event is one message, never split: PRI from the facility and the event's severity,
VERSION 1, TIMESTAMP from the event's ``@timestamp``, HOSTNAME, APP-NAME, PROCID,
MSGID = ``event.action``, one SD-ELEMENT carrying every field of the event, and a short
human MSG. Choices the RFC leaves to us (also in docs/audit-events.md):

* SD-ID. A private SD-ID must be ``name@<IANA Private Enterprise Number>`` (§6.3.2) and
  certgate has no PEN of its own. The default ``certgate@32473`` uses RFC 5612's
  documentation number: it can never collide with a real organisation's SD-IDs, which
  any other made-up number could. Operators with their own PEN pass ``sd_id``
  (``certgate@<PEN>``); the SIEM keys on the SD-ID string either way.
* SD-PARAM names are the event's nested keys joined with dots (``x509.serial_number``).
  A character RFC 5424 forbids in a name (``=``, space, ``]``, ``"``, non-ASCII) becomes
  ``_``. A name longer than 32 octets loses its ``certgate.`` prefix (the SD-ID says
  certgate already): ``certgate.radius.calling_station_id`` is sent as
  ``radius.calling_station_id``, the only such name in schema 1. One still too long (or
  colliding with another name) keeps its first 23 characters, ``~`` and 8 hex digits of
  its SHA-256 (stable, distinct).
* Values: strings as they are (UTF-8, with ``"``, ``\\`` and ``]`` escaped, §6.3.3);
  numbers and booleans in JSON spelling; lists as JSON (``["authentication"]``).
* Size: one message is at most ``max_size`` octets (2048 over UDP, RFC 5426 §3.2;
  8192 over TCP/TLS, RFC 5425 §4.3.1). When an event does not fit, the longest values are
  cut first, all to the same length, ending with ``...``, and the parameter
  ``certgate.syslog.truncated`` lists the cut names; the MSG shrinks first. When values
  cut to 32 characters still do not fit, the last fields (in the event's order, which puts
  ``@timestamp`` and ``event.*`` first) are left out whole and listed the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_SD_ID = "certgate@32473"
UDP_MAX_SIZE = 2048
STREAM_MAX_SIZE = 8192
TRUNCATED_PARAM = "certgate.syslog.truncated"
NIL = "-"
BOM = b"\xef\xbb\xbf"

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13,
    "alert": 14, "clock": 15, **{f"local{i}": 16 + i for i in range(8)},
}
SEVERITIES = {
    "emergency": 0, "emerg": 0, "alert": 1, "critical": 2, "crit": 2, "error": 3, "err": 3,
    "warning": 4, "warn": 4, "notice": 5, "info": 6, "informational": 6, "debug": 7,
}
#: Fields named in the human MSG after "action outcome", when present.
MSG_FIELDS = (("reason", "event.reason"), ("user", "user.name"), ("group", "certgate.group"),
              ("serial", "x509.serial_number"), ("source", "source.ip"))
_ELLIPSIS = "..."
MIN_CAP = 32  # values are not cut shorter than this: whole fields are left out instead
MARKER_MAX = 256
_BAD_NAME_CHARS = frozenset('= ]"')


class FormatError(ValueError):
    """A formatter parameter the caller got wrong (bad facility, SD-ID, size)."""


def severity(event: Mapping[str, Any]) -> int:
    """log.level when it names a syslog severity; else warning for a failure, info otherwise."""
    level = _get(event, "log", "level")
    if isinstance(level, str) and level.lower() in SEVERITIES:
        return SEVERITIES[level.lower()]
    return 4 if _get(event, "event", "outcome") == "failure" else 6


def pri(facility: str, event: Mapping[str, Any]) -> int:
    if facility not in FACILITIES:
        raise FormatError(f"unknown syslog facility {facility!r} "
                          f"(expected one of {', '.join(FACILITIES)})")
    return FACILITIES[facility] * 8 + severity(event)


def check_sd_id(sd_id: str) -> str:
    """``name@PEN`` (PEN: digits, optionally dotted sub-identifiers), at most 32 octets."""
    name, at, pen = sd_id.partition("@")
    if (not at or not name or "@" in pen or len(sd_id) > 32 or printusascii(name, 32) != name
            or any(c in _BAD_NAME_CHARS for c in name)
            or not all(part.isdigit() and part.isascii() for part in pen.split("."))):
        raise FormatError(f"bad SD-ID {sd_id!r}: expected NAME@PEN (an IANA Private "
                          f"Enterprise Number, e.g. certgate@32473), at most 32 characters")
    return sd_id


def printusascii(text: str, limit: int) -> str:
    """Header field: printable US-ASCII only (others become '_'), at most ``limit``, never empty."""
    out = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:limit]
    return out or NIL


def param_name(key: str) -> str:
    """An SD-PARAM name for a flattened key (see the module docstring)."""
    name = "".join("_" if c in _BAD_NAME_CHARS or not 33 <= ord(c) <= 126 else c for c in key)
    if len(name) > 32 and name.startswith("certgate."):
        name = name.removeprefix("certgate.")
    if len(name) > 32:
        name = _hashed(key, name)
    return name or "_"


def _hashed(key: str, name: str) -> str:
    return name[:23] + "~" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:8]


def sd_params(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(SD-PARAM name, value) for every field; a name taken twice gets the hashed form."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, value in flatten(event):
        name = param_name(key)
        if name in seen:
            name = _hashed(key, param_name(key.replace(".", "_")))
        seen.add(name)
        out.append((name, param_value(value)))
    return out


def flatten(event: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, leaf value) pairs, depth first in the mapping's order."""
    for key, value in event.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, dotted + ".")
        else:
            yield dotted, value


def param_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def escape(value: str) -> bytes:
    """PARAM-VALUE: UTF-8 with '"', '\\' and ']' backslash-escaped (RFC 5424 §6.3.3)."""
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return out.encode("utf-8", "replace")


def timestamp(event: Mapping[str, Any], now: dt.datetime | None) -> str:
    """The event's @timestamp as an RFC 5424 TIMESTAMP; ``now`` when it has none; else '-'."""
    when: dt.datetime | None = None
    raw = event.get("@timestamp")
    if isinstance(raw, str):
        try:
            when = dt.datetime.fromisoformat(raw)
        except ValueError:
            when = None
    if when is None or when.tzinfo is None:
        when = now
    if when is None:
        return NIL
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    spec = "milliseconds" if when.microsecond % 1000 == 0 else "microseconds"
    return when.isoformat(timespec=spec)


def human(event: Mapping[str, Any]) -> str:
    """The MSG: "ACTION OUTCOME key=value ...", one line."""
    flat = dict(flatten(event))
    words = [str(flat.get("event.action", "event")), str(flat.get("event.outcome", "unknown"))]
    words += [f"{label}={flat[key]}" for label, key in MSG_FIELDS if key in flat]
    return " ".join(words)


def _msg_bytes(text: str) -> bytes:
    text = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)
    if text.isascii():
        return text.encode()
    return BOM + text.encode("utf-8", "replace")


def _cut(value: str, cap: int) -> str:
    """At most ``cap`` characters, ending with '...' when cut."""
    if len(value) <= cap:
        return value
    return value[:max(0, cap - len(_ELLIPSIS))] + _ELLIPSIS[:cap]


def _sd(sd_id: str, params: list[tuple[str, str]]) -> bytes:
    return (b"[" + sd_id.encode() + b"".join(b" " + n.encode() + b'="' + escape(v) + b'"'
                                              for n, v in params) + b"]")


def format_message(event: Mapping[str, Any], *, facility: str = "authpriv", hostname: str,
                   app_name: str = "certgate", procid: int | str | None = None,
                   sd_id: str = DEFAULT_SD_ID, max_size: int = UDP_MAX_SIZE,
                   now: dt.datetime | None = None) -> bytes:
    """One RFC 5424 SYSLOG-MSG (no framing) of at most ``max_size`` octets."""
    if max_size < 480:  # RFC 5426: every receiver takes 480 octets; below, nothing fits
        raise FormatError(f"max_size {max_size} is below 480 octets")
    check_sd_id(sd_id)
    action = _get(event, "event", "action")
    header = " ".join((
        f"<{pri(facility, event)}>1", timestamp(event, now), printusascii(hostname, 255),
        printusascii(app_name, 48), printusascii(str(procid) if procid is not None else NIL, 128),
        printusascii(str(action), 32) if action else NIL,
    )).encode()
    params = sd_params(event)
    msg = _msg_bytes(human(event))
    whole = header + b" " + _sd(sd_id, params) + b" " + msg
    if len(whole) <= max_size:
        return whole
    # Too big: the MSG goes first (down to the action), then values are cut, then dropped.
    msg = _msg_bytes(str(action or "event"))[:64]
    budget = max_size - len(header) - 2 - len(msg)

    def build(k: int, cap: int) -> bytes:
        kept = [(n, _cut(v, cap)) for n, v in params[:k]]
        names = [n for (n, v), (_, c) in zip(params, kept, strict=False) if v != c]
        names += [n for n, _ in params[k:]]
        if names:
            kept.append((TRUNCATED_PARAM, _cut(" ".join(names), MARKER_MAX)))
        return _sd(sd_id, kept)

    longest = max((len(v) for _, v in params), default=0)
    lo, hi = 0, len(params)  # how many fields fit with values cut to MIN_CAP (the rest: left out)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(build(mid, MIN_CAP)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    k = lo
    lo, hi = (MIN_CAP if k else 0), longest  # then the longest common cap that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(build(k, mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    sd = build(k, lo)
    if len(sd) > budget:  # a pathological header (255-octet hostname): the SD-ID alone
        sd = b"[" + sd_id.encode() + b"]"
    return (header + b" " + sd + b" " + msg)[:max_size]


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 §3.4.1 / RFC 5425 §4.3 framing: MSG-LEN SP SYSLOG-MSG."""
    return str(len(message)).encode() + b" " + message


def _get(event: Mapping[str, Any], *path: str) -> Any:
    value: Any = event
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value
