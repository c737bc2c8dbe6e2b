"""Fuzz EAP and EAP-TLS through the RADIUS server's datagram path: EAP parsing, the
EAP-TLS fragment reassembly and flags, the TLS engine behind memory BIOs, the
conversation table, the buffer budget and the duplicate cache, all via
``RadiusServer.handle_datagram`` (the same entry point as the UDP socket).

Input: one control byte, then chunks ``[len:1][kind:1][body:len-1]`` (at most 16).
Control bit 0x01 first plays a real supplicant's opening (Identity, then a recorded
TLS ClientHello, fragmented as the supplicant sent it), so the chunks land as TLS
records in a live, mid-handshake session; 0x02 uses 300-octet server fragments; 0x04
advances the clock past the idle timeout before the last chunk. Each chunk is sent as a
correctly signed Access-Request carrying the State of the last Access-Challenge:

- kind bit 0x01: the body is EAP-TLS type data (flags, [length], TLS bytes) wrapped in an
  EAP-Response/TLS with the identifier the server last used; otherwise the body is the
  raw EAP-Message (any bytes, any length);
- kind bit 0x02: no State (a new conversation); 0x04: a State the server never gave;
- kind bit 0x08: the previous datagram resent as is (a retransmission).

Invariants: ``handle_datagram`` never ends in ``internal_error`` (an exception of ours);
every reply verifies with the secret and is an Access-Challenge, -Accept or -Reject;
after housekeeping past every timeout no conversation is left and the buffer budget is
back to zero (nothing leaks).
"""

from __future__ import annotations

import ipaddress
import itertools
import struct

from radius import eap, metrics
from radius import fragments as frag
from radius import packet as rp
from radius.options import EapOptions, RadiusClient
from radius.packet import DropReason
from radius.server import RadiusServer
from radius.tls_context import build_server_context
from tests.unit.radius.conftest import EapTlsPeer, build_pki

SECRET = b"fuzzing-secret"
CLIENT = RadiusClient("fuzz", ipaddress.ip_network("127.0.0.0/8"), SECRET)
ADDR = ("127.0.0.1", 40000)
PKI = build_pki()
OPTIONS = {small: EapOptions(fragment_size=300 if small else 1024) for small in (False, True)}
CONTEXTS = {
    small: build_server_context(
        certificate=PKI.server.cert, private_key=PKI.server.key, chain=[], root=PKI.root.cert,
        intermediates=[g.intermediate for g in PKI.groups], options=options)
    for small, options in OPTIONS.items()
}
_AUTHENTICATORS = itertools.count()
MAX_CHUNKS = 16


def _authorize(leaf, chain, resumed, now):  # type: ignore[no-untyped-def]
    from radius.authorize import authorize

    return authorize(leaf, chain, resumed, PKI.groups, PKI.revoked, now)


_INTERNAL_ERRORS = metrics.dropped(CLIENT.name, DropReason.INTERNAL_ERROR.value)


def _internal_errors() -> float:
    """certgate_radius_dropped_total{reason="internal_error"} (the child, not a registry walk)."""
    return _INTERNAL_ERRORS._value.get()


class _Nas:
    """Signs each EAP-Message into an Access-Request and follows State and identifier."""

    def __init__(self, server: RadiusServer) -> None:
        self.server = server
        self.state: bytes | None = None
        self.identifier = 0  # EAP identifier of the server's last request
        self.last: tuple[bytes, bytes] | None = None  # (datagram, its authenticator)

    def send(self, eap_message: bytes, state: bytes | None) -> None:
        authenticator = next(_AUTHENTICATORS).to_bytes(16, "big")
        attrs = [(rp.Attr.USER_NAME, b"fuzz"), (rp.Attr.CALLING_STATION_ID, b"02-00-00-00-00-01")]
        attrs += rp.eap_message_attributes(eap_message) if eap_message else [(rp.Attr.EAP_MESSAGE, b"")]
        if state is not None:
            attrs.append((rp.Attr.STATE, state))
        try:
            datagram = rp.encode_access_request(len(eap_message) & 0xFF, authenticator, SECRET, attrs)
        except (rp.PacketTooLarge, ValueError):  # over 4096 octets: no NAS can send it
            return
        self.resend(datagram, authenticator)

    def resend(self, datagram: bytes, authenticator: bytes) -> None:
        self.last = (datagram, authenticator)
        reply = self.server.handle_datagram(datagram, ADDR)
        if reply is None:
            return
        decoded = rp.decode_reply(reply, SECRET, authenticator)  # verifies both MACs
        assert decoded.code in (rp.Code.ACCESS_CHALLENGE, rp.Code.ACCESS_ACCEPT,
                                rp.Code.ACCESS_REJECT), decoded.code
        assert decoded.eap_message is not None, "a reply to EAP carries EAP"
        packet = eap.parse(decoded.eap_message)
        if decoded.code == rp.Code.ACCESS_CHALLENGE:
            assert packet.code == eap.EapCode.REQUEST, packet
            states = [v for t, v in decoded.attributes if t == rp.Attr.STATE]
            assert len(states) == 1, states
            self.state, self.identifier = states[0], packet.identifier
        else:
            assert packet.code in (eap.EapCode.SUCCESS, eap.EapCode.FAILURE), packet
            self.state = None

    def tls(self, type_data: bytes) -> None:
        self.send(eap.response(self.identifier, eap.EapType.TLS, type_data), self.state)


