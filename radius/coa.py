"""Dynamic Authorization client (RFC 5176): Disconnect-Request and CoA-Request, a pure
codec plus a small asyncio sender.

certgate is the Dynamic Authorization *client*; the NAS (DAS) listens on UDP 3799.
After a revocation the composition root calls :func:`send_disconnect` for each
session it recorded from accounting (NAS address, Calling-Station-Id, ...); after a hold
or a release it calls :func:`send_coa` with the session's new authorization attributes
(a quarantine VLAN, or the group's own), falling back to a Disconnect when the NAS NAKs or
does not answer (``radius.dynamic_auth``).

Request (code 40 Disconnect, 43 CoA), like an Accounting-Request (RFC 5176 §3.3, RFC 2866 §3):

1. Message-Authenticator (80), placed first, is HMAC-MD5(secret, packet) with the
   Authenticator field and the Message-Authenticator value set to 16 zero octets
   (RFC 5176 §3.4);
2. Request Authenticator = MD5(Code | Identifier | Length | 16 zero octets |
   attributes | secret), over the attributes *with* the Message-Authenticator filled in.

A CoA-Request carries the session identification plus the authorization attributes to
change (RFC 5176 §3.1: Tunnel-*, Filter-Id, ...); a Disconnect-Request only identifies.

Reply (41 Disconnect-ACK / 42 Disconnect-NAK; 44 CoA-ACK / 45 CoA-NAK to a CoA-Request):

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
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

__all__ = [
    "DEFAULT_PORT",
    "CoaCode",
    "CoaReply",
    "CoaResult",
    "CoaRequest",
    "DisconnectRequest",
    "ErrorCause",
    "InvalidReply",
    "Session",
    "decode_reply",
    "encode_coa",
    "encode_disconnect",
    "send_coa",
    "send_disconnect",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 3799
MAX_PACKET = 4096
MAX_QUEUED = 64  # replies waiting to be validated; more from one DAS are dropped
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
class CoaRequest:
    """An encoded request: send ``data`` verbatim on every (re)transmission."""

    identifier: int
    authenticator: bytes
    data: bytes

    @property
    def code(self) -> CoaCode:
        return CoaCode(self.data[0])

    @property
    def replies(self) -> tuple[CoaCode, CoaCode]:
        """(ACK, NAK) codes answering this request."""
        if self.code == CoaCode.COA_REQUEST:
            return CoaCode.COA_ACK, CoaCode.COA_NAK
        return CoaCode.DISCONNECT_ACK, CoaCode.DISCONNECT_NAK


DisconnectRequest = CoaRequest  # the name before CoA-Request existed


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
) -> CoaRequest:
    """Encode a Disconnect-Request (pure). ``event_time`` becomes Event-Timestamp."""
    return _encode(CoaCode.DISCONNECT_REQUEST, session, secret, identifier, event_time, ())


def encode_coa(
    session: Session,
    secret: bytes,
    identifier: int,
    event_time: _dt.datetime,
    attributes: Sequence[tuple[int, bytes]],
) -> CoaRequest:
    """Encode a CoA-Request (pure): the session identification, then ``attributes`` (the
    authorization to apply, e.g. ``radius.packet.tunnel_vlan_attributes``), then
    Event-Timestamp. At least one attribute: a CoA without a change is a no-op at best."""
    if not attributes:
        raise ValueError("a CoA-Request needs at least one authorization attribute")
    for code, value in attributes:
        if not isinstance(code, int) or not 1 <= code <= 255 or code in _RESERVED:
            raise ValueError(f"attribute type {code!r} cannot be an authorization attribute")
        if not isinstance(value, bytes) or not 1 <= len(value) <= 253:
            raise ValueError(f"attribute {code} value must be 1..253 octets")
    return _encode(CoaCode.COA_REQUEST, session, secret, identifier, event_time,
                   tuple(attributes))


# Attributes the codec writes itself (identification, timestamp, MAC): never as changes.
_RESERVED = frozenset({
    _Attr.USER_NAME, _Attr.NAS_IP_ADDRESS, _Attr.CALLING_STATION_ID, _Attr.NAS_IDENTIFIER,
    _Attr.ACCT_SESSION_ID, _Attr.EVENT_TIMESTAMP, _Attr.MESSAGE_AUTHENTICATOR,
    _Attr.NAS_IPV6_ADDRESS, _Attr.ERROR_CAUSE,
})


def _encode(
    code: CoaCode,
    session: Session,
    secret: bytes,
    identifier: int,
    event_time: _dt.datetime,
    changes: tuple[tuple[int, bytes], ...],
) -> CoaRequest:
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

    attrs = [(_Attr.MESSAGE_AUTHENTICATOR, _ZERO16), *session.attributes(), *changes]
    attrs.append((_Attr.EVENT_TIMESTAMP, struct.pack("!I", seconds)))
    body = _encode_attrs(attrs)
    length = 20 + len(body)
    if length > MAX_PACKET:
        raise ValueError(f"{code.name} longer than 4096 octets")
    head = struct.pack("!BBH", code, identifier, length)
    ma = hmac.new(key, head + _ZERO16 + body, hashlib.md5).digest()
    body = bytes((_Attr.MESSAGE_AUTHENTICATOR, 18)) + ma + body[18:]
    authenticator = hashlib.md5(head + _ZERO16 + body + key).digest()
    return CoaRequest(identifier, authenticator, head + authenticator + body)


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
    request: CoaRequest,
    secret: bytes,
    *,
    require_message_authenticator: bool = False,
) -> CoaReply:
    """Validate ``data`` as the reply to ``request``; InvalidReply if it is not one.

    Octets after the Length field are ignored (RFC 2865 §3). Checks, in order:
    size, code (41/42 for a Disconnect-Request, 44/45 for a CoA-Request), Identifier,
    Response Authenticator, attribute syntax, Message-Authenticator (if present, or
    required), Error-Cause syntax.
    """
    key = _key(secret)
    if not isinstance(request, CoaRequest):
        raise TypeError(f"request must be CoaRequest, not {type(request).__name__}")
    if len(data) < 20:
        raise InvalidReply("shorter than a RADIUS header")
    code, identifier, length, authenticator = _HEADER.unpack_from(data)
    if not 20 <= length <= min(len(data), MAX_PACKET):
        raise InvalidReply(f"Length {length} does not fit datagram of {len(data)} octets")
    if code not in request.replies:
        ack, nak = request.replies
        raise InvalidReply(f"code {code} is not {ack.name}/{nak.name} ({ack}/{nak})")
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
        if self.queue.qsize() < MAX_QUEUED:  # connected: only the DAS's address reaches us
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        log.debug("Dynamic Authorization socket error: %s", exc)


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
    source: str | None = None,
) -> CoaResult:
    """Send one Disconnect-Request and wait for a valid ACK/NAK.

    ``retries`` is the number of transmissions (pyrad's convention): the identical
    packet is sent up to ``retries`` times, waiting ``timeout``, then ``timeout *
    backoff``, ``timeout * backoff**2`` ... seconds. Invalid datagrams are ignored.
    ``now`` (default: the wall clock) is the Event-Timestamp. ``source``: the local address
    to send from (a DAS drops requests from addresses it does not know, RFC 5176 §6.1:
    certgate sends from its RADIUS address); None lets the kernel choose. ValueError/TypeError
    for bad arguments and OSError for an unresolvable ``host`` or unusable ``source``
    (configuration: ours).
    """
    _check(timeout, retries, backoff)
    request = encode_disconnect(session, secret, _identifier(identifier), _now(now))
    return await _exchange(host, port, secret, request, timeout, retries, backoff,
                           require_message_authenticator, source)


async def send_coa(
    host: str,
    port: int,
    secret: bytes,
    session: Session,
    attributes: Sequence[tuple[int, bytes]],
    timeout: float = 1.0,
    retries: int = 3,
    backoff: float = 2.0,
    *,
    require_message_authenticator: bool = False,
    identifier: int | None = None,
    now: _dt.datetime | None = None,
    source: str | None = None,
) -> CoaResult:
    """Send one CoA-Request carrying ``attributes`` and wait for a valid CoA-ACK/NAK; the
    same retransmission, validation and ``source`` rules as :func:`send_disconnect`."""
    _check(timeout, retries, backoff)
    request = encode_coa(session, secret, _identifier(identifier), _now(now), attributes)
    return await _exchange(host, port, secret, request, timeout, retries, backoff,
                           require_message_authenticator, source)


def _check(timeout: float, retries: int, backoff: float) -> None:
    if retries < 1:
        raise ValueError("retries must be at least 1")
    if timeout <= 0 or backoff < 1:
        raise ValueError("timeout must be positive and backoff at least 1")


def _identifier(identifier: int | None) -> int:
    return _secrets.randbelow(256) if identifier is None else identifier


def _now(now: _dt.datetime | None) -> _dt.datetime:
    return now if now is not None else _dt.datetime.now(_dt.UTC)


async def _exchange(
    host: str,
    port: int,
    secret: bytes,
    request: CoaRequest,
    timeout: float,
    retries: int,
    backoff: float,
    require_message_authenticator: bool,
    source: str | None,
) -> CoaResult:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _Receiver, remote_addr=(host, port),
        local_addr=(source, 0) if source is not None else None)
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
