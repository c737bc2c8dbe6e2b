"""RADIUS authentication server: the asyncio shell around the pure cores.

I/O only: a UDP socket read with ``loop.add_reader`` draining ``recvfrom`` (measured
~118k datagrams/s on the stock loop, against 13-21k for a DatagramProtocol, which reads
one datagram per loop iteration), client lookup by source address, the duplicate cache,
the conversation table and metrics. Every packet is handled synchronously to the end (TLS
steps take well under a millisecond), so no request is ever interleaved with another.

No exception escapes a packet handler: it is logged, counted as
``dropped{reason="internal_error"}`` and the conversation is discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from OpenSSL import SSL

from radius import eap, metrics
from radius import packet as rp
from radius.authorize import Allow
from radius.buffers import BufferAccount, BufferBudget
from radius.clients import ClientTable
from radius.conversations import ConversationTable, Overloaded, Shed
from radius.dispatch import tagged_token
from radius.duplicates import DuplicateCache, DupStatus
from radius.eap_tls import Accept, AuthorizeFn, Challenge, Discard, EapTlsSession, Reject
from radius.fragments import fragment_size_for
from radius.log_budget import LogBudget, suppressed_note
from radius.options import EapOptions, RadiusClient
from radius.packet import Attr, Code, DropReason, MalformedPacket
from radius.reasons import Reason
from radius.reply import accept_attributes
from radius.results import AuthResult, OnResult
from radius.udp import bind_udp

log = logging.getLogger(__name__)

OnAccept = Callable[[str, tuple[tuple[int, bytes], ...], Allow, int], None]
ContextSource = SSL.Context | Callable[[], SSL.Context]

MAX_DATAGRAM = 65535  # read whole datagrams so oversize ones are seen and dropped
DRAIN_BATCH = 64  # datagrams per reader callback, so other tasks get the loop
HOUSEKEEPING_INTERVAL = 1.0


class ServerState(Enum):
    STOPPED = "STOPPED"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"


@dataclass(slots=True)
class Conversation:
    session: EapTlsSession
    client: str
    started: float  # monotonic
    calling_station_id: str | None
    outer_identity: str | None = None
    buffers: BufferAccount | None = None
    transport: str = "udp"  # or "radsec": where it started (the audit event says)


_SHED_RESULT = {"lifetime": Reason.TIMEOUT, "buffer_share": Reason.BUFFERS_FULL}
_CODE_LABELS = {int(c): c.name.lower() for c in Code}
_RESULT_FIELDS = (
    "eap result=%s reason=%s client=%s group=%s tls=%s resumed=%s "
    "calling_station=%s outer_identity=%r round_trips=%d ms=%.1f "
)
_RESULT_LINE = _RESULT_FIELDS + "detail=%s"
_ACCEPT_LINE = _RESULT_FIELDS + "identity=%r serial=%x session_timeout=%d"


def _code_label(code: int) -> str:
    return _CODE_LABELS.get(code, "other")


class RadiusServer:
    def __init__(
        self,
        clients: Sequence[RadiusClient],
        options: EapOptions,
        context: ContextSource,
        authorize: AuthorizeFn,
        on_accept: OnAccept | None = None,
        *,
        on_result: OnResult | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        state_tag: int | None = None,
    ) -> None:
        self.options = options
        self.clients = ClientTable(clients)
        self._context = context
        self._authorize = authorize
        self._on_accept = on_accept
        self._on_result = on_result
        self._wall = wall_clock
        self._mono = monotonic
        self._log_budget = LogBudget()  # drop lines: a few per (client, reason) per 10 s
        self.conversations: ConversationTable[Conversation] = ConversationTable(
            options.max_conversations, options.conversation_timeout,
            lifetime=options.conversation_lifetime,
            max_per_station=options.max_conversations_per_station,
            max_per_client=options.max_conversations_per_client or None,
            **({} if state_tag is None else {"token": tagged_token(state_tag)}),
        )
        self.buffers = BufferBudget(options.max_buffered_bytes)
        for c in self.clients:  # every known label value exported from the start
            for why in metrics.SHED_REASONS:
                metrics.shed(c.name, why)
        self.duplicates = DuplicateCache(
            options.duplicate_cache_ttl, max_entries=max(1000, options.max_conversations * 4)
        )
        self.state = ServerState.STOPPED
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._reads = True  # False: an inherited socket the supervisor reads

    # --- lifecycle ------------------------------------------------------------------

    def _set_state(self, new: ServerState) -> None:
        if new is not self.state:
            log.info("RADIUS server: %s -> %s", self.state.value, new.value)
            self.state = new

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            raise RuntimeError("server not started")
        host, port = self._sock.getsockname()[:2]
        return host, port

    async def start(self, host: str, port: int) -> None:
        if self.state is not ServerState.STOPPED:
            raise RuntimeError(f"start() in state {self.state.value}")
        for client in self.clients:
            if not client.require_message_authenticator:
                log.warning(
                    "RADIUS client %r (%s) may send Access-Requests WITHOUT "
                    "Message-Authenticator: exposed to Blast-RADIUS (CVE-2024-3596)",
                    client.name,
                    client.network,
                )
        sock = bind_udp(host, port)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._on_readable)
        self._housekeeping = asyncio.create_task(self._housekeep(), name="radius-housekeeping")
        self._set_state(ServerState.RUNNING)
        log.info("RADIUS listening on %s:%d", *self.address)

    async def start_inherited(self, sock: socket.socket) -> None:
        """Worker mode (`[server] workers` > 1): ``sock`` is the bound UDP socket the
        supervisor reads; this server never reads it, it is given datagrams (`answer`) and
        replies with sendto() on it, so replies leave from the server port."""
        if self.state is not ServerState.STOPPED:
            raise RuntimeError(f"start_inherited() in state {self.state.value}")
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._reads = False
        self._housekeeping = asyncio.create_task(self._housekeep(), name="radius-housekeeping")
        self._set_state(ServerState.RUNNING)

    async def drain(self, timeout: float, poll: float = 0.05) -> int:
        """Wait (at most ``timeout`` s) for the conversations in progress to finish; returns
        how many were still open. New ones are kept away by whoever routes datagrams."""
        deadline = self._mono() + timeout
        while len(self.conversations) and self._mono() < deadline:
            await asyncio.sleep(poll)
        return len(self.conversations)

    async def stop(self) -> None:
        if self.state is not ServerState.RUNNING:
            return
        self._set_state(ServerState.STOPPING)
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        if self._sock is not None and self._loop is not None:
            if self._reads:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._sock = None
        for conv in self.conversations.expire(float("inf")):
            conv.session.fail_timeout()
        metrics.SESSIONS_ACTIVE.set(0)
        self._set_state(ServerState.STOPPED)

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            try:
                self.housekeeping(self._mono())
            except Exception:
                log.exception("RADIUS housekeeping failed")

    def housekeeping(self, now: float) -> None:
        """Expire idle conversations and old duplicate-cache entries."""
        for conv in self.conversations.expire(now):
            conv.session.fail_timeout()
            metrics.SESSIONS_EXPIRED.inc()
            self._record_result(conv, "reject", Reason.TIMEOUT, None, conv.session.tls_version, now, "idle")
        self._end_shed(self.conversations.expire_lifetime(now), now)
        self.duplicates.expire(now)
        metrics.SESSIONS_ACTIVE.set(len(self.conversations))
        metrics.BUFFERED_BYTES.set(self.buffers.used)

    # --- datagram path --------------------------------------------------------------

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(DRAIN_BATCH):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. ICMP port unreachable reported on Linux
                log.debug("recvfrom: %s", e)
                continue
            self.answer(data, addr, sock)

    def answer(self, data: bytes, addr: tuple[Any, ...], sock: socket.socket | None = None
               ) -> None:
        """Handle one datagram from ``addr`` and send the reply, if any, from the server
        socket. Never raises."""
        reply = self.handle_datagram(data, addr)
        sock = sock or self._sock
        if reply is None or sock is None:
            return
        try:
            sock.sendto(reply, addr)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ENOBUFS):
                metrics.dropped("unknown", DropReason.QUEUE_FULL.value).inc()
            else:
                log.warning("sendto %s: %s", addr, e)

    def handle_datagram(self, data: bytes, addr: tuple[Any, ...]) -> bytes | None:
        """Process one datagram; return the reply bytes or None. Never raises."""
        client = self.clients.match(addr[0])
        if client is None:
            metrics.dropped("unknown", DropReason.UNKNOWN_CLIENT.value).inc()
            log.debug("drop datagram from unknown client %s", addr[0])
            return None
        return self.handle_packet(data, client, addr, "udp")

    def handle_packet(self, data: bytes, client: RadiusClient, addr: tuple[Any, ...],
                      transport: str) -> bytes | None:
        """One Access-Request or Status-Server from ``client`` (already matched by its
        transport: the UDP source address here, the TLS connection for RadSec, whose
        ``client.secret`` is then "radsec"); the reply bytes or None. Never raises.

        ``addr`` keys the duplicate cache: a RadSec connection's peer address and port are
        the connection's own, so duplicates are detected per connection (RFC 6614 §2.5)."""
        key = None
        try:
            try:
                request = rp.decode(data, client)
            except MalformedPacket as e:
                metrics.dropped(client.name, e.reason.value).inc()
                skipped = self._log_budget.allow((client.name, e.reason.value), self._mono())
                if skipped is not None:
                    log.info("drop from client=%s address=%s transport=%s reason=%s: %s%s",
                             client.name, addr[0], transport, e.reason.value, e,
                             suppressed_note(skipped))
                return None
            code = _code_label(request.code)
            metrics.requests(client.name, code, transport).inc()
            if request.code is Code.STATUS_SERVER:  # RFC 5997, outside the duplicate cache
                return self._respond(
                    client,
                    rp.encode_reply(Code.ACCESS_ACCEPT, request, client.secret, []),
                    Code.ACCESS_ACCEPT, transport,
                )
            now = self._mono()
            key = (addr[0], addr[1], request.identifier, request.authenticator)
            status, cached = self.duplicates.begin(key, now, client.name)
            if status is not DupStatus.NEW:
                metrics.duplicates(client.name).inc()
                key = None  # the original owns the cache entry
                if cached is None:
                    metrics.dropped(client.name, DropReason.DUPLICATE_IN_PROGRESS.value).inc()
                    return None
                metrics.responses(client.name, _code_label(cached[0]), transport).inc()
                return cached
            reply = self._access_request(client, request, now, transport)
            if reply is None:
                self.duplicates.abandon(key)
                return None
            self.duplicates.finish(key, reply, now)
            return self._respond(client, reply, reply[0], transport)
        except rp.PacketTooLarge as exc:  # e.g. an abusive Proxy-State pushes past 4096 bytes
            log.warning("RADIUS reply dropped client=%s address=%s reason=%s: %s", client.name, addr[0],
                        DropReason.REPLY_TOO_LARGE.value, exc)
            metrics.dropped(client.name, DropReason.REPLY_TOO_LARGE.value).inc()
            if key is not None:
                self.duplicates.abandon(key)
            return None
        except Exception:
            log.exception("RADIUS request failed client=%s address=%s", client.name, addr[0])
            metrics.dropped(client.name, DropReason.INTERNAL_ERROR.value).inc()
            if key is not None:
                self.duplicates.abandon(key)
            return None

    def _respond(self, client: RadiusClient, reply: bytes, code: int, transport: str) -> bytes:
        metrics.responses(client.name, _code_label(code), transport).inc()
        return reply

    # --- EAP ------------------------------------------------------------------------

    def _context_for_session(self) -> SSL.Context:
        return self._context if isinstance(self._context, SSL.Context) else self._context()

    def _access_request(self, client: RadiusClient, request: rp.Request, now: float,
                        transport: str = "udp") -> bytes | None:
        eap_message = request.eap_message
        secret = client.secret
        if eap_message is None:
            log.info(
                "eap result=reject reason=%s client=%s user=%r: no EAP-Message",
                Reason.NOT_EAP.value,
                client.name,
                request.text(Attr.USER_NAME),
            )
            metrics.authentications("reject", Reason.NOT_EAP.value, "none", "none").inc()
            return rp.encode_reply(Code.ACCESS_REJECT, request, secret, [])
        state = request.state
        conv: Conversation | None
        if state is not None:
            conv = self.conversations.get(state, now)
            if conv is None or conv.client != client.name:
                return self._reject_without_session(client, request, Reason.UNKNOWN_STATE,
                                                    transport)
        else:
            refusal = self.conversations.refusal(client.name)  # largest, or at its cap
            if refusal is not None:
                metrics.shed(client.name, refusal).inc()
                return self._reject_without_session(client, request, Reason.OVERLOADED, transport)
            account = self.buffers.account(client.name)
            session = EapTlsSession(
                self._context_for_session(),
                self._authorize,
                fragment_size=fragment_size_for(self.options.fragment_size, request.framed_mtu),
                max_round_trips=self.options.max_round_trips,
                now=self._wall(),
                name=client.name,
                buffers=account,
            )
            conv = Conversation(session, client.name, now, request.text(Attr.CALLING_STATION_ID),
                                buffers=account, transport=transport)
        try:
            result = conv.session.handle(eap_message, self._wall())
        except Exception:
            if state is not None:
                self.conversations.remove(state)
            conv.session.fail_timeout()  # gives its buffer budget back
            raise
        self._end_buffer_victims(now)
        if conv.outer_identity is None:
            conv.outer_identity = conv.session.identity
        if isinstance(result, Challenge):
            if state is None:
                try:
                    state, shed = self.conversations.add(conv, now, client.name,
                                                         conv.calling_station_id)
                except Overloaded:
                    metrics.shed(client.name, "refused").inc()
                    return self._reject_without_session(client, request, Reason.OVERLOADED,
                                                        transport)
                self._end_shed(shed, now)
                if conv.buffers is not None:
                    conv.buffers.key = state
                metrics.SESSIONS_ACTIVE.set(len(self.conversations))
            attrs = rp.eap_message_attributes(result.eap)
            attrs.append((Attr.STATE, state))
            return rp.encode_reply(Code.ACCESS_CHALLENGE, request, secret, attrs)
        if isinstance(result, Discard):
            metrics.dropped(client.name, DropReason.EAP_DISCARDED.value).inc()
            skipped = self._log_budget.allow((client.name, DropReason.EAP_DISCARDED.value), now)
            if skipped is not None:
                log.info("drop from client=%s reason=%s: %s%s", client.name,
                         DropReason.EAP_DISCARDED.value, result.detail,
                         suppressed_note(skipped))
            return None
        if state is not None:
            self.conversations.remove(state)
            metrics.SESSIONS_ACTIVE.set(len(self.conversations))
        if isinstance(result, Accept):
            return self._accept(client, request, conv, result, now)
        if result.reason is Reason.BUFFERS_FULL:
            metrics.shed(client.name, "buffer_refused").inc()
        return self._reject(client, request, conv, result, now)

    def _accept(
        self,
        client: RadiusClient,
        request: rp.Request,
        conv: Conversation,
        result: Accept,
        now: float,
    ) -> bytes:
        allow = result.allow
        attrs = rp.eap_message_attributes(result.eap)
        attrs += rp.mppe_key_attributes(result.keys.msk, client.secret, request.authenticator)
        attrs += accept_attributes(allow)  # the same list `certgate explain` shows
        out = rp.encode_reply(Code.ACCESS_ACCEPT, request, client.secret, attrs)
        if result.resumed:
            metrics.resumptions("resumed").inc()
        self._record_result(
            conv,
            "accept",
            Reason.QUARANTINED if allow.quarantined else Reason.OK,
            allow.group.name,
            result.tls_version,
            now,
            "",
            resumed=result.resumed,
            allow=allow,
        )
        if self._on_accept is not None:
            try:
                self._on_accept(client.name, request.attributes, allow, allow.serial)
            except Exception:
                log.exception("on_accept hook failed")
        return out

    def _reject(
        self,
        client: RadiusClient,
        request: rp.Request,
        conv: Conversation,
        result: Reject,
        now: float,
    ) -> bytes:
        if result.resumed:
            refused = "refused_revoked" if result.reason is Reason.REVOKED else "refused"
            metrics.resumptions(refused).inc()
        self._record_result(
            conv,
            "reject",
            result.reason,
            result.group,
            result.tls_version,
            now,
            result.detail,
            resumed=result.resumed,
        )
        attrs = rp.eap_message_attributes(result.eap)
        return rp.encode_reply(Code.ACCESS_REJECT, request, client.secret, attrs)

    def _reject_without_session(self, client: RadiusClient, request: rp.Request, reason: Reason,
                                transport: str = "udp") -> bytes:
        ident = 0
        eap_message = request.eap_message or b""
        if len(eap_message) >= 2:
            ident = eap_message[1]
        metrics.authentications("reject", reason.value, "none", "none").inc()
        if self._on_result is not None:
            self._observe(AuthResult(
                False, reason.value, client.name, None, None,
                request.text(Attr.CALLING_STATION_ID), request.text(Attr.USER_NAME), None, None,
                False, 0, 0.0, "", self._wall(), transport))
        log.info(
            "eap result=reject reason=%s client=%s calling_station=%s user=%r",
            reason.value,
            client.name,
            request.text(Attr.CALLING_STATION_ID),
            request.text(Attr.USER_NAME),
        )
        attrs = rp.eap_message_attributes(eap.failure(ident))
        return rp.encode_reply(Code.ACCESS_REJECT, request, client.secret, attrs)

    def _end_buffer_victims(self, now: float) -> None:
        """Conversations whose buffer budget another client's reservation took."""
        shed = []
        for account in self.buffers.take_shed():
            conv = self.conversations.remove(account.key) if account.key is not None else None
            if conv is not None:
                shed.append(Shed(conv, conv.client, "buffer_share"))
        if shed:
            self._end_shed(shed, now)
            metrics.SESSIONS_ACTIVE.set(len(self.conversations))

    def _end_shed(self, shed: list[Shed[Conversation]], now: float) -> None:
        """Conversations ended to make room or at their lifetime: failed, counted, logged
        (as rejected, reason overloaded, buffers_full or timeout) like any other end."""
        for item in shed:
            conv = item.value
            conv.session.fail_timeout()
            metrics.shed(item.client, item.why).inc()
            reason = _SHED_RESULT.get(item.why, Reason.OVERLOADED)
            self._record_result(conv, "reject", reason, None, conv.session.tls_version, now,
                                item.why)

    def _observe(self, result: AuthResult) -> None:
        assert self._on_result is not None
        try:
            self._on_result(result)
        except Exception:
            log.exception("on_result hook failed")

    def _record_result(
        self,
        conv: Conversation,
        result: str,
        reason: Reason,
        group: str | None,
        tls_version: str | None,
        now: float,
        detail: str,
        *,
        resumed: bool = False,
        allow: Allow | None = None,
    ) -> None:
        """Metrics and the per-auth INFO line (the audit trail: one per result).

        With ``allow`` the detail is ``identity=%r serial=%x session_timeout=%d`` of it,
        formatted by logging (lazily) rather than here.
        """
        duration = max(0.0, now - conv.started)
        metrics.authentications(result, reason.value, group or "none", tls_version or "none").inc()
        metrics.auth_duration(result).observe(duration)
        metrics.ROUND_TRIPS.observe(conv.session.round_trips)
        if self._on_result is not None:
            self._observe(AuthResult(
                result == "accept", reason.value, conv.client, group, tls_version,
                conv.calling_station_id, conv.outer_identity,
                allow.identity if allow is not None else None,
                allow.serial if allow is not None else None, resumed,
                conv.session.round_trips, duration * 1000, detail, self._wall(), conv.transport))
        if allow is not None:
            log.info(
                _ACCEPT_LINE,
                result,
                reason.value,
                conv.client,
                group or "-",
                tls_version or "-",
                resumed,
                conv.calling_station_id,
                conv.outer_identity,
                conv.session.round_trips,
                duration * 1000,
                allow.identity,
                allow.serial,
                allow.session_timeout,
            )
            return
        log.info(
            _RESULT_LINE,
            result,
            reason.value,
            conv.client,
            group or "-",
            tls_version or "-",
            resumed,
            conv.calling_station_id,
            conv.outer_identity,
            conv.session.round_trips,
            duration * 1000,
            detail,
        )
