"""A hostile NAS for tests and measurements: many EAP conversations at once over UDP.

Each conversation sends an EAP-Response/Identity (correct Message-Authenticator, its own
Calling-Station-Id) and, with ``buffer_bytes``, then announces a 64 KiB TLS message and
sends fragments of it without ever finishing: the half-open, memory-holding conversation
of issue #10. Requests are pipelined (a window per socket, matched by RADIUS Identifier);
a request unanswered for ``timeout`` seconds ends its conversation as ``lost``.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

from radius import eap
from radius import packet as rp
from radius.fragments import FLAG_MORE, build_payload
from radius.packet import Attr, Code

ANNOUNCED = 65536
CHUNK = 3700  # TLS bytes per Access-Request (the whole request stays under 4096 bytes)


@dataclass
class _Conversation:
    station: bytes
    state: bytes | None = None
    eap_id: int = 0
    sent: int = 0  # TLS bytes sent so far


@dataclass
class FloodResult:
    outcomes: Counter = field(default_factory=Counter)  # "open", "reject", "lost"
    requests: int = 0
    seconds: float = 0.0


def flood(server: tuple[str, int], secret: bytes, conversations: int, *, source: str,
          buffer_bytes: int = 0, client_hello: bytes = b"", sockets: int = 4,
          window: int = 200, timeout: float = 2.0, station_prefix: int = 0x02) -> FloodResult:
    """Open ``conversations`` conversations from address ``source``; return the outcomes.

    With ``buffer_bytes`` each conversation keeps sending fragments until that many TLS
    bytes are buffered at the server (< ANNOUNCED, so it never completes). With
    ``client_hello`` each sends that one TLS message instead (the server then holds a
    TLS handshake half done)."""
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((source, 0))
        s.setblocking(False)
        socks.append(s)
    result = FloodResult()
    todo = list(range(conversations))
    todo.reverse()
    # per socket: identifier -> (conversation, request authenticator, sent at)
    pending: list[dict[int, tuple[_Conversation, bytes, float]]] = [{} for _ in socks]
    ready: list[_Conversation] = []  # got a reply, next request due
    next_id = [0] * len(socks)
    start = time.monotonic()

    def send(i: int, conv: _Conversation) -> None:
        if conv.state is None:
            eap_message = eap.response(1, eap.EapType.IDENTITY, b"flood@example.test")
        elif client_hello:
            conv.sent = 1
            eap_message = eap.response(conv.eap_id, eap.EapType.TLS, build_payload(0, client_hello))
        else:
            first = conv.sent == 0
            n = min(CHUNK, buffer_bytes - conv.sent)
            payload = build_payload(FLAG_MORE, b"\x16" * n, ANNOUNCED if first else None)
            conv.sent += n
            eap_message = eap.response(conv.eap_id, eap.EapType.TLS, payload)
        attrs = [(Attr.CALLING_STATION_ID, conv.station),
                 *rp.eap_message_attributes(eap_message)]
        if conv.state is not None:
            attrs.append((Attr.STATE, conv.state))
        ident = next_id[i]
        while ident in pending[i]:
            ident = (ident + 1) & 0xFF
        next_id[i] = (ident + 1) & 0xFF
        auth = os.urandom(16)
        socks[i].sendto(rp.encode_access_request(ident, auth, secret, attrs), server)
        pending[i][ident] = (conv, auth, time.monotonic())
        result.requests += 1

    try:
        while todo or ready or any(pending):
            for i in range(len(socks)):
                while len(pending[i]) < window and (ready or todo):
                    if ready:
                        conv = ready.pop()
                    else:
                        n = todo.pop()
                        conv = _Conversation(
                            f"{station_prefix:02x}-{n >> 16 & 255:02x}-{n >> 8 & 255:02x}-"
                            f"{n & 255:02x}-00-01".encode())
                    send(i, conv)
            readable, _, _ = select.select(socks, [], [], 0.05)
            for s in readable:
                i = socks.index(s)
                while True:
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        break
                    entry = pending[i].pop(data[1], None) if len(data) > 1 else None
                    if entry is None:
                        continue
                    conv, auth, _ = entry
                    reply = rp.decode_reply(data, secret, auth)
                    if reply.code != Code.ACCESS_CHALLENGE or reply.eap_message is None:
                        result.outcomes["reject"] += 1
                        continue
                    conv.state = reply.get(Attr.STATE)
                    conv.eap_id = reply.eap_message[1]
                    if conv.sent < buffer_bytes or (client_hello and conv.sent == 0):
                        ready.append(conv)
                    else:
                        result.outcomes["open"] += 1
            now = time.monotonic()
            for p in pending:
                for ident in [k for k, (_, _, at) in p.items() if now - at > timeout]:
                    del p[ident]
                    result.outcomes["lost"] += 1
    finally:
        for s in socks:
            s.close()
    result.seconds = time.monotonic() - start
    return result


def client_hello() -> bytes:
    """A real TLS ClientHello (stdlib ssl over memory BIOs), to replay."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")
