"""RADIUS accounting (RFC 2866): pure codec + a small asyncio UDP shell.

The NAS echoes the Class attributes of the Access-Accept in its accounting
(RFC 2865 §5.25); certgate puts one `certgate:<group>:<serial hex>` Class in every
Accept, so an accounting session is linked to the certificate that authenticated
it. That link is what lets a revocation send a Disconnect-Request to the right NAS.

A session is written to the store before the Accounting-Response leaves: the NAS
retransmits until answered, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from prometheus_client import Counter

from radius.options import RadiusClient
from radius.packet import Attr, Code, DropReason, MalformedPacket, _hmac_md5, _ma_offset, _walk

log = logging.getLogger(__name__)

CLASS_PREFIX = b"certgate:"
ACCT_STATUS_TYPE = 40
ACCT_SESSION_ID = Attr.ACCT_SESSION_ID
_ZERO16 = bytes(16)
MAX_IN_FLIGHT = 1024  # accounting records being stored at once
STOP_GRACE_SECONDS = 5.0

ACCOUNTING_REQUESTS = Counter(
    "certgate_radius_accounting_requests_total", "Accounting-Requests answered",
    ["client", "status_type", "transport"],
)
ACCOUNTING_DROPPED = Counter(
    "certgate_radius_accounting_dropped_total", "Accounting-Requests dropped", ["client", "reason"]
)


class StatusType(IntEnum):
    START = 1
    STOP = 2
    INTERIM_UPDATE = 3
    ACCOUNTING_ON = 7
    ACCOUNTING_OFF = 8


def class_value(group: str, serial: int) -> bytes:
    """The Class certgate puts in an Access-Accept to link accounting to the certificate."""
    return CLASS_PREFIX + f"{group}:{serial:x}".encode()


def parse_class(values: Sequence[bytes]) -> tuple[str, int] | None:
    for v in values:
        if v.startswith(CLASS_PREFIX):
            group, _, serial = v[len(CLASS_PREFIX):].decode("ascii", "replace").partition(":")
            try:
                return group, int(serial, 16)
            except ValueError:
                return None
    return None


@dataclass(frozen=True, slots=True)
class AccountingRecord:
    identifier: int
    authenticator: bytes
    status_type: int
    session_id: str | None
    nas_ip: str | None
    nas_identifier: str | None
    calling_station_id: str | None
    user_name: str | None
    certificate: tuple[str, int] | None  # (group, serial) from our Class
    proxy_state: tuple[bytes, ...]


def _text(attrs: list[tuple[int, bytes]], t: int) -> str | None:
    for k, v in attrs:
        if k == t:
            return v.decode("utf-8", "backslashreplace")
    return None


def decode_accounting(data: bytes, secret: bytes) -> AccountingRecord:
    """Verify the Request Authenticator (and Message-Authenticator if present)."""
    if len(data) < 20:
        raise MalformedPacket(DropReason.MALFORMED, "short datagram")
    code, identifier, length = struct.unpack_from("!BBH", data)
    if not 20 <= length <= min(len(data), 4096):
        raise MalformedPacket(DropReason.MALFORMED, f"Length field {length}")
    if code != Code.ACCOUNTING_REQUEST:
        raise MalformedPacket(DropReason.UNKNOWN_CODE, f"code {code} on the accounting port")
    data = data[:length]
    attrs = _walk(data, length)
    expected = hashlib.md5(data[:4] + _ZERO16 + data[20:] + secret).digest()
    if not hmac.compare_digest(expected, data[4:20]):
        raise MalformedPacket(DropReason.BAD_AUTHENTICATOR, "Request Authenticator")
    ma = _ma_offset(data, length)  # the same walk and rules as the authentication port
    if ma != -1:  # RFC 3579: HMAC over the packet with authenticator and MA value zeroed
        mac = _hmac_md5(secret, data[:4], _ZERO16, data[20:ma], _ZERO16, data[ma + 16:])
        if not hmac.compare_digest(mac, data[ma:ma + 16]):
            raise MalformedPacket(DropReason.BAD_AUTHENTICATOR, "Message-Authenticator")
    status = next((v for k, v in attrs if k == ACCT_STATUS_TYPE), None)
    if status is None or len(status) != 4:
        raise MalformedPacket(DropReason.MALFORMED, "no Acct-Status-Type")
    nas_ip = next((v for k, v in attrs if k == Attr.NAS_IP_ADDRESS and len(v) == 4), None)
    return AccountingRecord(
        identifier=identifier,
        authenticator=data[4:20],
        status_type=int.from_bytes(status, "big"),
        session_id=_text(attrs, ACCT_SESSION_ID),
        nas_ip=str(ipaddress.IPv4Address(nas_ip)) if nas_ip else None,
        nas_identifier=_text(attrs, Attr.NAS_IDENTIFIER),
        calling_station_id=_text(attrs, Attr.CALLING_STATION_ID),
        user_name=_text(attrs, Attr.USER_NAME),
        certificate=parse_class([v for k, v in attrs if k == Attr.CLASS]),
        proxy_state=tuple(v for k, v in attrs if k == Attr.PROXY_STATE),
    )


def encode_response(record: AccountingRecord, secret: bytes) -> bytes:
    """Accounting-Response: Proxy-State echoed, Response Authenticator over the request's."""
    rest = b"".join(bytes((Attr.PROXY_STATE, len(p) + 2)) + p for p in record.proxy_state)
    header = struct.pack("!BBH", Code.ACCOUNTING_RESPONSE, record.identifier, 20 + len(rest))
    auth = hashlib.md5(header + record.authenticator + rest + secret).digest()
    return header + auth + rest


