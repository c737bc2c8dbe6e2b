"""Which worker process gets a RADIUS datagram (`[server] workers = N`): the pure decision.

The supervisor process owns the UDP sockets and reads every datagram; this module decides,
from the bytes and the source address alone, which worker handles it. Three rules:

1. **A conversation stays on its worker.** Every State a worker mints starts with that
   worker's index (`tagged_token`), so an Access-Request carrying a State goes to the worker
   holding that EAP-TLS conversation. The State is found by a bounded walk over the attribute
   headers (`find_state`): no decoding, no authenticator check (the worker does those).
2. **A retransmission goes where the original went.** A request without State is routed by
   a hash of (source address, source port, Identifier, Request Authenticator): the identical
   bytes of a retransmission hash the same, so they reach the worker whose duplicate cache
   answers them with the cached reply.
3. **One NAS spreads over every worker.** Most controllers send everything from one address
   and port; new conversations differ in Identifier and Authenticator (16 random bytes), so
   they spread evenly — which plain SO_REUSEPORT (a hash of the 4-tuple) cannot do.

A worker that is down or not ready yet takes no new conversation: rule 2 moves on to the
next live worker (`route`). Its own conversations are lost with it (their State is unknown
to every other worker, which rejects it as unknown_state; the device starts again).

Frames between the supervisor and a worker (`frame` / `unframe`) carry the channel (0 auth,
1 accounting) and the source address in front of the datagram; the worker answers with
sendto() on the inherited UDP socket itself, so the reply leaves from the server port.
"""

from __future__ import annotations

import secrets
import struct
import zlib
from collections.abc import Callable, Sequence

HEADER = 20  # Code, Identifier, Length, Authenticator
STATE = 24  # RFC 2865 State
MAX_WALK = 256  # attributes looked at before giving up (a 4096-byte packet holds < 1366)

AUTH, ACCOUNTING = 0, 1  # frame channels


def find_state(data: bytes) -> bytes | None:
    """The first State attribute's value, or None (also for a malformed walk: the worker
    that gets it drops it with the precise reason)."""
    end = min(len(data), int.from_bytes(data[2:4]) if len(data) >= 4 else 0)
    pos = HEADER
    for _ in range(MAX_WALK):
        if pos + 2 > end:
            return None
        length = data[pos + 1]
        if length < 2 or pos + length > end:
            return None
        if data[pos] == STATE:
            return data[pos + 2:pos + length]
        pos += length
    return None


def flow_hash(data: bytes, host: str, port: int) -> int:
    """Stable across processes and runs (not Python's salted hash())."""
    return zlib.crc32(data[:HEADER], zlib.crc32(f"{host}|{port}".encode()))


def route(data: bytes, host: str, port: int, live: Sequence[bool],
          new_conversations: bool = True) -> int | None:
    """The worker index for this datagram, or None (drop it).

    ``live[i]``: worker i is up and ready. ``new_conversations`` False (shutting down): only
    datagrams of a conversation a live worker holds are routed, so in-flight conversations
    finish while no new one starts."""
    n = len(live)
    state = find_state(data)
    if state:
        index = state[0]
        if index < n:
            return index if live[index] else None
    if not new_conversations:
        return None
    first = flow_hash(data, host, port) % n
    for k in range(n):
        index = (first + k) % n
        if live[index]:
            return index
    return None


def tagged_token(index: int, token: Callable[[int], bytes] = secrets.token_bytes
                 ) -> Callable[[int], bytes]:
    """A State generator whose tokens start with the worker index (rule 1)."""
    if not 0 <= index < 256:
        raise ValueError(f"worker index {index} does not fit the State's first byte")
    tag = bytes([index])

    def make(length: int) -> bytes:
        return tag + token(length - 1)

    return make


_PORT = struct.Struct("!BHB")  # channel, port, length of the host text


def frame(channel: int, host: str, port: int, data: bytes) -> bytes:
    text = host.encode()
    return _PORT.pack(channel, port, len(text)) + text + data


def unframe(buf: bytes) -> tuple[int, str, int, bytes]:
    """(channel, host, port, datagram); ValueError for a frame that is not one."""
    if len(buf) < _PORT.size:
        raise ValueError("short frame")
    channel, port, hlen = _PORT.unpack_from(buf)
    start = _PORT.size + hlen
    if len(buf) < start:
        raise ValueError("truncated frame")
    return channel, buf[_PORT.size:start].decode(), port, buf[start:]
