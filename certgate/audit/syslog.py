"""`[audit] syslog`: the audit stream as RFC 5424 messages over UDP, TCP or TLS.

``emit`` only queues (bounded; a full queue drops the event and reports ``dropped``); a
task formats (certgate/audit/rfc5424.py) and sends. UDP: one datagram per event, at most
2048 octets (RFC 5426). TCP and TLS: octet-counted frames (RFC 6587 §3.4.1, RFC 5425),
at most 8192 octets per message; TLS 1.2 or later, the server verified against
``ca_file`` (or the system CAs) and the URL's host name. A broken stream is reconnected
with exponential backoff (0.5 s to 30 s); the event whose send failed, and events that
arrive while the server is unreachable and overflow the queue, are reported as
``error`` / ``dropped`` through ``on_drop`` (certgate_audit_events_total{sink="syslog"}),
sent ones as ``written``. Nothing is logged per message: one warning when the
destination starts failing (at most one a minute), one info line when it recovers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from certgate.audit import rfc5424
from certgate.errors import OperatorError

log = logging.getLogger("certgate.audit")

DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
CLOSE_DEADLINE_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 5.0
BACKOFF_MIN_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
WARN_INTERVAL_SECONDS = 60.0
# What on_drop / the metric is told (certgate.audit.emitter.RESULTS).
WRITTEN, DROPPED, ERROR = "written", "dropped", "error"


class SyslogURLError(OperatorError, ValueError):
    """A bad syslog URL, facility or CA file: the operator's to fix (exit 2, no traceback).

    A ValueError too, so a settings layer can report it as a config problem.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_url(url: str) -> Target:
    """udp://HOST[:514], tcp://HOST[:514], tls://HOST[:6514]; raises SyslogURLError."""
    expected = "expected udp://HOST[:PORT], tcp://HOST[:PORT] or tls://HOST[:PORT]"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise SyslogURLError(f"[audit] syslog {url!r}: {exc} ({expected})") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise SyslogURLError(f"[audit] syslog {url!r}: scheme {parts.scheme or '(none)'!r} "
                             f"is not udp, tcp or tls ({expected})")
    if not parts.hostname:
        raise SyslogURLError(f"[audit] syslog {url!r} has no host ({expected})")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise SyslogURLError(f"[audit] syslog {url!r}: only a host and a port are allowed ({expected})")
    if port == 0:
        raise SyslogURLError(f"[audit] syslog {url!r}: port 0 ({expected})")
    return Target(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme])


