"""The HTTP listener's budgets: connections (total and per client address), idle and
header time, whole-request time.

aiohttp bounds header sizes but not how many connections a client may hold or how long one
may sit idle (its keep-alive default is an hour). Here:

* every accepted connection goes through `GuardedFactory`, which counts it per client
  address. At `max_connections` (or a client's `max_connections_per_client`) the oldest
  *idle* connection (no request in progress) — of that client first — is closed to make
  room, so a well-behaved client still gets in while one address hoards idle sockets; only
  when every held connection is busy is the newcomer refused, and refused with an answer:
  its request is read (within the same header budget) and answered 503 + Retry-After,
  Connection: close (`refused_busy`), so an enrolling device in a storm retries instead of
  seeing a reset. Those answers have their own small pool (`max_connections` / 16, at least
  8); beyond it a newcomer is closed unanswered (`closed_busy`). Counted by reason.
* `keepalive_timeout` (aiohttp's; armed from the first byte of a connection, and in aiohttp
  ≥ 3.14 also before the first request) closes a connection that has not completed a
  request's headers within `idle_timeout`: idle keep-alives and slowloris alike.
* `request_timeout` (a middleware) bounds reading the body and answering: 408, never a
  handler hanging on a trickled body.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import Counter, Gauge

log = logging.getLogger("certgate.http")

CONNECTIONS = Gauge("certgate_http_connections", "Open HTTP connections", multiprocess_mode="livesum")
SHED = Counter("certgate_http_connections_shed_total",
               "HTTP connections closed or refused to stay within the connection budget",
               ["reason"])
SHED_REASONS = ("evicted_idle", "refused_busy", "closed_busy", "request_timeout")
BUSY_RETRY_AFTER = "5"
# aiohttp handlers of refused connections (any guard of this process): their request is
# answered 503 by `refused_connections`; removed when the connection ends
_REFUSING: set[Any] = set()
for _reason in SHED_REASONS:
    SHED.labels(reason=_reason)


class LineBudget:
    """At most one log line per `interval` seconds; the next line says how many were held
    back. Shared by every rate-limited line of this module."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last = -interval
        self._held = 0

    def take(self) -> str | None:
        """The suffix for a line that may be written now ("" or " (N more …)"), or None
        (this one is held back and counted)."""
        now = time.monotonic()
        if now - self._last < self.interval:
            self._held += 1
            return None
        suffix = f" ({self._held} more since the last line)" if self._held else ""
        self._last, self._held = now, 0
        return suffix


class _Guarded(asyncio.Protocol):
    """Forwards everything to aiohttp's handler; tells the guard when the connection ends."""

    def __init__(self, guard: GuardedFactory, inner: Any) -> None:
        self.guard = guard
        self.inner = inner
        self.peer = "?"
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else "?"
        if not self.guard.admit(self) and not self.guard.refuse_with_answer(self):
            transport.close()
            return
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        if self.inner in _REFUSING:
            _REFUSING.discard(self.inner)
            self.guard.refusing -= 1
        if self.inner.transport is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    @property
    def busy(self) -> bool:
        """A request is being read or answered (aiohttp's handler state)."""
        return bool(getattr(self.inner, "_request_in_progress", False))


class GuardedFactory:
    """The protocol factory given to `loop.create_server` in place of aiohttp's server."""

    def __init__(self, server: Callable[[], Any], max_connections: int,
                 max_per_client: int) -> None:
        self.server = server
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self._open: OrderedDict[_Guarded, None] = OrderedDict()  # oldest first
        self._per_client: dict[str, int] = {}
        self._refusals = LineBudget()
        self.refusing = 0  # refused connections being answered 503
        self.max_refusing = max(8, max_connections // 16)

    def __call__(self) -> _Guarded:
        return _Guarded(self, self.server())

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: _Guarded) -> bool:
        own = self._per_client.get(conn.peer, 0)
        if own >= self.max_per_client and not self._evict(conn.peer):
            return self._refuse(conn, f"client {conn.peer} holds {own} busy connections")
        if len(self._open) >= self.max_connections and not self._evict(conn.peer) \
                and not self._evict(None):
            return self._refuse(conn, f"{len(self._open)} busy connections")
        self._open[conn] = None
        self._per_client[conn.peer] = self._per_client.get(conn.peer, 0) + 1
        CONNECTIONS.set(len(self._open))
        return True

    def release(self, conn: _Guarded) -> None:
        if conn in self._open:  # admitted, not yet released (eviction releases early)
            del self._open[conn]
            left = self._per_client.get(conn.peer, 1) - 1
            if left > 0:
                self._per_client[conn.peer] = left
            else:
                self._per_client.pop(conn.peer, None)
            CONNECTIONS.set(len(self._open))

    def evict_idle(self) -> bool:
        """Close the oldest idle connection of anyone (file descriptors ran out)."""
        return self._evict(None)

    def _evict(self, peer: str | None) -> bool:
        """Close the oldest idle connection (of `peer`, or of anyone)."""
        for victim in self._open:
            if (peer is None or victim.peer == peer) and not victim.busy:
                self.release(victim)
                if victim.transport is not None:
                    victim.transport.close()
                SHED.labels(reason="evicted_idle").inc()
                return True
        return False

    def _refuse(self, conn: _Guarded, why: str) -> bool:
        more = self._refusals.take()
        if more is not None:
            log.warning("HTTP connection from %s refused (503, Retry-After %s): %s%s",
                        conn.peer, BUSY_RETRY_AFTER, why, more)
        return False

    def refuse_with_answer(self, conn: _Guarded) -> bool:
        """A refused connection is still served one 503 if the refusal pool has room."""
        if self.refusing >= self.max_refusing:
            SHED.labels(reason="closed_busy").inc()
            return False
        SHED.labels(reason="refused_busy").inc()
        self.refusing += 1
        _REFUSING.add(conn.inner)
        return True


