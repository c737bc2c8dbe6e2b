"""radius.stream: RADIUS packets framed out of a TCP byte stream, and the in-flight budget."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radius.stream import MAX_LENGTH, MIN_LENGTH, Framer, FramingError, InFlight, StreamError


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


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(MIN_LENGTH, MAX_LENGTH), min_size=1, max_size=12),
       cuts=st.lists(st.integers(0, 12 * MAX_LENGTH), max_size=20))
def test_any_split_of_the_stream_frames_the_same_packets(lengths: list[int], cuts: list[int]) -> None:
    packets = [packet(i % 256, n, code=(1, 4, 12)[i % 3]) for i, n in enumerate(lengths)]
    stream = b"".join(packets)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    f = Framer()
    out: list[bytes] = []
    for a, b in zip(points, points[1:], strict=False):
        out += f.feed(stream[a:b])
        assert f.buffered < MAX_LENGTH
    assert out == packets and f.buffered == 0


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3 * MAX_LENGTH))
def test_arbitrary_bytes_never_raise_anything_but_a_framing_error(data: bytes) -> None:
    f = Framer()
    try:
        for p in f.feed(data):
            assert MIN_LENGTH <= len(p) <= MAX_LENGTH
            assert int.from_bytes(p[2:4], "big") == len(p)
    except FramingError as exc:
        assert exc.reason is StreamError.BAD_LENGTH
