"""Disconnect-Request client (RFC 5176): a pure codec plus a small asyncio sender.

certgate is the Dynamic Authorization *client*; the NAS (DAS) listens on UDP 3799.
After a revocation the composition root calls :func:`send_disconnect` for each
session it recorded at Access-Accept time (NAS address, Calling-Station-Id, ...).

Request (code 40), like an Accounting-Request (RFC 5176 §3.3, RFC 2866 §3):

1. Message-Authenticator (80), placed first, is HMAC-MD5(secret, packet) with the
   Authenticator field and the Message-Authenticator value set to 16 zero octets
   (RFC 5176 §3.4);
2. Request Authenticator = MD5(Code | Identifier | Length | 16 zero octets |
   attributes | secret), over the attributes *with* the Message-Authenticator filled in.

Reply (41 Disconnect-ACK / 42 Disconnect-NAK):

* Response Authenticator = MD5(Code | Identifier | Length | Request Authenticator |
  attributes | secret);
* Message-Authenticator, if present (or required), is HMAC-MD5 over the reply with
  the Authenticator field set to the *request's* authenticator and its own value
  zeroed (RFC 5176 §3.4 by reference to RFC 3579 §3.2; FreeRADIUS does the same);
* Error-Cause (101, RFC 5176 §3.5), e.g. 503 Session-Context-Not-Found.

Replies that do not validate are the peer's (or an attacker's) fault: they raise
:class:`InvalidReply` from :func:`decode_reply` and are *ignored* by the sender,
which keeps waiting and eventually reports a timeout. Retransmissions are
byte-identical (same Identifier, authenticator and Event-Timestamp; RFC 5080
§2.2.1), so a DAS's duplicate detection works and duplicate ACKs are harmless.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import hmac
import ipaddress
import logging
import secrets as _secrets
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

__all__ = [
    "DEFAULT_PORT",
    "CoaCode",
    "CoaReply",
    "CoaResult",
    "DisconnectRequest",
    "ErrorCause",
    "InvalidReply",
    "Session",
    "decode_reply",
    "encode_disconnect",
    "send_disconnect",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 3799
MAX_PACKET = 4096
_HEADER = struct.Struct("!BBH16s")
_ZERO16 = bytes(16)


class CoaCode(IntEnum):
    DISCONNECT_REQUEST = 40
    DISCONNECT_ACK = 41
    DISCONNECT_NAK = 42
    COA_REQUEST = 43
    COA_ACK = 44
    COA_NAK = 45


class _Attr(IntEnum):
    USER_NAME = 1
    NAS_IP_ADDRESS = 4
    CALLING_STATION_ID = 31
    NAS_IDENTIFIER = 32
    ACCT_SESSION_ID = 44
    EVENT_TIMESTAMP = 55
    MESSAGE_AUTHENTICATOR = 80
    NAS_IPV6_ADDRESS = 95
    ERROR_CAUSE = 101


class ErrorCause(IntEnum):
    """RFC 5176 §3.5 Error-Cause values (a reply may carry others; keep the int)."""

    RESIDUAL_SESSION_CONTEXT_REMOVED = 201
    INVALID_EAP_PACKET = 202
    UNSUPPORTED_ATTRIBUTE = 401
    MISSING_ATTRIBUTE = 402
    NAS_IDENTIFICATION_MISMATCH = 403
    INVALID_REQUEST = 404
    UNSUPPORTED_SERVICE = 405
    UNSUPPORTED_EXTENSION = 406
    INVALID_ATTRIBUTE_VALUE = 407
    ADMINISTRATIVELY_PROHIBITED = 501
    REQUEST_NOT_ROUTABLE = 502
    SESSION_CONTEXT_NOT_FOUND = 503
    SESSION_CONTEXT_NOT_REMOVABLE = 504
    OTHER_PROXY_PROCESSING_ERROR = 505
    RESOURCES_UNAVAILABLE = 506
    REQUEST_INITIATED = 507
    MULTIPLE_SESSION_SELECTION_UNSUPPORTED = 508


# ---------------------------------------------------------------- request


def _text(name: str, value: str | None) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str or None, not {type(value).__name__}")
    raw = value.encode("utf-8")
    if not 1 <= len(raw) <= 253:
        raise ValueError(f"{name} must be 1..253 octets of UTF-8, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class Session:
    """What identifies one NAS session (recorded per Access-Accept).

    The NAS is named by ``nas_ip_address`` (IPv4 -> NAS-IP-Address, IPv6 ->
    NAS-IPv6-Address) and/or ``nas_identifier``; the session by at least one of
    ``calling_station_id``, ``acct_session_id``, ``user_name`` (RFC 5176 §3).
    """

    nas_ip_address: str | None = None
    nas_identifier: str | None = None
    calling_station_id: str | None = None
    acct_session_id: str | None = None
    user_name: str | None = None

    def __post_init__(self) -> None:
        for name in ("nas_identifier", "calling_station_id", "acct_session_id", "user_name"):
            _text(name, getattr(self, name))
        if self.nas_ip_address is not None:
            if not isinstance(self.nas_ip_address, str):
                raise TypeError("nas_ip_address must be str or None")
            ipaddress.ip_address(self.nas_ip_address)  # ValueError if not an address
        if self.nas_ip_address is None and self.nas_identifier is None:
            raise ValueError("a Disconnect-Request needs nas_ip_address or nas_identifier")
        if self.calling_station_id is None and self.acct_session_id is None and (self.user_name is None):
            raise ValueError("a Disconnect-Request needs calling_station_id, acct_session_id or user_name")

    def attributes(self) -> list[tuple[int, bytes]]:
        """Session-identification attributes, in wire order."""
        out: list[tuple[int, bytes]] = []
        for attr, value in (
            (_Attr.USER_NAME, _text("user_name", self.user_name)),
            (_Attr.CALLING_STATION_ID, _text("calling_station_id", self.calling_station_id)),
            (_Attr.ACCT_SESSION_ID, _text("acct_session_id", self.acct_session_id)),
        ):
            if value is not None:
                out.append((attr, value))
        if self.nas_ip_address is not None:
            ip = ipaddress.ip_address(self.nas_ip_address)
            code = _Attr.NAS_IP_ADDRESS if ip.version == 4 else _Attr.NAS_IPV6_ADDRESS
            out.append((code, ip.packed))
        nas_id = _text("nas_identifier", self.nas_identifier)
        if nas_id is not None:
            out.append((_Attr.NAS_IDENTIFIER, nas_id))
        return out


@dataclass(frozen=True)
class DisconnectRequest:
    """An encoded request: send ``data`` verbatim on every (re)transmission."""

    identifier: int
    authenticator: bytes
    data: bytes


def _key(secret: bytes) -> bytes:
    if not isinstance(secret, bytes):
        raise TypeError(f"secret must be bytes, not {type(secret).__name__}")
    if not secret:
        raise ValueError("secret must not be empty")
    return secret


def _encode_attrs(attrs: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes((code, len(value) + 2)) + value for code, value in attrs)


def encode_disconnect(
    session: Session,
    secret: bytes,
    identifier: int,
    event_time: _dt.datetime,
) -> DisconnectRequest:
    """Encode a Disconnect-Request (pure). ``event_time`` becomes Event-Timestamp."""
    if not isinstance(session, Session):
        raise TypeError(f"session must be Session, not {type(session).__name__}")
    key = _key(secret)
    if not isinstance(identifier, int) or not 0 <= identifier <= 255:
        raise ValueError(f"identifier must be 0..255, got {identifier!r}")
    if not isinstance(event_time, _dt.datetime):
        raise TypeError(f"event_time must be datetime, not {type(event_time).__name__}")
    if event_time.tzinfo is None:
        raise ValueError("event_time must be timezone-aware")
    seconds = int(event_time.timestamp())
    if not 0 <= seconds < 1 << 32:
        raise ValueError("event_time outside the 32-bit Event-Timestamp range")

    attrs = [(_Attr.MESSAGE_AUTHENTICATOR, _ZERO16), *session.attributes()]
    attrs.append((_Attr.EVENT_TIMESTAMP, struct.pack("!I", seconds)))
    body = _encode_attrs(attrs)
    length = 20 + len(body)
    if length > MAX_PACKET:
        raise ValueError("Disconnect-Request longer than 4096 octets")
    head = struct.pack("!BBH", CoaCode.DISCONNECT_REQUEST, identifier, length)
    ma = hmac.new(key, head + _ZERO16 + body, hashlib.md5).digest()
    body = bytes((_Attr.MESSAGE_AUTHENTICATOR, 18)) + ma + body[18:]
    authenticator = hashlib.md5(head + _ZERO16 + body + key).digest()
    return DisconnectRequest(identifier, authenticator, head + authenticator + body)


# ---------------------------------------------------------------- reply


class InvalidReply(ValueError):
    """A datagram that is not a valid reply to our request (the peer's fault)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class CoaReply:
    code: CoaCode
    error_cause: int | None = None

    @property
    def acked(self) -> bool:
        return self.code in (CoaCode.DISCONNECT_ACK, CoaCode.COA_ACK)


def _walk(body: bytes) -> list[tuple[int, int, bytes]]:
    """(offset in body, type, value) for each attribute; InvalidReply if malformed."""
    out: list[tuple[int, int, bytes]] = []
    pos = 0
    while pos < len(body):
        if pos + 2 > len(body):
            raise InvalidReply("truncated attribute header")
        attr_type, attr_len = body[pos], body[pos + 1]
        if attr_len < 2 or pos + attr_len > len(body):
            raise InvalidReply(f"attribute {attr_type} has bad length {attr_len}")
        out.append((pos, attr_type, body[pos + 2 : pos + attr_len]))
        pos += attr_len
    return out


def decode_reply(
    data: bytes,
    request: DisconnectRequest,
    secret: bytes,
    *,
    require_message_authenticator: bool = False,
) -> CoaReply:
    """Validate ``data`` as the reply to ``request``; InvalidReply if it is not one.

    Octets after the Length field are ignored (RFC 2865 §3). Checks, in order:
    size, code (41/42), Identifier, Response Authenticator, attribute syntax,
    Message-Authenticator (if present, or required), Error-Cause syntax.
    """
    key = _key(secret)
    if not isinstance(request, DisconnectRequest):
        raise TypeError(f"request must be DisconnectRequest, not {type(request).__name__}")
    if len(data) < 20:
        raise InvalidReply("shorter than a RADIUS header")
    code, identifier, length, authenticator = _HEADER.unpack_from(data)
    if not 20 <= length <= min(len(data), MAX_PACKET):
        raise InvalidReply(f"Length {length} does not fit datagram of {len(data)} octets")
    if code not in (CoaCode.DISCONNECT_ACK, CoaCode.DISCONNECT_NAK):
        raise InvalidReply(f"code {code} is not Disconnect-ACK/NAK")
    if identifier != request.identifier:
        raise InvalidReply(f"identifier {identifier} != {request.identifier}")
    packet = data[:length]
    body = packet[20:]
    expected = hashlib.md5(packet[:4] + request.authenticator + body + key).digest()
    if not hmac.compare_digest(expected, authenticator):
        raise InvalidReply("bad Response Authenticator")

    attrs = _walk(body)
    mas = [(pos, value) for pos, t, value in attrs if t == _Attr.MESSAGE_AUTHENTICATOR]
    if len(mas) > 1:
        raise InvalidReply("more than one Message-Authenticator")
    if mas:
        pos, value = mas[0]
        if len(value) != 16:
            raise InvalidReply("Message-Authenticator is not 16 octets")
        zeroed = body[: pos + 2] + _ZERO16 + body[pos + 18 :]
        mac = hmac.new(key, packet[:4] + request.authenticator + zeroed, hashlib.md5).digest()
        if not hmac.compare_digest(mac, value):
            raise InvalidReply("bad Message-Authenticator")
    elif require_message_authenticator:
        raise InvalidReply("no Message-Authenticator")

    error_cause: int | None = None
    for _, t, value in attrs:
        if t == _Attr.ERROR_CAUSE:
            if len(value) != 4:
                raise InvalidReply("Error-Cause is not 4 octets")
            if error_cause is None:
                error_cause = struct.unpack("!I", value)[0]
    return CoaReply(CoaCode(code), error_cause)


# ---------------------------------------------------------------- asyncio shell


@dataclass(frozen=True)
class CoaResult:
    result: Literal["ack", "nak", "timeout"]
    error_cause: int | None = None
    attempts: int = 0  # datagrams sent
    ignored: int = 0  # datagrams received that did not validate


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        log.debug("Disconnect-Request socket error: %s", exc)


async def send_disconnect(
    host: str,
    port: int,
    secret: bytes,
    session: Session,
    timeout: float = 1.0,
    retries: int = 3,
    backoff: float = 2.0,
    *,
    require_message_authenticator: bool = False,
    identifier: int | None = None,
    now: _dt.datetime | None = None,
) -> CoaResult:
    """Send one Disconnect-Request and wait for a valid ACK/NAK.

    ``retries`` is the number of transmissions (pyrad's convention): the identical
    packet is sent up to ``retries`` times, waiting ``timeout``, then ``timeout *
    backoff``, ``timeout * backoff**2`` ... seconds. Invalid datagrams are ignored.
    ``now`` (default: the wall clock) is the Event-Timestamp. ValueError/TypeError for
    bad arguments and OSError for an unresolvable ``host`` (configuration: ours).
    """
    if retries < 1:
        raise ValueError("retries must be at least 1")
    if timeout <= 0 or backoff < 1:
        raise ValueError("timeout must be positive and backoff at least 1")
    if identifier is None:
        identifier = _secrets.randbelow(256)
    request = encode_disconnect(
        session, secret, identifier, now if now is not None else _dt.datetime.now(_dt.UTC)
    )
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Receiver, remote_addr=(host, port))
    ignored = 0
    try:
        wait = timeout
        for attempt in range(1, retries + 1):
            transport.sendto(request.data)
            deadline = loop.time() + wait
            while (remaining := deadline - loop.time()) > 0:
                try:
                    data = await asyncio.wait_for(protocol.queue.get(), remaining)
                except TimeoutError:
                    break
                try:
                    reply = decode_reply(
                        data,
                        request,
                        secret,
                        require_message_authenticator=require_message_authenticator,
                    )
                except InvalidReply as exc:
                    ignored += 1
                    log.warning("ignoring reply from %s:%s: %s", host, port, exc.reason)
                    continue
                return CoaResult("ack" if reply.acked else "nak", reply.error_cause, attempt, ignored)
            wait *= backoff
        return CoaResult("timeout", None, retries, ignored)
    finally:
        transport.close()
