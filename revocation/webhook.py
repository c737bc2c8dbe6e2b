"""MDM webhook authentication and parsing. Pure: no I/O; time is an argument.

An MDM tells certgate that a device left management (``device-removed``: certgate revokes
the device's certificates and kicks its sessions), fell out of compliance
(``device-noncompliant``: its certificates are put on hold and its sessions moved to the
group's quarantine) or is compliant again (``device-compliant``: released and moved back).
The request is::

    POST /hooks/mdm            (path chosen by the composition root)
    Content-Type: application/json
    X-Certgate-Signature: t=1763769600,v1=<64 hex digits>

    {"device_id": "C02XK1ABJG5H", "event": "device-removed", "event_id": "evt_81f3"}

With secret ``whsec_example`` that body (no trailing newline) signs as
``v1=6f942e387851c839da2c3d2369811361aa807e7a60eb805d6866103623c9dc78``; check with::

    printf '%s' "1763769600.$BODY" | openssl dgst -sha256 -hmac whsec_example

Signature (same scheme as Stripe's, so MDM integrators know it):

* ``t`` is the sender's clock in Unix seconds (decimal digits);
* ``v1`` is lowercase hex HMAC-SHA256 with the shared secret as key over the bytes
  ``f"{t}."`` followed by the *raw* request body, exactly as sent;
* the header may carry several ``v1=`` entries (the sender signing with old and new
  secret during rotation); the receiver may also hold several secrets. Any match wins.
  Unknown keys (``v0=``, ``v2=``) are ignored.

Verification order: header syntax (``malformed``), then signature (``bad_signature``,
constant-time compare), then ``|now - t| <= tolerance`` (``stale_timestamp``, default
300 s, either direction), then the body (``malformed``). The timestamp bounds replay;
``event_id`` lets the receiver drop duplicates inside the window (the store's job).

Body: a JSON object with non-empty string ``device_id``, ``event`` (one of
:data:`EVENTS`) and ``event_id``, each at most 256 characters, and optionally
``occurred_at``, when the MDM saw the change (RFC 3339 with an offset, e.g.
``2026-12-07T15:04:05.250Z``, or Unix seconds; default: the signed ``t``): events of one
device are ordered by it, so an older event delivered late never overrides a newer one.
Other keys are ignored.

:func:`sign` produces the header value for tests and integrators.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEFAULT_TOLERANCE",
    "DEVICE_COMPLIANT",
    "DEVICE_NONCOMPLIANT",
    "DEVICE_REMOVED",
    "EVENTS",
    "HEADER",
    "MAX_BODY_SIZE",
    "RejectReason",
    "WebhookEvent",
    "WebhookRejected",
    "sign",
    "verify",
]

HEADER = "X-Certgate-Signature"
DEFAULT_TOLERANCE = _dt.timedelta(seconds=300)
MAX_BODY_SIZE = 64 * 1024
MAX_HEADER_SIZE = 1024
MAX_FIELD_LENGTH = 256
DEVICE_REMOVED = "device-removed"
DEVICE_NONCOMPLIANT = "device-noncompliant"
DEVICE_COMPLIANT = "device-compliant"
EVENTS = frozenset({DEVICE_REMOVED, DEVICE_NONCOMPLIANT, DEVICE_COMPLIANT})
MAX_CLOCK_AHEAD = _dt.timedelta(days=1)  # occurred_at further in the future is refused

_HEX = frozenset("0123456789abcdef")


class RejectReason(StrEnum):
    """Why a webhook was refused; also the metric label (closed set)."""

    MALFORMED = "malformed"  # the signed body is not a valid event: 400
    MALFORMED_SIGNATURE = "malformed_signature"  # missing or unparsable header: 401
    BAD_SIGNATURE = "bad_signature"
    STALE_TIMESTAMP = "stale_timestamp"

    @property
    def http_status(self) -> int:
        return 400 if self is RejectReason.MALFORMED else 401


class WebhookRejected(ValueError):
    """The sender's fault: answer ``reason.http_status`` and do nothing."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    device_id: str
    event: str
    event_id: str
    sent_at: _dt.datetime  # the signed ``t``
    occurred_at: _dt.datetime | None = None  # the body's, else None (then sent_at orders)

    @property
    def event_time(self) -> _dt.datetime:
        """What orders this device's events."""
        return self.occurred_at if self.occurred_at is not None else self.sent_at


def _unix(now: _dt.datetime) -> int:
    if not isinstance(now, _dt.datetime):
        raise TypeError(f"now must be datetime, not {type(now).__name__}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp())


def _key(secret: bytes | str) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes):
        raise TypeError(f"secret must be bytes or str, not {type(secret).__name__}")
    if not secret:
        raise ValueError("secret must not be empty")
    return secret


def _mac(key: bytes, t: str, body: bytes) -> str:
    return hmac.new(key, t.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes | str, body: bytes, now: _dt.datetime) -> str:
    """The ``X-Certgate-Signature`` value for ``body`` sent at ``now``."""
    if not isinstance(body, bytes):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    t = str(_unix(now))
    return f"t={t},v1={_mac(_key(secret), t, body)}"


