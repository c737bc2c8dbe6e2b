"""radius.stream: RADIUS packets framed out of a TCP byte stream, and the in-flight budget."""

from __future__ import annotations

import struct

import pytest

from radius.stream import MAX_LENGTH, Framer, FramingError, InFlight, StreamError


def packet(ident: int, length: int = 20, code: int = 1) -> bytes:
    return struct.pack("!BBH", code, ident, length) + bytes([ident]) * (length - 4)


def test_whole_packets_in_one_read_come_out_in_order() -> None:
    f = Framer()
    data = packet(1) + packet(2, 300) + packet(3, MAX_LENGTH)
    assert f.feed(data) == [packet(1), packet(2, 300), packet(3, MAX_LENGTH)]
    assert f.buffered == 0 and f.packets == 3


def test_a_packet_split_across_reads_byte_by_byte() -> None:
    f = Framer()
    data = packet(7, 100) + packet(8, 21)
    out: list[bytes] = []
    for i in range(len(data)):
        out += f.feed(data[i:i + 1])
        assert f.buffered < 100  # never more than the unfinished packet
    assert out == [packet(7, 100), packet(8, 21)]


def test_header_split_before_the_length_field() -> None:
    f = Framer()
    data = packet(9, 64)
    assert f.feed(data[:3]) == []
    assert f.feed(data[3:40]) == []
    assert f.feed(data[40:] + packet(10)[:2]) == [data]
    assert f.buffered == 2


@pytest.mark.parametrize("length", [0, 4, 19, MAX_LENGTH + 1, 65535])
def test_a_length_that_cannot_be_framed_ends_the_stream(length: int) -> None:
    f = Framer()
    bad = struct.pack("!BBH", 1, 1, length) + bytes(16)
    with pytest.raises(FramingError) as err:
        f.feed(packet(1) + bad)
    assert err.value.reason is StreamError.BAD_LENGTH
    assert f.failed and f.buffered == 0
    with pytest.raises(FramingError):  # nothing more is framed on this connection
        f.feed(packet(2))


def test_buffered_bytes_stay_under_one_packet_plus_one_read() -> None:
    f = Framer()
    read = 16384
    stream = b"".join(packet(i % 256, 20 + (i * 37) % (MAX_LENGTH - 20)) for i in range(300))
    seen = 0
    for pos in range(0, len(stream), read - 1):
        seen += len(f.feed(stream[pos:pos + read - 1]))
        assert f.buffered < MAX_LENGTH
    assert seen == 300


def test_in_flight_budget() -> None:
    budget = InFlight(2)
    budget.begin()
    budget.begin()
    assert budget.full and budget.peak == 2
    with pytest.raises(RuntimeError):
        budget.begin()
    budget.end()
    assert not budget.full
    budget.end()
    with pytest.raises(RuntimeError):
        budget.end()
    with pytest.raises(ValueError):
        InFlight(0)