class SyslogSink:
    def __init__(self, url: str, *, ca_file: str | None = None, facility: str = "authpriv",
                 app_name: str = "certgate", hostname: str | None = None,
                 queue_size: int = 10000, on_drop: Callable[[str], None] | None = None,
                 sd_id: str = rfc5424.DEFAULT_SD_ID) -> None:
        self.target = parse_url(url)
        if facility not in rfc5424.FACILITIES:
            raise SyslogURLError(f"[audit] syslog_facility {facility!r} is not one of "
                                 f"{', '.join(rfc5424.FACILITIES)}")
        rfc5424.check_sd_id(sd_id)
        self._tls = _tls_context(ca_file) if self.target.scheme == "tls" else None
        self.ca_file = ca_file
        self.facility = facility
        self.app_name = app_name
        self.hostname = hostname or socket.gethostname()
        self.sd_id = sd_id
        self.queue_size = queue_size
        self.max_size = rfc5424.UDP_MAX_SIZE if self.target.scheme == "udp" \
            else rfc5424.STREAM_MAX_SIZE
        self._report = on_drop or (lambda result: None)
        self._queue: collections.deque[Mapping[str, Any]] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._reconnect = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._udp: socket.socket | None = None
        self._backoff = 0.0
        self._retry_at = 0.0
        self._failing = False
        self._last_warning = -WARN_INTERVAL_SECONDS

    def __repr__(self) -> str:
        return f"SyslogSink({str(self.target)!r})"

    # -- the emitter side: never blocks, never raises -----------------------------------

    def emit(self, event: Mapping[str, Any]) -> None:
        if self._closing or len(self._queue) >= self.queue_size:
            self._report(DROPPED)
            return
        self._queue.append(event)
        if self._wake is not None:
            self._wake.set()

    def reopen(self) -> None:
        """SIGHUP: reconnect a stream (the server's certificate or address may have changed)."""
        self._reconnect = True
        self._retry_at = 0.0
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-syslog")
        if self._queue:
            self._wake.set()

    async def aclose(self) -> None:
        self._closing = True
        if self._task is not None and self._wake is not None:
            self._retry_at = 0.0  # one last try now, bounded by the deadline
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_DEADLINE_SECONDS)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            if self._queue:
                log.warning("audit syslog %s: %d event(s) not sent at shutdown",
                            self.target, len(self._queue))
                for _ in range(len(self._queue)):
                    self._report(DROPPED)
                self._queue.clear()
        await self._disconnect()

    # -- the sender ----------------------------------------------------------------------

    def format(self, event: Mapping[str, Any]) -> bytes:
        """The message for one event (no framing); the time only if the event has none."""
        return rfc5424.format_message(
            event, facility=self.facility, hostname=self.hostname, app_name=self.app_name,
            procid=os.getpid(), sd_id=self.sd_id, max_size=self.max_size,
            now=dt.datetime.now(dt.UTC))

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue or (self._closing and self._retry_at > loop.time()):
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            delay = self._retry_at - loop.time()
            if delay > 0:  # backing off: sleep, but wake for reopen/close
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
                continue
            await self._send_some(loop)

    async def _send_some(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._reconnect:
            self._reconnect = False
            await self._disconnect()
        sent = 0
        while self._queue:
            try:
                await self._connect()  # cheap when connected; reconnects a stream the server closed
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                self._fail(loop, f"cannot connect: {_why(exc)}")
                return
            event = self._queue[0]
            try:
                data = self.format(event)
            except Exception as exc:  # noqa: BLE001 - a bad event must not stop the stream
                self._queue.popleft()
                self._report(ERROR)
                self._warn(f"event not formatted: {type(exc).__name__}")
                continue
            try:
                await self._send(data)
            except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
                self._queue.popleft()  # may or may not have reached the server: counted lost
                self._report(ERROR)
                await self._disconnect()
                self._fail(loop, f"send failed: {_why(exc)}")
                return
            self._queue.popleft()
            self._report(WRITTEN)
            if self._failing:
                self._failing = False
                log.info("audit syslog %s: sending again", self.target)
            self._backoff = 0.0
            sent += 1
            if sent % 64 == 0:
                await asyncio.sleep(0)  # a long backlog must not hold up the event loop

    async def _connect(self) -> None:
        t = self.target
        if t.scheme == "udp":
            if self._udp is None:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    t.host, t.port, type=socket.SOCK_DGRAM)
                fam, kind, proto, _, addr = infos[0]
                sock = socket.socket(fam, kind, proto)
                sock.setblocking(False)
                try:
                    sock.connect(addr)  # datagram "connect": fixes the peer, reports ICMP errors
                except OSError:
                    sock.close()
                    raise
                self._udp = sock
            return
        if self._writer is not None:
            if not (self._writer.is_closing() or (self._reader is not None
                                                 and self._reader.at_eof())):
                return
            await self._disconnect()  # the server closed it (idle timeout, restart)
        tls = self._tls
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(t.host, t.port, ssl=tls,
                                    server_hostname=t.host if tls else None),
            CONNECT_TIMEOUT_SECONDS)
        self._reader, self._writer = reader, writer

    async def _send(self, data: bytes) -> None:
        if self._udp is not None:
            await asyncio.get_running_loop().sock_sendall(self._udp, data)
            return
        assert self._writer is not None
        if self._writer.is_closing() or (self._reader is not None and self._reader.at_eof()):
            raise ConnectionError("connection closed by the server")
        self._writer.write(rfc5424.octet_counted(data))
        await asyncio.wait_for(self._writer.drain(), CONNECT_TIMEOUT_SECONDS)

    async def _disconnect(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _fail(self, loop: asyncio.AbstractEventLoop, why: str) -> None:
        self._backoff = min(BACKOFF_MAX_SECONDS, max(BACKOFF_MIN_SECONDS, self._backoff * 2))
        self._retry_at = loop.time() + self._backoff
        self._failing = True
        self._warn(f"{why} (retrying in {self._backoff:.1f} s; "
                   f"{len(self._queue)} event(s) queued)")

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARN_INTERVAL_SECONDS:
            self._last_warning = now
            log.warning("audit syslog %s: %s", self.target, text)


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """TLS 1.2+, the server verified against ca_file (or the system CAs) and its name."""
    try:
        tls = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise SyslogURLError(f"[audit] syslog_ca {ca_file}: no usable PEM CA certificate "
                             f"({getattr(exc, 'reason', None) or exc.strerror or exc}); "
                             f"give the CA bundle that issued the syslog server's "
                             f"certificate") from None
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    return tls


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not verified ({exc.verify_message})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
