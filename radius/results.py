"""One authentication's result as data, for observers (the audit stream) of RadiusServer.

Built only when an observer is registered; the observer must not block (it runs on the
RADIUS path, between deciding and sending the reply).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AuthResult:
    accepted: bool
    reason: str  # radius.reasons.Reason value: the metric and log label
    client: str  # the RADIUS client (NAS) name from the config
    group: str | None
    tls_version: str | None
    calling_station: str | None
    outer_identity: str | None  # EAP-Response/Identity (as the device sent it)
    identity: str | None  # the certificate's identity (Accept only)
    serial: int | None  # the certificate's serial (Accept only)
    resumed: bool
    round_trips: int
    duration_ms: float
    detail: str
    at: float  # wall clock, seconds since the epoch
    transport: str = "udp"  # "udp" or "radsec" (RADIUS over TLS, RFC 6614)


OnResult = Callable[[AuthResult], None]
