"""The RADIUS UDP socket, bound the same way by the server and by the workers' supervisor.

Imports nothing that registers metrics: the supervisor (certgate/workers.py) must bind before
prometheus_client is imported in its process.
"""

from __future__ import annotations

import contextlib
import socket

RECEIVE_BUFFER = 4 * 1024 * 1024  # a burst of datagrams waits in the kernel, not dropped


def bind_udp(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port`` (an IPv6 address also takes IPv4,
    where the OS allows it), with a large receive buffer. No SO_REUSEPORT: a second
    instance on the same port must fail loudly. OSError when it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock
