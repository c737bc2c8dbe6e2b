"""RadSec (RADIUS over TLS, RFC 6614): the asyncio shell of a second RADIUS transport.

Not a second RADIUS implementation: each packet framed out of the TLS stream
(``radius.stream``) goes to the same handlers as a UDP datagram — Access-Request and
Status-Server to ``RadiusServer.handle_packet`` (EAP-TLS, duplicate cache, conversation
table, budgets, metrics with ``transport="radsec"``), Accounting-Request to
``radius.accounting.store_and_answer`` — with the client's secret replaced by "radsec"
(RFC 6614 §2.3).

Per connection, in order:

1. the source address is matched to a ``[[radius.clients]]`` entry serving RadSec; an
   unknown address is closed before any TLS (no handshake CPU for strangers), as is one past
   ``max_connections`` or ``max_connections_per_address``;
2. the TLS handshake (mutual: the NAS's certificate must chain to ``[radsec] client_ca``)
   within ``handshake_timeout``;
3. ``radius.radsec_peer.check_peer`` on the verified leaf (revoked, a device certificate,
   the pinned name);
4. packets: many in flight (accounting waits on the store; authentication is answered
   synchronously, in order), at most ``max_in_flight`` at once, after which reading pauses
   and TCP pushes back; a connection without a packet for ``idle_timeout`` is closed (the
   NAS's Status-Server keep-alives hold it open), as is one whose peer does not read its
   replies within ``write_timeout``, or whose stream cannot be framed.

The stdlib ``ssl`` module does the TLS (through ``StreamWriter.start_tls``), so the checks
of step 3 run after the handshake: a refused NAS sees its connection closed, not an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import Counter, Gauge

from radius import metrics
from radius.accounting import SessionSink, decode_or_drop, store_and_answer
from radius.packet import Code, DropReason
from radius.radsec_peer import PeerRefusal, PeerVerdict
from radius.server import ClientTable, RadiusServer
from radius.stream import Framer, FramingError, InFlight

log = logging.getLogger(__name__)

RADSEC_SECRET = b"radsec"  # RFC 6614 §2.3
STOP_GRACE_SECONDS = 5.0

HANDSHAKE_RESULTS = ("ok", "unknown_client", "over_limit", "tls_error", "timeout",
                     *(r.value for r in PeerRefusal))
CLOSE_REASONS = ("peer_closed", "idle_timeout", "write_timeout", "bad_length", "revoked",
                 "shutdown", "error")

CONNECTIONS = Gauge(
    "certgate_radsec_connections", "RadSec connections open (after the checks)",
    multiprocess_mode="livesum",
)
HANDSHAKES = Counter(
    "certgate_radsec_handshakes_total",
    "RadSec connection attempts by client and outcome: ok, unknown_client (no client serves "
    "RadSec from that address; client=unknown), over_limit, tls_error (e.g. a certificate "
    "from another CA), timeout, revoked, device_certificate, not_issued, name_mismatch, "
    "no_certificate",
    ["client", "result"],
)
CLOSED = Counter(
    "certgate_radsec_connections_closed_total",
    "Established RadSec connections closed, by reason", ["reason"],
)
handshakes = metrics.LabelCache(HANDSHAKES)
closed = metrics.LabelCache(CLOSED)

PeerCheck = Callable[[bytes | None, Any], PeerVerdict | Awaitable[PeerVerdict]]
ContextSource = Callable[[], ssl.SSLContext]


@dataclass(frozen=True)
class RadsecOptions:
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0
    write_timeout: float = 10.0
    max_connections: int = 256
    max_connections_per_address: int = 16
    max_in_flight: int = 64  # per connection (a NAS has 256 identifiers per connection)
    read_size: int = 16384  # bytes per read: with one unfinished packet, what is buffered
    max_write_buffer: int = 256 * 1024  # queued replies past which we wait for the peer

    def __post_init__(self) -> None:
        for name in ("handshake_timeout", "idle_timeout", "write_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_connections < 1 or self.max_connections_per_address < 1:
            raise ValueError("connection limits must be >= 1")
        if not 1 <= self.max_in_flight <= 256:
            raise ValueError("max_in_flight must be 1..256")


def zero_series(clients: Sequence[str] = ()) -> None:
    """Every known series at 0: the closed sets of results and reasons, per client."""
    handshakes("unknown", "unknown_client")
    for client in clients:
        for result in HANDSHAKE_RESULTS:
            if result != "unknown_client":
                handshakes(client, result)
    for reason in CLOSE_REASONS:
        closed(reason)


def _peer_text(peer: Any) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)


class RadsecServer:
    def __init__(
        self,
        clients: Sequence[Any],  # radius.options.RadiusClient
        radius: RadiusServer,
        context: ContextSource,
        check_peer: PeerCheck,
        accounting: SessionSink | None,
        options: RadsecOptions | None = None,
    ) -> None:
        served = [replace(c, secret=RADSEC_SECRET) for c in clients if "radsec" in c.transports]
        self.clients = ClientTable(served)
        self.radius = radius
        self._context = context
        self._check_peer = check_peer
        self._accounting = accounting
        self.options = options or RadsecOptions()
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.BaseTransport] = set()
        self._per_address: dict[str, int] = {}
        self._accounting_tasks: set[asyncio.Task[None]] = set()
        # open connections whose NAS certificate one of our group CAs issued:
        # TLS transport -> (group, serial), for close_revoked
        self._issued_by_us: dict[asyncio.BaseTransport, tuple[str, int]] = {}
        self._revoked_closed: set[asyncio.BaseTransport] = set()
        self._stopping = False
        zero_series([c.name for c in served])

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("RadSec server not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Accepted(self), host, port,
                                                reuse_address=True, backlog=128)
        log.info("RadSec listening on %s:%d", *self.address)

    async def stop(self) -> None:
        """Stop accepting, close every connection, let accounting being stored finish."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for transport in list(self._transports):
            transport.close()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
        if self._accounting_tasks:
            _, pending = await asyncio.wait(list(self._accounting_tasks),
                                            timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), STOP_GRACE_SECONDS)
        self._server = None
        CONNECTIONS.set(0)

    def close_revoked(self, is_revoked: Callable[[str, int], bool]) -> int:
        """Close every open connection whose NAS certificate is now revoked or on hold (the
        revocation hook: ``certgate revoke`` ends a live RadSec session, not only the next
        handshake). Returns how many were closed."""
        ended = 0
        for transport, (group, serial) in list(self._issued_by_us.items()):
            if is_revoked(group, serial) and transport not in self._revoked_closed:
                self._revoked_closed.add(transport)
                log.warning("RadSec connection closed: its NAS certificate serial %x of group %s "
                            "was revoked or put on hold", serial, group)
                transport.close()
                ended += 1
        return ended

    # --- one connection ---------------------------------------------------------------

    def _accepted(self, transport: asyncio.Transport) -> None:
        """A TCP connection, reading paused: no byte of the ClientHello may reach anything
        but the TLS protocol that ``loop.start_tls`` puts in place."""
        transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._on_connection(transport))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _on_connection(self, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        self._transports.add(transport)
        counted = False
        writer: asyncio.StreamWriter | None = None
        try:
            client = self.clients.match(host)
            if client is None:
                handshakes("unknown", "unknown_client").inc()
                log.info("RadSec connection from %s refused: no [[radius.clients]] entry serves "
                         "RadSec from that address", _peer_text(peer))
                return
            if (len(self._connections) > self.options.max_connections
                    or self._per_address.get(host, 0) >= self.options.max_connections_per_address):
                handshakes(client.name, "over_limit").inc()
                log.warning("RadSec connection from %s client=%s refused: connection limit "
                            "(max_connections %d, max_connections_per_address %d)",
                            _peer_text(peer), client.name, self.options.max_connections,
                            self.options.max_connections_per_address)
                return
            self._per_address[host] = self._per_address.get(host, 0) + 1
            counted = True
            streams = await self._handshake(transport, client, peer)
            if streams is None:
                return
            reader, writer = streams
            CONNECTIONS.inc()
            try:
                reason = await self._serve(reader, writer, client, peer)
            finally:
                CONNECTIONS.dec()
            if writer.transport in self._revoked_closed:
                reason = "revoked"
            elif self._stopping:
                reason = "shutdown"
            closed(reason).inc()
            log.info("RadSec connection client=%s address=%s closed: %s", client.name,
                     _peer_text(peer), reason)
        except Exception:
            log.exception("RadSec connection from %s failed", _peer_text(peer))
            closed("error").inc()
        finally:
            if counted:
                left = self._per_address.get(host, 1) - 1
                if left:
                    self._per_address[host] = left
                else:
                    self._per_address.pop(host, None)
            self._transports.discard(transport)
            transport.close()
            if writer is not None:
                self._transports.discard(writer.transport)
                self._issued_by_us.pop(writer.transport, None)
                self._revoked_closed.discard(writer.transport)
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _handshake(self, transport: asyncio.Transport, client: Any, peer: Any
                         ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        timeout = self.options.handshake_timeout
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self.options.read_size, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            # wait_for bounds the handshake (cancelling start_tls closes the transport);
            # asyncio's own ssl_handshake_timeout is only the backstop.
            tls = await asyncio.wait_for(loop.start_tls(
                transport, protocol, self._context(), server_side=True,
                ssl_handshake_timeout=timeout + 5.0), timeout)
        except TimeoutError:
            handshakes(client.name, "timeout").inc()
            log.info("RadSec handshake client=%s address=%s: no TLS handshake within %g s",
                     client.name, _peer_text(peer), timeout)
            return None
        except (ssl.SSLError, OSError, EOFError) as exc:
            handshakes(client.name, "tls_error").inc()
            log.info("RadSec handshake client=%s address=%s failed: %s", client.name,
                     _peer_text(peer), _ssl_reason(exc))
            return None
        if tls is None:  # the peer went away during the handshake
            handshakes(client.name, "tls_error").inc()
            return None
        self._transports.add(tls)
        protocol.connection_made(tls)  # start_tls does not call it
        writer = asyncio.StreamWriter(tls, protocol, reader, loop)
        ssl_object = tls.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        verdict = self._check_peer(der, client)
        if inspect.isawaitable(verdict):  # the composition root may look up the inventory
            verdict = await verdict
        if verdict.refusal is not None:
            handshakes(client.name, verdict.refusal.value).inc()
            log.warning("RadSec connection client=%s address=%s refused reason=%s subject=%r: %s",
                        client.name, _peer_text(peer), verdict.refusal.value, verdict.subject,
                        verdict.detail)
            self._transports.discard(tls)
            tls.close()
            return None
        handshakes(client.name, "ok").inc()
        if verdict.group is not None and verdict.serial is not None:
            self._issued_by_us[tls] = (verdict.group, verdict.serial)
        log.info("RadSec connection client=%s address=%s tls=%s cipher=%s subject=%r",
                 client.name, _peer_text(peer), ssl_object.version(),
                 (ssl_object.cipher() or ("-",))[0], verdict.subject)
        return reader, writer

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     client: Any, peer: Any) -> str:
        """Read, frame and answer until the connection ends; the close reason."""
        opts = self.options
        framer = Framer()
        in_flight = InFlight(opts.max_in_flight)
        room = asyncio.Event()
        room.set()
        loop = asyncio.get_running_loop()
        last_packet = loop.time()
        addr = peer if isinstance(peer, tuple) else (str(peer), 0)

        def answered(reply: bytes | None) -> None:
            in_flight.end()
            room.set()
            if reply is not None and not writer.is_closing():
                writer.write(reply)

        while not self._stopping:
            wait = max(0.0, last_packet + opts.idle_timeout - loop.time())
            try:
                data = await asyncio.wait_for(reader.read(opts.read_size), wait)
            except TimeoutError:
                if in_flight.count:  # still answering: not idle
                    last_packet = loop.time()
                    continue
                return "idle_timeout"
            except (ConnectionError, ssl.SSLError, OSError):
                return "peer_closed"
            if not data:
                return "peer_closed"
            try:
                packets = framer.feed(data)
            except FramingError as exc:
                metrics.dropped(client.name, DropReason.MALFORMED.value).inc()
                log.warning("RadSec client=%s address=%s: %s; closing the connection",
                            client.name, _peer_text(peer), exc)
                return exc.reason.value
            if packets:
                last_packet = loop.time()
            for packet in packets:
                while in_flight.full:  # stop reading: TCP pushes back on the NAS
                    room.clear()
                    await room.wait()
                self._dispatch(packet, client, addr, writer, in_flight, answered)
            if writer.transport.get_write_buffer_size() > opts.max_write_buffer:
                try:
                    await asyncio.wait_for(writer.drain(), opts.write_timeout)
                except TimeoutError:
                    return "write_timeout"
                except (ConnectionError, OSError):
                    return "peer_closed"
        return "shutdown"

    def _dispatch(self, packet: bytes, client: Any, addr: tuple[Any, ...],
                  writer: asyncio.StreamWriter, in_flight: InFlight,
                  answered: Callable[[bytes | None], None]) -> None:
        code = packet[0]
        if code in (Code.ACCESS_REQUEST, Code.STATUS_SERVER):
            reply = self.radius.handle_packet(packet, client, addr, "radsec")
            if reply is not None:
                writer.write(reply)
        elif code == Code.ACCOUNTING_REQUEST and self._accounting is not None:
            record = decode_or_drop(client, packet)
            if record is not None:
                in_flight.begin()
                self._account(client, record, answered)
        else:
            metrics.dropped(client.name, DropReason.UNKNOWN_CODE.value).inc()
            log.info("RadSec client=%s: code %d dropped", client.name, code)

    def _account(self, client: Any, record: Any, answered: Callable[[bytes | None], None]) -> None:
        assert self._accounting is not None
        sink = self._accounting

        async def run() -> None:
            reply = None
            try:
                reply = await store_and_answer(sink, client, record, "radsec")
            finally:
                answered(reply)

        task = asyncio.get_running_loop().create_task(run())
        self._accounting_tasks.add(task)
        task.add_done_callback(self._accounting_tasks.discard)


class _Accepted(asyncio.Protocol):
    """The protocol of a just-accepted TCP connection, until start_tls replaces it."""

    def __init__(self, server: RadsecServer) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._server._accepted(transport)  # noqa: SLF001 - the server's own protocol


def _ssl_reason(exc: BaseException) -> str:
    """OpenSSL's reason (e.g. CERTIFICATE_VERIFY_FAILED: unable to get local issuer
    certificate) without the traceback."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