SessionSink = Callable[[str, AccountingRecord], Awaitable[None]]


def decode_or_drop(client: RadiusClient, data: bytes) -> AccountingRecord | None:
    """Decode an Accounting-Request from ``client`` (its secret: "radsec" over RadSec);
    None when it is dropped (counted and logged)."""
    try:
        return decode_accounting(data, client.secret)
    except MalformedPacket as exc:
        ACCOUNTING_DROPPED.labels(client=client.name, reason=exc.reason.value).inc()
        log.warning("accounting from %s dropped: %s", client.name, exc)
        return None


async def store_and_answer(sink: SessionSink, client: RadiusClient, record: AccountingRecord,
                           transport: str) -> bytes | None:
    """Persist ``record`` (the sink), then the Accounting-Response; None when it could not be
    stored: no answer, so the NAS (or the RadSec proxy) sends it again."""
    try:
        await sink(client.name, record)
    except Exception:
        ACCOUNTING_DROPPED.labels(client=client.name, reason="internal_error").inc()
        log.exception("accounting record from %s not stored", client.name)
        return None
    try:
        label = StatusType(record.status_type).name.lower()
    except ValueError:
        label = "other"
    ACCOUNTING_REQUESTS.labels(client=client.name, status_type=label, transport=transport).inc()
    return encode_response(record, client.secret)


class AccountingServer(asyncio.DatagramProtocol):
    """UDP shell: client by source address, decode, persist (sink), then answer."""

    def __init__(self, clients: Callable[[str], RadiusClient | None], sink: SessionSink) -> None:
        self._match = clients
        self._sink = sink
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reply_sock: socket.socket | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(host, port)
        )
        log.info("RADIUS accounting listening on %s:%d", host, port)

    def start_inherited(self, sock: socket.socket) -> None:
        """Worker mode: datagrams are given to `datagram_received` by the supervisor's
        channel; answers go out with sendto() on ``sock``, the bound accounting socket."""
        self._reply_sock = sock

    async def stop(self) -> None:
        """Stop reading; let records already being stored finish (bounded), so a record the
        NAS has handed over is either stored or unanswered (and retransmitted), never lost."""
        if self._transport is not None:
            self._transport.close()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        client = self._match(addr[0])
        if client is None:
            ACCOUNTING_DROPPED.labels(client="unknown", reason="unknown_client").inc()
            return
        record = decode_or_drop(client, data)
        if record is None:
            return
        if len(self._tasks) >= MAX_IN_FLIGHT:  # the store is behind: the NAS will retransmit
            ACCOUNTING_DROPPED.labels(client=client.name, reason="queue_full").inc()
            return
        task = asyncio.get_running_loop().create_task(self._handle(client, record, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, client: RadiusClient, record: AccountingRecord, addr: tuple) -> None:
        reply = await store_and_answer(self._sink, client, record, "udp")
        if reply is None:
            return
        if self._transport is not None:
            self._transport.sendto(reply, addr)
        elif self._reply_sock is not None:
            try:
                self._reply_sock.sendto(reply, addr)
            except OSError as e:
                log.warning("accounting sendto %s: %s", addr, e)
