"""`[server] workers = N`: a supervisor process and N worker processes on one host.

**Why a supervisor reads the RADIUS sockets.** Most NASes send every request from one
address and port. SO_REUSEPORT hashes the 4-tuple, so a whole site would land on one
worker, and an EAP-TLS conversation must stay on the worker holding its TLS state. So the
supervisor owns the bound UDP sockets (authentication and accounting), reads every datagram
and routes it (radius/dispatch.py): a State minted by a worker starts with that worker's
index; a request without State goes by a hash of (source address, port, Identifier,
Request Authenticator) — a retransmission (same bytes) reaches the worker whose duplicate
cache answers it, and new conversations from one port spread over all workers. The datagram
goes over an AF_UNIX datagram socketpair with the source address in front; the worker answers
with sendto() on the inherited UDP socket, so the reply leaves from the server port. Cost:
one recvfrom, a walk over the attribute headers, a crc32 and one send per datagram
(bench/README.md "workers"), against the milliseconds a TLS step costs in the worker.

**HTTP** (SCEP, OCSP, CRL, admin API, /metrics): the supervisor binds and listens once; every
worker accepts on the inherited socket.

**What workers share.** Each worker is a full `certgate serve` (certgate/worker.py): its own
store connection and change feed (revocations, holds and releases reach every worker within
the feed's wake-up, < 1 s; a SIGHUP is forwarded to every worker), its own EAP conversations
and duplicate cache. Only worker 0 sends CoA/Disconnect (one per session, not one per
worker), runs the MDM reconciler and serves RadSec.

**Metrics**: prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, a private
directory made here): any worker's /metrics sums the counters and histograms of all; each
gauge declares how it combines (certgate/metrics.py). The supervisor adds
`certgate_worker_restarts_total{worker}`, `certgate_worker_datagrams_total{worker}` and
`certgate_worker_undeliverable_total{reason}`.

**Lifecycle.** Worker 0 starts first (it migrates the store), then the others; a worker gets
new conversations once it reports ready. A worker that dies is restarted (its conversations
are lost: their devices start again) and counted; one that exits before it was ever ready
on the first start ends the supervisor with its exit code (a bad config is exit 2, as
without workers). SIGTERM/SIGINT: no new conversations are routed, the workers get SIGTERM
and finish the conversations in progress (certgate.worker.DRAIN_SECONDS), then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from certgate.errors import OperatorError
from certgate.settings import Settings
from certgate.worker import DRAIN_SECONDS, ENV_FDS, ENV_WORKER, READY
from radius.dispatch import ACCOUNTING, AUTH, frame, route
from radius.udp import bind_udp

log = logging.getLogger("certgate.workers")

DRAIN_BATCH = 64
MAX_DATAGRAM = 65535
SOCKET_BUFFER = 4 * 1024 * 1024
POLL_SECONDS = 0.2  # how often worker processes are checked for exit
RESTART_DELAY = (0.5, 10.0)  # first and largest delay before a restart (doubles per crash)
STABLE_SECONDS = 30.0  # a worker up this long resets its restart delay
STOP_GRACE = DRAIN_SECONDS + 15.0  # SIGTERM -> SIGKILL for a worker that does not exit


def supervise(settings: Settings) -> int:
    """`certgate serve` with workers > 1. Must run before prometheus_client is imported in
    this process, so the supervisor's own counters go to the shared directory too."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client imported before the multiprocess directory was set")
    mp_dir = tempfile.mkdtemp(prefix="certgate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = mp_dir
    try:
        return asyncio.run(Supervisor(settings).run())
    finally:
        shutil.rmtree(mp_dir, ignore_errors=True)


def _udp(host: str, port: int, what: str) -> socket.socket:
    try:
        return bind_udp(host, port)
    except OSError as exc:
        raise OperatorError(f"cannot bind RADIUS on {host}:{port} ({what}): {exc.strerror}"
                            ) from None


def _tcp(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OperatorError(f"cannot listen on {host}:{port} ([http] listen): {exc.strerror}"
                            ) from None
    return sock


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen | None = None
    channel: socket.socket | None = None
    ready: bool = False
    ever_ready: bool = False
    started: float = 0.0
    delay: float = RESTART_DELAY[0]
    restart_at: float | None = None


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        from prometheus_client import Counter  # after PROMETHEUS_MULTIPROC_DIR is set

        self.settings = settings
        self.count = settings.server.workers
        self.workers = [Worker(i) for i in range(self.count)]
        self.live = [False] * self.count
        self.stopping = False
        self.done = asyncio.Event()
        self.exit_code = 0
        self.restarts = Counter("certgate_worker_restarts_total",
                                "Worker processes restarted after they died", ["worker"])
        self.datagrams = Counter("certgate_worker_datagrams_total",
                                 "RADIUS datagrams the supervisor routed to each worker",
                                 ["worker"])
        self.undeliverable = Counter(
            "certgate_worker_undeliverable_total", "RADIUS datagrams the supervisor dropped: "
            "no live worker for it (no_worker: its worker is down, or shutting down) or the "
            "worker's channel full (queue_full)", ["reason"])
        for w in self.workers:
            self.restarts.labels(worker=str(w.index))
        # counted in plain ints per datagram, added to the (mmap-backed, locked) counters by
        # the watch loop every POLL_SECONDS: no locked mmap write per datagram
        self._sent = [0] * self.count
        self._dropped = {"no_worker": 0, "queue_full": 0}
        self._flushed = ([0] * self.count, dict.fromkeys(self._dropped, 0))
        self._flush()

    # --- sockets and processes -----------------------------------------------------------

    def _bind(self) -> None:
        r, http = self.settings.radius, self.settings.http
        self.auth = _udp(r.listen.host, r.listen.port, "[radius] listen")
        self.acct = None
        try:
            if r.acct_listen is not None:
                self.acct = _udp(r.acct_listen.host, r.acct_listen.port, "[radius] acct_listen")
            self.http = _tcp(http.listen.host, http.listen.port, 1024)
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        for sock in (getattr(self, "auth", None), getattr(self, "acct", None),
                     getattr(self, "http", None)):
            if sock is not None:
                sock.close()

    def _spawn(self, w: Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (ours, theirs):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        ours.setblocking(False)
        fds = [theirs.fileno(), self.auth.fileno(),
               self.acct.fileno() if self.acct is not None else -1, self.http.fileno()]
        env = dict(os.environ)
        env[ENV_WORKER] = f"{w.index}/{self.count}"
        env[ENV_FDS] = ",".join(str(fd) for fd in fds)
        cmd = [sys.executable, "-m", "certgate", "--config", str(self.settings.path), "serve"]
        w.proc = subprocess.Popen(cmd, env=env, pass_fds=[fd for fd in fds if fd >= 0])
        theirs.close()
        w.channel, w.ready, w.started, w.restart_at = ours, False, time.monotonic(), None
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_control, w)
        log.info("worker %d started: pid %d", w.index, w.proc.pid)

    def _on_control(self, w: Worker) -> None:
        channel = w.channel
        if channel is None:
            return
        while True:
            try:
                msg = channel.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if msg == READY and not w.ready:
                w.ready = w.ever_ready = True
                if not self.stopping:
                    self.live[w.index] = True
                log.info("worker %d ready (pid %d)", w.index, w.proc.pid if w.proc else -1)

    def _reaped(self, w: Worker, rc: int) -> None:
        from prometheus_client import multiprocess

        self.live[w.index] = False
        w.ready = False
        if w.channel is not None:
            asyncio.get_running_loop().remove_reader(w.channel.fileno())
            w.channel.close()
            w.channel = None
        pid = w.proc.pid if w.proc is not None else None
        w.proc = None
        if pid is not None:
            multiprocess.mark_process_dead(pid)  # its live* gauges leave the sums
        if self.stopping:
            log.info("worker %d (pid %s) exited: %d", w.index, pid, rc)
            return
        if not w.ever_ready:
            log.error("worker %d (pid %s) exited with %d before it was ready; stopping",
                      w.index, pid, rc)
            self.exit_code = rc if rc > 0 else 1
            self.begin_stop()
            return
        now = time.monotonic()
        if now - w.started >= STABLE_SECONDS:
            w.delay = RESTART_DELAY[0]
        log.error("worker %d (pid %s) died (exit %d); restarting in %.1f s",
                  w.index, pid, rc, w.delay)
        self.restarts.labels(worker=str(w.index)).inc()
        w.restart_at = now + w.delay
        w.delay = min(RESTART_DELAY[1], w.delay * 2)

    def _flush(self) -> None:
        sent, dropped = self._flushed
        for i, n in enumerate(self._sent):
            self.datagrams.labels(worker=str(i)).inc(n - sent[i])
            sent[i] = n
        for reason, n in self._dropped.items():
            self.undeliverable.labels(reason=reason).inc(n - dropped[reason])
            dropped[reason] = n

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self._flush()
            now = time.monotonic()
            for w in self.workers:
                if w.proc is not None:
                    rc = w.proc.poll()
                    if rc is not None:
                        self._reaped(w, rc)
                elif w.restart_at is not None and now >= w.restart_at and not self.stopping:
                    self._spawn(w)
            if self.stopping and all(w.proc is None for w in self.workers):
                self.done.set()
                return

    # --- datagrams -----------------------------------------------------------------------

    def _dispatch(self, sock: socket.socket, channel: int) -> None:
        live, workers, sent = self.live, self.workers, self._sent
        new = not self.stopping
        for _ in range(DRAIN_BATCH):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable reported on Linux
                continue
            index = route(data, addr[0], addr[1], live, new)
            target = workers[index].channel if index is not None else None
            if target is None:
                self._dropped["no_worker"] += 1
                continue
            try:
                target.send(frame(channel, addr[0], addr[1], data))
            except OSError:  # EAGAIN: the worker is that far behind; the NAS retransmits
                self._dropped["queue_full"] += 1
                continue
            sent[index] += 1

    # --- run -----------------------------------------------------------------------------

    def begin_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("stopping: draining %d worker(s)", sum(w.proc is not None for w in self.workers))
        for w in self.workers:
            w.restart_at = None
            if w.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)
        asyncio.get_running_loop().call_later(STOP_GRACE, self._kill_rest)

    def _kill_rest(self) -> None:
        for w in self.workers:
            if w.proc is not None:
                log.error("worker %d (pid %d) did not stop in %.0f s: killed", w.index,
                          w.proc.pid, STOP_GRACE)
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()

    def _forward(self, sig: signal.Signals) -> None:
        for w in self.workers:
            if w.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(sig)

    async def _start_workers(self) -> None:
        first = self.workers[0]
        self._spawn(first)  # alone first: it migrates the store and persists the CRLs
        while not first.ever_ready and not self.stopping:
            await asyncio.sleep(0.05)
        if not self.stopping:
            for w in self.workers[1:]:
                self._spawn(w)

    async def run(self) -> int:
        from certgate.logs import setup_logging

        setup_logging(self.settings.server.log_format, self.settings.server.log_level)
        self._bind()
        loop = asyncio.get_running_loop()
        loop.add_reader(self.auth.fileno(), self._dispatch, self.auth, AUTH)
        if self.acct is not None:
            loop.add_reader(self.acct.fileno(), self._dispatch, self.acct, ACCOUNTING)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.begin_stop)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        log.info("supervisor pid %d: %d workers; RADIUS %s, HTTP %s", os.getpid(), self.count,
                 self.settings.radius.listen, self.settings.http.listen)
        watch = asyncio.create_task(self._watch(), name="workers-watch")
        starting = asyncio.create_task(self._start_workers(), name="workers-start")
        await self.done.wait()
        starting.cancel()
        watch.cancel()
        for task in (starting, watch):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        loop.remove_reader(self.auth.fileno())
        if self.acct is not None:
            loop.remove_reader(self.acct.fileno())
        self._close()
        log.info("supervisor stopped")
        return self.exit_code
