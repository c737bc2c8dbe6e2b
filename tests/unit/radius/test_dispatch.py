"""radius.dispatch: which worker gets a datagram (State tag, flow hash, live workers)."""

from __future__ import annotations

import os
import struct
from collections import Counter

import pytest

from radius import dispatch
from radius import packet as rp


def _request(identifier: int, authenticator: bytes, attrs: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([t, len(v) + 2]) + v for t, v in attrs)
    return struct.pack("!BBH", 1, identifier, 20 + len(body)) + authenticator + body


def test_find_state_walks_to_the_state_attribute() -> None:
    state = b"\x01" + os.urandom(15)
    data = _request(7, os.urandom(16), [(rp.Attr.USER_NAME, b"dev"), (79, b"\x02\x01\x00\x05\x01"),
                                        (dispatch.STATE, state), (80, bytes(16))])
    assert dispatch.find_state(data) == state


@pytest.mark.parametrize("data", [
    b"",
    b"\x01\x02",
    _request(1, bytes(16), []),
    _request(1, bytes(16), [(rp.Attr.USER_NAME, b"x")]),
    # an attribute of length 0 / 1 would loop forever or read past the end: a bounded None
    struct.pack("!BBH", 1, 1, 24) + bytes(16) + b"\x18\x00\x00\x00",
    struct.pack("!BBH", 1, 1, 24) + bytes(16) + b"\x18\x01\x00\x00",
    # State claims more bytes than the packet holds
    struct.pack("!BBH", 1, 1, 24) + bytes(16) + b"\x18\x20\x00\x00",
    # the Length field is shorter than the datagram: the State past it is not looked at
    struct.pack("!BBH", 1, 1, 20) + bytes(16) + b"\x18\x04\x00\x00",
])
def test_find_state_is_none_without_a_well_formed_state(data: bytes) -> None:
    assert dispatch.find_state(data) is None


def test_state_tag_routes_to_its_worker_whatever_the_source() -> None:
    live = [True, True, True]
    for index in range(3):
        state = dispatch.tagged_token(index)(16)
        assert state[0] == index and len(state) == 16
        for port in (1000, 2000, 3000):
            data = _request(port % 256, os.urandom(16), [(dispatch.STATE, state)])
            assert dispatch.route(data, "10.0.0.1", port, live) == index


def test_a_retransmission_goes_where_the_original_went() -> None:
    live = [True, True, True, True]
    for _ in range(50):
        data = _request(os.urandom(1)[0], os.urandom(16), [(rp.Attr.USER_NAME, b"d")])
        first = dispatch.route(data, "192.0.2.9", 50000, live)
        assert all(dispatch.route(data, "192.0.2.9", 50000, live) == first for _ in range(3))


def test_one_source_port_spreads_over_every_worker() -> None:
    live = [True, True]
    seen = Counter(dispatch.route(_request(i % 256, os.urandom(16), []), "192.0.2.1", 1812, live)
                   for i in range(2000))
    assert set(seen) == {0, 1}
    assert min(seen.values()) > 850  # crc32 over the random authenticator: close to even


def test_a_down_worker_gets_no_new_conversation_and_loses_its_own() -> None:
    live = [True, False, True]
    for i in range(300):
        data = _request(i % 256, os.urandom(16), [])
        assert dispatch.route(data, "192.0.2.1", 1812, live) in (0, 2)
    held_by_down = _request(1, os.urandom(16), [(dispatch.STATE, dispatch.tagged_token(1)(16))])
    assert dispatch.route(held_by_down, "192.0.2.1", 1812, live) is None
    assert dispatch.route(_request(1, bytes(16), []), "h", 1, [False, False]) is None


def test_a_state_no_worker_minted_is_routed_like_a_new_request() -> None:
    # e.g. a State from before a change of workers: some worker answers unknown_state
    data = _request(3, os.urandom(16), [(dispatch.STATE, b"\xff" + bytes(15))])
    assert dispatch.route(data, "h", 1, [True, True]) in (0, 1)
    empty = _request(3, os.urandom(16), [(dispatch.STATE, b"")])
    assert dispatch.route(empty, "h", 1, [True, True]) in (0, 1)


def test_shutting_down_routes_only_conversations_in_progress() -> None:
    live = [True, True]
    continuing = _request(9, os.urandom(16), [(dispatch.STATE, dispatch.tagged_token(1)(16))])
    assert dispatch.route(continuing, "h", 1, live, new_conversations=False) == 1
    new = _request(9, os.urandom(16), [])
    assert dispatch.route(new, "h", 1, live, new_conversations=False) is None


def test_frames_round_trip_and_bad_frames_are_refused() -> None:
    data = os.urandom(300)
    for host in ("127.0.0.1", "2001:db8::1", "fe80::1%eth0"):
        buf = dispatch.frame(dispatch.ACCOUNTING, host, 65535, data)
        assert dispatch.unframe(buf) == (dispatch.ACCOUNTING, host, 65535, data)
    with pytest.raises(ValueError):
        dispatch.unframe(b"\x00\x01")
    with pytest.raises(ValueError):
        dispatch.unframe(b"\x00\x07\x14\x40abc")


def test_tagged_token_refuses_an_index_past_one_byte() -> None:
    with pytest.raises(ValueError):
        dispatch.tagged_token(256)
