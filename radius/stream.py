"""RADIUS packets out of a TCP byte stream (RFC 6614 §2.5, RFC 6613 §2.4): the pure core of
the RadSec transport.

Over TLS there are no datagrams: a packet is as long as its header's Length field says, and
the next one starts right after it. A Length below 20 or above 4096 cannot be skipped (the
stream has no other way to find the next packet), so it ends the connection (RFC 6613 §2.6.1:
"the connection MUST be closed"). No I/O here: bytes in, whole packets or a typed error out.

Budgets, per connection:

* bytes held: at most one unfinished packet (< 4096 bytes) plus what one read brought; the
  shell reads ``max_read`` bytes at a time, so ``buffered`` stays under
  ``MAX_LENGTH + max_read``;
* requests in flight: ``InFlight`` counts the requests handed on and not yet answered; at
  ``limit`` the shell stops reading (TCP flow control then pushes back on the NAS) rather
  than dropping what the NAS has already sent and will not retransmit (RFC 6613 §2.6.2: a
  client over TCP does not retransmit on the same connection).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import StrEnum

MIN_LENGTH = 20
MAX_LENGTH = 4096
_HEADER = struct.Struct("!BBH")


class StreamError(StrEnum):
    """Why a RadSec connection was closed by the framing: a ``reason`` label."""

    BAD_LENGTH = "bad_length"


class FramingError(Exception):
    """The stream cannot be framed any further: close the connection."""

    def __init__(self, reason: StreamError, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Framer:
    """Splits a byte stream into RADIUS packets (each returned whole, header included)."""

    max_length: int = MAX_LENGTH
    _buf: bytearray = field(default_factory=bytearray)
    packets: int = 0  # whole packets framed so far
    failed: bool = False

    @property
    def buffered(self) -> int:
        """Bytes held for the next, unfinished packet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every packet it completes, in order. After a FramingError
        the framer refuses everything (the connection is over)."""
        if self.failed:
            raise FramingError(StreamError.BAD_LENGTH, "stream already failed")
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:  # code, identifier, length
            _, _, length = _HEADER.unpack_from(buf, pos)
            if not MIN_LENGTH <= length <= self.max_length:
                self.failed = True
                self._buf = bytearray()
                raise FramingError(StreamError.BAD_LENGTH,
                                   f"Length field {length} (packet {self.packets + len(out) + 1})")
            if end - pos < length:
                break
            out.append(bytes(buf[pos:pos + length]))
            pos += length
        if pos:
            del buf[:pos]
        self.packets += len(out)
        return out


@dataclass(slots=True)
class InFlight:
    """Requests of one connection handed on and not answered yet (``limit`` at most)."""

    limit: int
    count: int = 0
    peak: int = 0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("in-flight limit must be >= 1")

    @property
    def full(self) -> bool:
        """True: stop reading until one is answered."""
        return self.count >= self.limit

    def begin(self) -> None:
        if self.full:
            raise RuntimeError("in-flight limit reached: the caller must stop reading first")
        self.count += 1
        self.peak = max(self.peak, self.count)

    def end(self) -> None:
        if self.count <= 0:
            raise RuntimeError("end() without begin()")
        self.count -= 1