@web.middleware
async def refused_connections(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """First in the chain: a request on a connection the guard refused gets 503 +
    Retry-After and the connection closes; nothing else runs for it."""
    if request.protocol in _REFUSING:
        busy = web.Response(status=503, text="server busy (connection budget), retry\n",
                            headers={"Retry-After": BUSY_RETRY_AFTER})
        busy.force_close()
        return busy
    return await handler(request)


class GuardedSite(web.TCPSite):
    """`web.TCPSite` whose connections go through a `GuardedFactory`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, max_connections: int,
                 max_per_client: int, sock: socket.socket | None = None) -> None:
        super().__init__(runner, host, port)
        self.sock = sock  # a listening socket inherited from the supervisor (workers > 1)
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.guard: GuardedFactory | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self.guard = GuardedFactory(server, self.max_connections, self.max_per_client)
        loop = asyncio.get_running_loop()
        if self.sock is not None:
            self._server = await loop.create_server(self.guard, sock=self.sock,
                                                    backlog=self._backlog)
            return
        self._server = await loop.create_server(
            self.guard, self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)


def request_timeout(seconds: float):  # type: ignore[no-untyped-def]
    """Middleware: a request (body read and answer) that takes longer than `seconds` is a
    408 and its connection closed; a body the client mis-encoded (e.g. `Content-Encoding:
    gzip` over bytes that are not gzip, a broken chunked stream) is a 400, not a 500; a client
    that disconnects mid-body ends its request quietly (aiohttp would log a traceback)."""

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        try:
            async with asyncio.timeout(seconds):
                return await handler(request)
        except TimeoutError:
            SHED.labels(reason="request_timeout").inc()
            return web.Response(status=408, text=f"request took longer than {seconds:g} s\n",
                                headers={"Connection": "close"})
        except (RequestPayloadError, HttpProcessingError) as exc:
            cause = exc.__cause__ or exc
            return web.Response(status=400, text=f"unreadable request body: "
                                f"{type(cause).__name__}\n", headers={"Connection": "close"})
        except ConnectionResetError:  # the client left mid-body: no one to answer, no traceback
            gone = web.Response(status=400, text="connection lost while reading the request\n")
            gone.force_close()
            return gone

    return middleware


class ClientFaultLines(logging.Filter):
    """aiohttp logs a malformed request (bad request line, header, encoding: the client's
    fault, already answered 400) at ERROR with a traceback. Make it one INFO line, at most
    one per `interval` s; aiohttp's own bugs ("Unhandled exception") keep their traceback."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self._lines = LineBudget(interval)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError | RequestPayloadError):
            return True
        more = self._lines.take()
        if more is None:
            return False
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}{more}"
        record.args = None
        record.exc_info = record.exc_text = None
        return True


logging.getLogger("aiohttp.server").addFilter(ClientFaultLines())


class AcceptFailures:
    """Loop exception handler for "socket.accept() out of system resource" (EMFILE and
    friends): asyncio logs a traceback for each and retries a second later. Instead: one
    rate-limited line, and the oldest idle HTTP connections are closed so the next accept
    (a probe, a CRL fetch) finds a descriptor. Anything else goes to the default handler."""

    def __init__(self, guards: Callable[[], list[GuardedFactory]], interval: float = 10.0,
                 free: int = 16) -> None:
        self.guards = guards
        self.free = free
        self._lines = LineBudget(interval)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != "socket.accept() out of system resource":
            loop.default_exception_handler(context)
            return
        freed = 0
        for guard in self.guards():
            while freed < self.free and guard.evict_idle():
                freed += 1
        more = self._lines.take()
        if more is not None:
            log.warning("accept failed: %s; closed %d idle HTTP connection(s); raise "
                        "LimitNOFILE or lower [http] max_connections%s",
                        context.get("exception"), freed, more)
