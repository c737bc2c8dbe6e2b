"""EAP-TLS framing: flags, reassembly and fragmentation (RFC 5216 §2.1.5, §3.1).

Pure. Two small machines, after hostapd's ``struct eap_ssl_data``:

* ``Reassembler`` collects peer fragments (L/M bits), bounded to 64 KiB and charged to
  the shared buffer budget, and says when an ACK is due (the FRAG_ACK case) or the
  message is complete;
* ``Fragmenter`` cuts our outgoing TLS bytes into fragments and waits for the peer's
  ACK before each next one (WAIT_FRAG_ACK).

Errors are the peer's fault and raise ``FragmentError``; the session turns them into an
EAP-Failure with reason ``malformed_eap``.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radius.buffers import BufferAccount

log = logging.getLogger(__name__)

FLAG_LENGTH = 0x80  # L: 4-byte TLS Message Length follows
FLAG_MORE = 0x40  # M: more fragments follow
FLAG_START = 0x20  # S: EAP-TLS start (server -> peer only)
MAX_MESSAGE = 65536  # largest reassembled TLS message we accept
EAP_TLS_OVERHEAD = 10  # EAP header 4 + type 1 + flags 1 + TLS Message Length 4


class FragmentError(Exception):
    """Peer violated EAP-TLS framing."""


class BufferRefused(FragmentError):
    """The buffer budget has no room for this reassembly (our limit, not the peer's fault)."""


@dataclass(frozen=True, slots=True)
class TlsPayload:
    flags: int
    total_length: int | None
    data: bytes

    @property
    def more(self) -> bool:
        return bool(self.flags & FLAG_MORE)

    @property
    def is_ack(self) -> bool:
        """An empty EAP-TLS response: flags octet (no L/M) and no data."""
        return not self.data and not self.flags & (FLAG_LENGTH | FLAG_MORE)


def parse_payload(type_data: bytes) -> TlsPayload:
    """Parse the bytes after the EAP type octet of an EAP-TLS packet."""
    if not type_data:
        raise FragmentError("EAP-TLS packet without flags octet")
    flags = type_data[0]
    if flags & FLAG_LENGTH:
        if len(type_data) < 5:
            raise FragmentError("L bit without TLS Message Length")
        (total,) = struct.unpack_from("!I", type_data, 1)
        return TlsPayload(flags, total, bytes(type_data[5:]))
    return TlsPayload(flags, None, bytes(type_data[1:]))


def build_payload(flags: int, data: bytes = b"", total_length: int | None = None) -> bytes:
    if total_length is not None:
        return struct.pack("!BI", flags | FLAG_LENGTH, total_length) + data
    return bytes((flags,)) + data


def fragment_size_for(configured: int, framed_mtu: int | None) -> int:
    """Fragment size lowered to fit the supplicant link (RFC 5216 §2.1.5, E6)."""
    if framed_mtu is not None and framed_mtu > 100:
        return max(64, min(configured, framed_mtu - EAP_TLS_OVERHEAD))
    return configured


class Reassembler:
    """Collects one TLS message from peer fragments.

    With an ``account`` (radius.buffers), a message spanning fragments reserves its
    announced length before the first is buffered (``BufferRefused`` when there is no
    room) and gives it back when it completes or fails.
    """

    def __init__(self, max_message: int = MAX_MESSAGE, account: BufferAccount | None = None
                 ) -> None:
        self._max = max_message
        self._account = account
        self._reserved = 0
        self._buf = bytearray()
        self._expected: int | None = None
        self._in_progress = False

    @property
    def in_progress(self) -> bool:
        return self._in_progress

    def feed(self, payload: TlsPayload) -> bytes | None:
        """Add a fragment. Returns the whole message, or None when an ACK is due."""
        try:
            return self._feed(payload)
        except FragmentError:
            self.reset()
            raise

    def reset(self) -> None:
        """Drop what is buffered and give its reservation back."""
        self._buf = bytearray()
        self._expected = None
        self._in_progress = False
        if self._reserved and self._account is not None:
            self._account.release(self._reserved)
        self._reserved = 0

    def _feed(self, payload: TlsPayload) -> bytes | None:
        if payload.total_length is not None:
            if payload.total_length > self._max:
                raise FragmentError(f"announced TLS length {payload.total_length} > {self._max}")
            if self._in_progress and payload.total_length != self._expected:
                raise FragmentError(
                    f"L bit repeated with a new length {payload.total_length} != {self._expected}"
                )
            self._expected = payload.total_length
        elif not self._in_progress and payload.more:
            # RFC 5216 says the first fragment carries L; tolerate its absence but bound it.
            self._expected = None
        if not payload.data:
            raise FragmentError("empty EAP-TLS fragment where data was expected")
        if not self._in_progress and payload.more and self._account is not None:
            want = self._expected if self._expected is not None else self._max
            if not self._account.reserve(want):
                raise BufferRefused(f"no buffer room for a {want}-byte TLS message")
            self._reserved = want
        self._buf += payload.data
        self._in_progress = True
        limit = self._expected if self._expected is not None else self._max
        if len(self._buf) > limit:
            raise FragmentError(f"{len(self._buf)} bytes past the announced length {limit}")
        if payload.more:
            if self._expected is not None and len(self._buf) >= self._expected:
                raise FragmentError("M bit set but the announced length is complete")
            return None
        if self._expected is not None and len(self._buf) != self._expected:
            raise FragmentError(f"message ended at {len(self._buf)} of {self._expected} bytes")
        message = bytes(self._buf)
        self.reset()
        return message


class FragState(Enum):
    MSG = "MSG"  # nothing of ours pending
    WAIT_FRAG_ACK = "WAIT_FRAG_ACK"  # sent a fragment with M, waiting for the peer's ACK


class Fragmenter:
    """Cuts our TLS bytes into EAP-TLS payloads, one per round trip."""

    def __init__(self, fragment_size: int) -> None:
        if fragment_size < 1:
            raise ValueError("fragment_size must be positive")
        self.fragment_size = fragment_size
        self._out = b""
        self._pos = 0
        self.state = FragState.MSG

    def _set_state(self, new: FragState) -> None:
        if new is not self.state:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("EAP-TLS fragments: %s -> %s", self.state.value, new.value)
            self.state = new

    def start(self, data: bytes, flags: int = 0) -> bytes:
        """First payload of a new outgoing message (L and length set when fragmented)."""
        if self.state is not FragState.MSG:
            raise RuntimeError("start() while a message is still being sent")
        if len(data) <= self.fragment_size:
            return build_payload(flags, data)
        self._out = data
        self._pos = self.fragment_size
        self._set_state(FragState.WAIT_FRAG_ACK)
        return build_payload(flags | FLAG_MORE, data[: self.fragment_size], len(data))

    def next_fragment(self) -> bytes:
        """The payload answering the peer's ACK."""
        if self.state is not FragState.WAIT_FRAG_ACK:
            raise RuntimeError("next_fragment() with nothing pending")
        end = self._pos + self.fragment_size
        chunk = self._out[self._pos : end]
        self._pos = end
        if end >= len(self._out):
            self._out = b""
            self._pos = 0
            self._set_state(FragState.MSG)
            return build_payload(0, chunk)
        return build_payload(FLAG_MORE, chunk)
