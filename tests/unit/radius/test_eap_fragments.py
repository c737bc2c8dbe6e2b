"""radius.eap and radius.fragments in isolation."""

from __future__ import annotations

import pytest

from radius import eap
from radius.fragments import (
    FLAG_LENGTH,
    FLAG_MORE,
    Fragmenter,
    FragmentError,
    FragState,
    Reassembler,
    TlsPayload,
    build_payload,
    fragment_size_for,
    parse_payload,
)


class TestEap:
    def test_round_trip(self) -> None:
        data = eap.response(7, eap.EapType.TLS, b"\x00abc")
        assert eap.parse(data) == eap.EapPacket(2, 7, 13, b"\x00abc")

    def test_success_failure(self) -> None:
        assert eap.success(9) == b"\x03\x09\x00\x04"
        assert eap.failure(9) == b"\x04\x09\x00\x04"
        assert eap.parse(eap.success(9)).type is None

    @pytest.mark.parametrize(
        "data",
        [b"", b"\x02\x01\x00", b"\x02\x01\x00\x04", b"\x05\x01\x00\x05\x01", b"\x03\x01\x00\x05x"],
    )
    def test_malformed(self, data: bytes) -> None:
        with pytest.raises(eap.MalformedEap):
            eap.parse(data)

    def test_identifier_wraps(self) -> None:
        assert eap.next_identifier(255) == 0


class TestFragmenter:
    def test_small_message_single_payload(self) -> None:
        f = Fragmenter(100)
        assert f.start(b"x" * 100) == b"\x00" + b"x" * 100
        assert f.state is FragState.MSG

    def test_fragments_with_length_then_more(self) -> None:
        f = Fragmenter(100)
        data = bytes(range(250))
        first = parse_payload(f.start(data))
        assert first.flags == FLAG_LENGTH | FLAG_MORE and first.total_length == 250
        assert f.state is FragState.WAIT_FRAG_ACK
        second = parse_payload(f.next_fragment())
        assert second.flags == FLAG_MORE and second.total_length is None
        third = parse_payload(f.next_fragment())
        assert third.flags == 0
        assert first.data + second.data + third.data == data
        assert f.state is FragState.MSG
        with pytest.raises(RuntimeError):
            f.next_fragment()

    @pytest.mark.parametrize(
        ("configured", "mtu", "expected"),
        [(1024, None, 1024), (1024, 1400, 1024), (1024, 500, 490), (1024, 100, 1024)],
    )
    def test_framed_mtu(self, configured: int, mtu: int | None, expected: int) -> None:
        assert fragment_size_for(configured, mtu) == expected


class TestReassembler:
    def test_reassembles(self) -> None:
        r = Reassembler()
        assert r.feed(TlsPayload(FLAG_LENGTH | FLAG_MORE, 6, b"abc")) is None
        assert r.in_progress
        assert r.feed(TlsPayload(0, None, b"def")) == b"abcdef"
        assert not r.in_progress

    def test_short_message_rejected(self) -> None:
        r = Reassembler()
        r.feed(TlsPayload(FLAG_LENGTH | FLAG_MORE, 10, b"abc"))
        with pytest.raises(FragmentError):
            r.feed(TlsPayload(0, None, b"def"))

    def test_more_after_complete_rejected(self) -> None:
        r = Reassembler()
        with pytest.raises(FragmentError):
            r.feed(TlsPayload(FLAG_LENGTH | FLAG_MORE, 3, b"abc"))

    def test_payload_codec(self) -> None:
        assert parse_payload(build_payload(FLAG_MORE, b"x", 9)) == TlsPayload(
            FLAG_LENGTH | FLAG_MORE, 9, b"x"
        )
        assert parse_payload(b"\x00").is_ack
        with pytest.raises(FragmentError):
            parse_payload(b"")