def _reject(reason: RejectReason, detail: str) -> WebhookRejected:
    return WebhookRejected(reason, detail)


def _parse_header(header: str | None) -> tuple[str, list[str]]:
    bad = RejectReason.MALFORMED_SIGNATURE  # not authenticated: 401, like a wrong MAC
    if header is None or not header.strip():
        raise _reject(bad, f"missing {HEADER} header")
    if len(header) > MAX_HEADER_SIZE:
        raise _reject(bad, f"{HEADER} header too long")
    t: str | None = None
    v1: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise _reject(bad, f"{HEADER} element {part.strip()[:20]!r} is not key=value")
        if key == "t":
            if t is not None:
                raise _reject(bad, "t given twice")
            if not (value.isascii() and value.isdigit() and len(value) <= 12):
                raise _reject(bad, "t is not a Unix time in seconds")
            t = value
        elif key == "v1":
            if len(value) != 64 or not set(value) <= _HEX:
                raise _reject(bad, "v1 is not 64 lowercase hex digits")
            v1.append(value)
    if t is None:
        raise _reject(bad, f"{HEADER} has no t=")
    if not v1:
        raise _reject(bad, f"{HEADER} has no v1=")
    return t, v1


def _field(obj: dict[str, object], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _reject(RejectReason.MALFORMED, f"{name} must be a non-empty string")
    if len(value) > MAX_FIELD_LENGTH:
        raise _reject(RejectReason.MALFORMED, f"{name} longer than {MAX_FIELD_LENGTH}")
    return value


def verify(
    secrets: bytes | str | Iterable[bytes | str],
    header: str | None,
    body: bytes,
    now: _dt.datetime,
    *,
    tolerance: _dt.timedelta = DEFAULT_TOLERANCE,
) -> WebhookEvent:
    """Authenticate and parse one webhook; WebhookRejected(reason) for the sender's faults.

    ``secrets`` is one secret or several (rotation). TypeError/ValueError for our own
    mistakes (no secret, naive ``now``, negative tolerance).
    """
    keys = [_key(secrets)] if isinstance(secrets, bytes | str) else [_key(s) for s in secrets]
    if not keys:
        raise ValueError("at least one secret is required")
    now_unix = _unix(now)
    if tolerance < _dt.timedelta(0):
        raise ValueError("tolerance must not be negative")
    if not isinstance(body, bytes):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")

    if len(body) > MAX_BODY_SIZE:
        raise _reject(RejectReason.MALFORMED, f"body larger than {MAX_BODY_SIZE} bytes")
    t, candidates = _parse_header(header)

    matched = False
    for key in keys:
        expected = _mac(key, t, body)
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise _reject(RejectReason.BAD_SIGNATURE, "no v1 signature matches")

    if abs(now_unix - int(t)) > tolerance.total_seconds():
        raise _reject(
            RejectReason.STALE_TIMESTAMP,
            f"t={t} is {now_unix - int(t)} s from now (tolerance {tolerance.total_seconds():g} s)",
        )

    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _reject(RejectReason.MALFORMED, f"body is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _reject(RejectReason.MALFORMED, "body is not a JSON object")
    device_id = _field(obj, "device_id")
    event = _field(obj, "event")
    event_id = _field(obj, "event_id")
    if event not in EVENTS:
        raise _reject(RejectReason.MALFORMED, f"unsupported event {event!r}; known: {sorted(EVENTS)}")
    return WebhookEvent(
        device_id=device_id,
        event=event,
        event_id=event_id,
        sent_at=_dt.datetime.fromtimestamp(int(t), _dt.UTC),
        occurred_at=_occurred_at(obj.get("occurred_at"), now),
    )


def _occurred_at(value: object, now: _dt.datetime) -> _dt.datetime | None:
    """The body's ``occurred_at`` (RFC 3339 with an offset, or Unix seconds), or None."""
    if value is None:
        return None
    bad = RejectReason.MALFORMED
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _reject(bad, "occurred_at must be an RFC 3339 time or Unix seconds")
    if isinstance(value, str):
        if len(value) > 64:
            raise _reject(bad, "occurred_at longer than 64 characters")
        try:
            when = _dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise _reject(bad, "occurred_at is not an RFC 3339 time (2026-12-07T15:04:05Z)"
                          ) from None
        if when.tzinfo is None:
            raise _reject(bad, "occurred_at needs an offset (Z or +01:00)")
    else:
        if not 0 <= value < 1 << 34:
            raise _reject(bad, "occurred_at is not a Unix time in seconds")
        when = _dt.datetime.fromtimestamp(value, _dt.UTC)
    when = when.astimezone(_dt.UTC)
    if when - now > MAX_CLOCK_AHEAD:
        raise _reject(bad, "occurred_at is more than a day in the future")
    return when
