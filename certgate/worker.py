"""The worker side of `[server] workers = N` (the supervisor is certgate/workers.py).

A worker is an ordinary `certgate serve` started by the supervisor with ``CERTGATE_WORKER``
= "index/count" and ``CERTGATE_WORKER_FDS`` naming the descriptors it inherited: its end of
the channel (an AF_UNIX datagram socketpair), the bound RADIUS authentication and accounting
UDP sockets, and the listening HTTP socket. It never reads the UDP sockets: the supervisor
routes each datagram to one worker over the channel (radius/dispatch.py), the worker answers
with sendto() on the shared socket, so a NAS sees the reply come from the server port.
HTTP connections are accepted by whichever worker's accept() the kernel wakes.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from radius.dispatch import ACCOUNTING, AUTH, unframe

if TYPE_CHECKING:  # the supervisor imports this module before prometheus_client may be
    from radius.accounting import AccountingServer
    from radius.server import RadiusServer

log = logging.getLogger("certgate.workers")

ENV_WORKER = "CERTGATE_WORKER"
ENV_FDS = "CERTGATE_WORKER_FDS"
READY = b"ready"  # worker -> supervisor: start routing new conversations here
FRAME_MAX = 65535 + 64
DRAIN_BATCH = 64
#: How long SIGTERM waits for EAP conversations in progress (a full EAP-TLS exchange takes
#: well under a second; a NAS retransmits after 3-5 s, so this covers one retransmission).
DRAIN_SECONDS = 8.0
_PR_SET_PDEATHSIG = 1


@dataclass
class WorkerContext:
    index: int
    count: int
    channel: socket.socket
    auth: socket.socket
    acct: socket.socket | None
    http: socket.socket

    @classmethod
    def from_env(cls) -> WorkerContext | None:
        spec = os.environ.get(ENV_WORKER)
        if not spec:
            return None
        index, count = (int(v) for v in spec.split("/"))
        fds = [int(v) for v in os.environ[ENV_FDS].split(",")]
        channel = socket.socket(fileno=fds[0])
        channel.setblocking(False)
        auth = socket.socket(fileno=fds[1])
        auth.setblocking(False)
        acct = socket.socket(fileno=fds[2]) if fds[2] >= 0 else None
        if acct is not None:
            acct.setblocking(False)
        http = socket.socket(fileno=fds[3])
        _die_with_parent()
        return cls(index, count, channel, auth, acct, http)

    @property
    def primary(self) -> bool:
        """Worker 0 does what must happen once per host: CoA/Disconnect (every worker follows
        the same change feed and would otherwise send one each per session), the MDM
        reconciler, the RadSec listener."""
        return self.index == 0

    def attach(self, radius: RadiusServer, accounting: AccountingServer | None,
               on_lost: Callable[[], None]) -> None:
        """Start handling the frames the supervisor routes here."""
        loop = asyncio.get_running_loop()
        self._radius, self._accounting, self._on_lost = radius, accounting, on_lost
        loop.add_reader(self.channel.fileno(), self._on_frames)

    def detach(self) -> None:
        asyncio.get_running_loop().remove_reader(self.channel.fileno())

    def ready(self) -> None:
        self.channel.send(READY)

    def _on_frames(self) -> None:
        for _ in range(DRAIN_BATCH):
            try:
                buf = self.channel.recv(FRAME_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the supervisor is gone
                log.error("worker %d: channel to the supervisor failed: %s", self.index, exc)
                self.detach()
                self._on_lost()
                return
            try:
                channel, host, port, data = unframe(buf)
            except ValueError as exc:
                log.warning("worker %d: bad frame from the supervisor: %s", self.index, exc)
                continue
            if channel == AUTH:
                self._radius.answer(data, (host, port))
            elif channel == ACCOUNTING and self._accounting is not None:
                self._accounting.datagram_received(data, (host, port))


def worker_index() -> int | None:
    """This process's worker index, None outside `[server] workers` > 1 (for log lines)."""
    spec = os.environ.get(ENV_WORKER)
    return int(spec.split("/")[0]) if spec else None


def _die_with_parent() -> None:
    """SIGTERM this worker when the supervisor dies (even by SIGKILL): no orphan keeps the
    HTTP port while a new supervisor cannot bind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