def _opening() -> tuple[bytes, list[bytes]]:
    """A supplicant's Identity and its ClientHello as EAP-TLS type-data fragments."""
    peer = EapTlsPeer(PKI, "staff-ok", fragment_size=1024)
    start = eap.request(1, eap.EapType.TLS, frag.build_payload(frag.FLAG_START))
    fragments, message = [], peer.respond(start)
    while True:
        fragments.append(eap.parse(message).data)
        if not frag.parse_payload(fragments[-1]).more:
            return peer.first(), fragments
        message = peer.respond(eap.request(2, eap.EapType.TLS, frag.build_payload(0)))


IDENTITY, CLIENT_HELLO = _opening()


def _chunks(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(data) and len(out) < MAX_CHUNKS:
        n = data[pos]
        body = data[pos + 1:pos + 1 + n]
        pos += 1 + n
        if body:
            out.append((body[0], body[1:]))
    return out


def one_input(data: bytes) -> None:
    if not data:
        return
    control = data[0]
    small = bool(control & 0x02)
    clock = [1000.0]
    server = RadiusServer([CLIENT], OPTIONS[small], CONTEXTS[small], _authorize,
                          monotonic=lambda: clock[0])
    nas = _Nas(server)
    errors = _internal_errors()
    if control & 0x01:
        nas.send(IDENTITY, None)
        for fragment in CLIENT_HELLO:
            nas.tls(fragment)
    chunks = _chunks(data[1:])
    for index, (kind, body) in enumerate(chunks):
        if control & 0x04 and index == len(chunks) - 1:
            clock[0] += OPTIONS[small].conversation_timeout + 1
            server.housekeeping(clock[0])
        if kind & 0x08 and nas.last is not None:
            nas.resend(*nas.last)
            continue
        state = None if kind & 0x02 else (b"\x00" * 15 + b"\x01" if kind & 0x04 else nas.state)
        if kind & 0x01:
            nas.send(eap.response(nas.identifier, eap.EapType.TLS, body), state)
        else:
            nas.send(body, state)
        clock[0] += 0.01
    assert _internal_errors() == errors, "an exception escaped into handle_datagram"
    clock[0] += OPTIONS[small].conversation_lifetime + OPTIONS[small].duplicate_cache_ttl + 1
    server.housekeeping(clock[0])
    assert len(server.conversations) == 0, "a conversation outlived every timeout"
    assert server.buffers.used == 0, f"{server.buffers.used} buffered bytes leaked"


def _chunk(kind: int, body: bytes) -> bytes:
    return bytes((len(body) + 1, kind)) + body


def _seeds() -> list[bytes]:
    ack = frag.build_payload(0)
    record = bytes((0x16, 3, 3, 0, 4, 11, 0, 0, 0))  # an empty Certificate handshake message
    alert = bytes((0x15, 3, 3, 0, 2, 2, 40))
    announced = frag.build_payload(frag.FLAG_MORE | frag.FLAG_LENGTH, b"\x16\x03\x03", 65536)
    return [
        bytes([0]) + _chunk(0, IDENTITY),
        bytes([0]) + _chunk(0, IDENTITY) + _chunk(1, CLIENT_HELLO[0][:200]),
        bytes([1]) + _chunk(1, ack) + _chunk(1, ack) + _chunk(1, frag.build_payload(0, record)),
        bytes([1]) + _chunk(1, frag.build_payload(0, alert)),
        bytes([3]) + _chunk(1, ack) * 4 + _chunk(1, announced) + _chunk(1, ack),
        bytes([1]) + _chunk(8, b"") + _chunk(4, IDENTITY) + _chunk(2, IDENTITY),
        bytes([5]) + _chunk(1, ack) + _chunk(1, ack),
        bytes([0]) + _chunk(0, struct.pack("!BBH", 2, 1, 4)) + _chunk(0, bytes((2, 1, 0, 5, 3))),
    ]


SEEDS = _seeds()

if __name__ == "__main__":
    from tests.fuzz._harness import run

    run("eap_tls", one_input, SEEDS)
