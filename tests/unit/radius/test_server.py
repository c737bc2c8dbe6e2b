"""radius.server: the shell, driven synchronously through handle_datagram and over a
real UDP socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from radius import eap
from radius import fragments as frag
from radius import packet as rp
from radius.options import EapOptions, RadiusClient
from radius.packet import Attr, Code
from radius.server import ClientTable, RadiusServer

SECRET = b"testing123"
ADDR = ("127.0.0.1", 40000)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Nas:
    """Plays the NAS: wraps EAP from an EapTlsPeer into Access-Requests."""

    def __init__(
        self,
        send: Callable[[bytes], bytes | None],
        peer,  # type: ignore[no-untyped-def]
        secret: bytes = SECRET,
        proxy_state: tuple[bytes, ...] = (),
    ) -> None:
        self.send = send
        self.peer = peer
        self.secret = secret
        self.proxy_state = proxy_state
        self.state: bytes | None = None
        self.ident = 0
        self.requests = 0
        self.last_raw = b""

    def build(self, eap_message: bytes) -> tuple[bytes, bytes]:
        self.ident = (self.ident + 1) & 0xFF
        auth = os.urandom(16)
        attrs = [
            (Attr.USER_NAME, b"anonymous@example.test"),
            (Attr.CALLING_STATION_ID, b"02-00-00-00-00-01"),
            (Attr.FRAMED_MTU, rp.integer(1400)),
            *rp.eap_message_attributes(eap_message),
        ]
        if self.state is not None:
            attrs.append((Attr.STATE, self.state))
        attrs += [(Attr.PROXY_STATE, p) for p in self.proxy_state]
        return rp.encode_access_request(self.ident, auth, self.secret, attrs), auth

    def step(self, eap_message: bytes) -> rp.Reply:
        raw, auth = self.build(eap_message)
        self.last_raw = raw
        self.requests += 1
        out = self.send(raw)
        assert out is not None, "no reply"
        reply = rp.decode_reply(out, self.secret, auth)
        if reply.code == Code.ACCESS_CHALLENGE:
            self.state = reply.get(Attr.STATE)
        self.last_auth = auth
        return reply

    def run(self, max_trips: int = 60) -> rp.Reply:
        message = self.peer.first()
        for _ in range(max_trips):
            reply = self.step(message)
            if reply.code != Code.ACCESS_CHALLENGE:
                return reply
            assert reply.eap_message is not None
            message = self.peer.respond(reply.eap_message)
        raise AssertionError("Too many roundtrips!")


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_server(pki, context_factory, authorize_fn, clock):  # type: ignore[no-untyped-def]
    def make(options: EapOptions | None = None, clients=None, **kw) -> RadiusServer:  # type: ignore[no-untyped-def]
        options = options or EapOptions()
        clients = clients or [
            RadiusClient("nas1", ipaddress.ip_network("127.0.0.0/8"), SECRET),
        ]
        kw.setdefault("authorize", authorize_fn)
        return RadiusServer(clients, options, context_factory(options), monotonic=clock, **kw)

    return make


def _direct(server: RadiusServer, addr=ADDR) -> Callable[[bytes], bytes | None]:  # type: ignore[no-untyped-def]
    return lambda data: server.handle_datagram(data, addr)


class TestEapOverRadius:
    @pytest.mark.parametrize("tls", ["1.2", "1.3"])
    def test_accept_with_group_attributes(self, make_server, peer_factory, pki, tls) -> None:  # type: ignore[no-untyped-def]
        seen = []
        server = make_server(on_accept=lambda *a: seen.append(a))
        peer = peer_factory("staff-ok", tls=tls)
        nas = Nas(_direct(server), peer, proxy_state=(b"proxy-1", b"proxy-2"))
        before = _metric(
            "certgate_eap_authentications_total",
            result="accept",
            reason="ok",
            group="staff",
            tls_version=tls,
        )
        reply = nas.run()
        assert reply.code == Code.ACCESS_ACCEPT
        assert reply.attributes[0][0] == Attr.MESSAGE_AUTHENTICATOR
        assert eap.parse(reply.eap_message).code == eap.EapCode.SUCCESS
        vsas = [v for t, v in reply.attributes if t == Attr.VENDOR_SPECIFIC]
        keys = {}
        for v in vsas:
            vendor, vtype, vlen = struct.unpack("!IBB", v[:6])
            assert vendor == 311 and vlen == len(v) - 4
            keys[vtype] = rp.salt_decrypt(v[6:], SECRET, nas.last_auth)
        msk = peer.msk()
        assert keys[17] == msk[:32] and keys[16] == msk[32:64]
        assert reply.get(Attr.USER_NAME) == b"alice@example.test"
        assert reply.get(Attr.TUNNEL_TYPE) == b"\x00\x00\x00\x0d"
        assert reply.get(Attr.TUNNEL_MEDIUM_TYPE) == b"\x00\x00\x00\x06"
        assert reply.get(Attr.TUNNEL_PRIVATE_GROUP_ID) == b"10"
        assert reply.get(Attr.FILTER_ID) == b"staff-acl"
        classes = [v for t, v in reply.attributes if t == Attr.CLASS]
        assert classes[0] == b"cg-staff"  # the group's Class comes first
        serial = pki.clients["staff-ok"].cert.serial_number
        # the accounting link Class (radius.accounting.class_value), when wired in
        assert set(classes[1:]) <= {f"certgate:staff:{serial:x}".encode()}
        assert 0 < int.from_bytes(reply.get(Attr.SESSION_TIMEOUT), "big") <= 3600
        assert reply.get(Attr.TERMINATION_ACTION) == b"\x00\x00\x00\x01"
        assert [v for t, v in reply.attributes if t == Attr.PROXY_STATE] == [
            b"proxy-1",
            b"proxy-2",
        ]
        assert len(server.conversations) == 0
        assert len(seen) == 1 and seen[0][0] == "nas1" and seen[0][2].group.name == "staff"
        assert seen[0][3] == seen[0][2].serial
        after = _metric(
            "certgate_eap_authentications_total",
            result="accept",
            reason="ok",
            group="staff",
            tls_version=tls,
        )
        assert after == before + 1

    def test_reject_revoked(self, make_server, peer_factory) -> None:  # type: ignore[no-untyped-def]
        server = make_server()
        reply = Nas(_direct(server), peer_factory("staff-revoked")).run()
        assert reply.code == Code.ACCESS_REJECT
        assert eap.parse(reply.eap_message).code == eap.EapCode.FAILURE
        assert reply.attributes[0][0] == Attr.MESSAGE_AUTHENTICATOR
        assert len(server.conversations) == 0

    def test_duplicate_gets_identical_bytes_and_does_not_advance(  # type: ignore[no-untyped-def]
        self, make_server, peer_factory
    ) -> None:
        server = make_server()
        peer = peer_factory("staff-ok")
        nas = Nas(_direct(server), peer)
        reply = nas.step(peer.first())
        client_hello = peer.respond(reply.eap_message)
        raw, auth = nas.build(client_hello)
        first = server.handle_datagram(raw, ADDR)
        before = _metric("certgate_radius_duplicate_requests_total", client="nas1")
        again = server.handle_datagram(raw, ADDR)
        assert first is not None and again == first
        assert _metric("certgate_radius_duplicate_requests_total", client="nas1") == before + 1
        # the retransmission did not advance EAP/TLS: continuing from the first reply works
        decoded = rp.decode_reply(first, SECRET, auth)
        nas.state = decoded.get(Attr.STATE)
        message = peer.respond(decoded.eap_message)
        reply = None
        for _ in range(20):
            reply = nas.step(message)
            if reply.code != Code.ACCESS_CHALLENGE:
                break
            message = peer.respond(reply.eap_message)
        assert reply is not None and reply.code == Code.ACCESS_ACCEPT

    def test_unknown_state_rejected(self, make_server, peer_factory) -> None:  # type: ignore[no-untyped-def]
        server = make_server()
        nas = Nas(_direct(server), peer_factory())
        nas.state = os.urandom(16)
        reply = nas.step(eap.response(3, eap.EapType.TLS, b"\x00"))
        assert reply.code == Code.ACCESS_REJECT
        assert eap.parse(reply.eap_message) == eap.EapPacket(4, 3, None, b"")

    def test_state_from_another_client_rejected(self, make_server, peer_factory) -> None:  # type: ignore[no-untyped-def]
        clients = [
            RadiusClient("nas1", ipaddress.ip_network("127.0.0.1/32"), SECRET),
            RadiusClient("nas2", ipaddress.ip_network("127.0.0.2/32"), SECRET),
        ]
        server = make_server(clients=clients)
        peer = peer_factory()
        nas1 = Nas(_direct(server), peer)
        reply = nas1.step(peer.first())
        nas2 = Nas(_direct(server, ("127.0.0.2", 1)), peer)
        nas2.state = nas1.state
        reply = nas2.step(peer.respond(reply.eap_message))
        assert reply.code == Code.ACCESS_REJECT

    def test_not_eap_rejected(self, make_server) -> None:  # type: ignore[no-untyped-def]
        server = make_server()
        auth = os.urandom(16)
        raw = rp.encode_access_request(1, auth, SECRET, [(Attr.USER_NAME, b"bob")])
        reply = rp.decode_reply(server.handle_datagram(raw, ADDR), SECRET, auth)
        assert reply.code == Code.ACCESS_REJECT and reply.eap_message is None

    def test_overloaded_refuses_new_keeps_existing(self, make_server, peer_factory) -> None:  # type: ignore[no-untyped-def]
        server = make_server(EapOptions(max_conversations=1))
        peer_a = peer_factory("staff-ok")
        nas_a = Nas(_direct(server), peer_a)
        first = nas_a.step(peer_a.first())
        assert first.code == Code.ACCESS_CHALLENGE
        before = _metric(
            "certgate_eap_authentications_total",
            result="reject",
            reason="overloaded",
            group="none",
            tls_version="none",
        )
        reply_b = Nas(_direct(server), peer_factory("guests-ok")).run()
        assert reply_b.code == Code.ACCESS_REJECT
        after = _metric(
            "certgate_eap_authentications_total",
            result="reject",
            reason="overloaded",
            group="none",
            tls_version="none",
        )
        assert after == before + 1
        message = peer_a.respond(first.eap_message)
        while True:
            reply = nas_a.step(message)
            if reply.code != Code.ACCESS_CHALLENGE:
                break
            message = peer_a.respond(reply.eap_message)
        assert reply.code == Code.ACCESS_ACCEPT

    def test_expired_conversation(self, make_server, peer_factory, clock) -> None:  # type: ignore[no-untyped-def]
        server = make_server()
        peer = peer_factory()
        nas = Nas(_direct(server), peer)
        reply = nas.step(peer.first())
        before = _metric("certgate_eap_sessions_expired_total")
        clock.t += 61
        server.housekeeping(clock.t)
        assert len(server.conversations) == 0
        assert _metric("certgate_eap_sessions_expired_total") == before + 1
        reply = nas.step(peer.respond(reply.eap_message))
        assert reply.code == Code.ACCESS_REJECT

    def test_policy_bug_does_not_escape(self, make_server, peer_factory) -> None:  # type: ignore[no-untyped-def]
        # Raised inside OpenSSL's verify callback: the peer gets the internal_error alert,
        # then an Access-Reject counted under reason internal_error.
        def broken(*a):  # type: ignore[no-untyped-def]
            raise RuntimeError("bug in policy")

        server = make_server(authorize=broken)
        peer = peer_factory()
        nas = Nas(_direct(server), peer)
        labels = {"result": "reject", "reason": "internal_error", "group": "none", "tls_version": "1.2"}
        before = _metric("certgate_eap_authentications_total", **labels)
        assert nas.run().code == Code.ACCESS_REJECT
        assert peer.alert_received == "internal_error"
        assert _metric("certgate_eap_authentications_total", **labels) == before + 1
        assert len(server.conversations) == 0

    def test_resumption_refused_after_revocation_is_counted(  # type: ignore[no-untyped-def]
        self, make_server, peer_factory, pki
    ) -> None:
        server = make_server(EapOptions(resumption=True))
        first = peer_factory("staff-ok", tls="1.2")
        assert Nas(_direct(server), first).run().code == Code.ACCESS_ACCEPT
        serial = pki.clients["staff-ok"].cert.serial_number
        pki.revoked.add("staff", serial)
        try:
            before = _metric("certgate_tls_resumptions_total", result="refused_revoked")
            second = peer_factory(context=first.context, session=first.conn.get_session())
            assert Nas(_direct(server), second).run().code == Code.ACCESS_REJECT
            assert _metric("certgate_tls_resumptions_total", result="refused_revoked") == before + 1
        finally:
            pki.revoked.discard("staff", serial)


class TestDrops:
    def test_unknown_client(self, make_server) -> None:  # type: ignore[no-untyped-def]
        server = make_server()
        raw = rp.encode_access_request(1, os.urandom(16), SECRET, [])
        before = _metric("certgate_radius_dropped_total", client="unknown", reason="unknown_client")
        assert server.handle_datagram(raw, ("192.0.2.1", 1812)) is None
        after = _metric("certgate_radius_dropped_total", client="unknown", reason="unknown_client")
        assert after == before + 1

    def test_missing_message_authenticator(self, make_server) -> None:  # type: ignore[no-untyped-def]
        server = make_server()
        raw = struct.pack("!BBH", 1, 1, 20) + os.urandom(16)
        reason = "missing_message_authenticator"
        before = _metric("certgate_radius_dropped_total", client="nas1", reason=reason)
        assert server.handle_datagram(raw, ADDR) is None
        assert _metric("certgate_radius_dropped_total", client="nas1", reason=reason) == before + 1

    def test_wrong_secret(self, make_server) -> None:  # type: ignore[no-untyped-def]
        server = make_server()
        raw = rp.encode_access_request(1, os.urandom(16), b"wrong", [])
        assert server.handle_datagram(raw, ADDR) is None

    def test_status_server(self, make_server) -> None:  # type: ignore[no-untyped-def]
        server = make_server()
        auth = os.urandom(16)
        raw = rp.encode_access_request(9, auth, SECRET, [], code=Code.STATUS_SERVER)
        reply = rp.decode_reply(server.handle_datagram(raw, ADDR), SECRET, auth)
        assert reply.code == Code.ACCESS_ACCEPT and reply.identifier == 9
        assert reply.attributes[0][0] == Attr.MESSAGE_AUTHENTICATOR
        assert len(server.duplicates) == 0


class TestClientTable:
    def test_most_specific_wins(self) -> None:
        table = ClientTable(
            [
                RadiusClient("wide", ipaddress.ip_network("10.0.0.0/8"), b"a"),
                RadiusClient("narrow", ipaddress.ip_network("10.1.2.0/24"), b"b"),
                RadiusClient("v6", ipaddress.ip_network("2001:db8::/32"), b"c"),
            ]
        )
        assert table.match("10.1.2.3").name == "narrow"
        assert table.match("10.9.9.9").name == "wide"
        assert table.match("::ffff:10.1.2.3").name == "narrow"
        assert table.match("2001:db8::1").name == "v6"
        assert table.match("192.0.2.1") is None
        assert table.match("not-an-ip") is None

    def test_duplicate_names(self) -> None:
        net = ipaddress.ip_network("10.0.0.0/8")
        with pytest.raises(ValueError):
            ClientTable([RadiusClient("a", net, b"x"), RadiusClient("a", net, b"y")])


# --- real UDP socket ----------------------------------------------------------------


def _udp_exchange(addr: tuple[str, int], data: bytes, timeout: float = 2.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, addr)
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


class TestUdp:
    async def test_full_exchange_status_and_silence(self, make_server, peer_factory) -> None:  # type: ignore[no-untyped-def]
        server = make_server()
        server._mono = __import__("time").monotonic  # real clock for the real socket
        await server.start("127.0.0.1", 0)
        try:
            addr = server.address

            # One socket per NAS (fixed source port), as a real NAS does.
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(2.0)

            def send(data: bytes) -> bytes | None:
                sock.sendto(data, addr)
                try:
                    return sock.recv(65535)
                except TimeoutError:
                    return None

            peer = peer_factory("staff-ok", tls="1.3")
            nas = Nas(send, peer)
            reply = await asyncio.to_thread(nas.run)
            assert reply.code == Code.ACCESS_ACCEPT
            # retransmission of the final request -> identical bytes from the cache
            again = await asyncio.to_thread(send, nas.last_raw)
            assert again is not None
            assert rp.decode_reply(again, SECRET, nas.last_auth).code == Code.ACCESS_ACCEPT
            sock.close()

            auth = os.urandom(16)
            status = rp.encode_access_request(1, auth, SECRET, [], code=Code.STATUS_SERVER)
            out = await asyncio.to_thread(_udp_exchange, addr, status)
            assert out is not None
            assert rp.decode_reply(out, SECRET, auth).code == Code.ACCESS_ACCEPT

            bad = rp.encode_access_request(2, os.urandom(16), b"wrong-secret", [])
            assert await asyncio.to_thread(_udp_exchange, addr, bad, 0.3) is None
        finally:
            await server.stop()

    async def test_unknown_client_gets_no_answer(self, make_server) -> None:  # type: ignore[no-untyped-def]
        clients = [RadiusClient("far", ipaddress.ip_network("192.0.2.0/24"), SECRET)]
        server = make_server(clients=clients)
        await server.start("127.0.0.1", 0)
        try:
            raw = rp.encode_access_request(1, os.urandom(16), SECRET, [], code=Code.STATUS_SERVER)
            assert await asyncio.to_thread(_udp_exchange, server.address, raw, 0.3) is None
        finally:
            await server.stop()

    async def test_opt_out_logged_loudly(self, make_server, caplog) -> None:  # type: ignore[no-untyped-def]
        clients = [
            RadiusClient(
                "legacy", ipaddress.ip_network("127.0.0.1/32"), SECRET, require_message_authenticator=False
            )
        ]
        server = make_server(clients=clients)
        await server.start("127.0.0.1", 0)
        await server.stop()
        assert any(r.levelname == "WARNING" and "legacy" in r.getMessage() for r in caplog.records)


def test_a_flood_of_malformed_datagrams_writes_a_few_log_lines(make_server, clock, caplog) -> None:  # type: ignore[no-untyped-def]
    """20,000 malformed datagrams: the drop counter says 20,000, the log a handful of lines,
    and the next logged line says how many were suppressed."""
    import logging

    server = make_server()
    labels = {"client": "nas1", "reason": "malformed"}
    before = _metric("certgate_radius_dropped_total", **labels)
    caplog.set_level(logging.INFO, logger="radius.server")
    for i in range(20_000):
        assert server.handle_datagram(b"\x01\x01\x00\x05x" + bytes([i % 256]), ADDR) is None
    assert _metric("certgate_radius_dropped_total", **labels) == before + 20_000
    lines = [r for r in caplog.records if r.getMessage().startswith("drop from")]
    assert 1 <= len(lines) <= 5, len(lines)
    clock.t += 11
    server.handle_datagram(b"\x01\x01\x00\x05x", ADDR)
    assert caplog.records[-1].getMessage().endswith("(19995 similar line(s) suppressed)")


def test_a_newline_in_calling_station_id_cannot_forge_a_log_line(make_server, peer_factory,  # type: ignore[no-untyped-def]
                                                                 caplog) -> None:
    """The product's text formatter keeps the authentication line one line."""
    import logging

    from certgate.logs import TextFormatter

    class ForgingNas(Nas):
        def build(self, eap_message: bytes) -> tuple[bytes, bytes]:
            self.ident = (self.ident + 1) & 0xFF
            auth = os.urandom(16)
            attrs = [(Attr.USER_NAME, b"anonymous@example.test"),
                     (Attr.CALLING_STATION_ID,
                      b"02-00\n2026-01-01 00:00:00,000 INFO radius.server: eap result=accept"),
                     *rp.eap_message_attributes(eap_message)]
            if self.state is not None:
                attrs.append((Attr.STATE, self.state))
            return rp.encode_access_request(self.ident, auth, self.secret, attrs), auth

    caplog.set_level(logging.INFO, logger="radius.server")
    reply = ForgingNas(_direct(make_server()), peer_factory("staff-ok")).run()
    assert reply.code == Code.ACCESS_ACCEPT
    lines = [TextFormatter().format(r) for r in caplog.records if "eap result=" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert "calling_station=02-00\\n2026-01-01" in lines[0] and "escaped=calling_station" in lines[0]


def test_one_nas_flooding_identities_does_not_lock_out_another(make_server, peer_factory) -> None:  # type: ignore[no-untyped-def]
    """10,000 EAP-Response/Identity packets from NAS A fill the table; a device behind NAS B
    still authenticates (A's oldest conversation makes room), A's flood is refused."""
    flooder = RadiusClient("nas-a", ipaddress.ip_network("127.0.0.2/32"), SECRET)
    victim = RadiusClient("nas-b", ipaddress.ip_network("127.0.0.1/32"), SECRET)
    server = make_server(EapOptions(max_conversations=200), clients=[flooder, victim])
    before = _metric("certgate_radius_conversations_shed_total", client="nas-a",
                     reason="client_share")
    refused = 0
    for i in range(10_000):
        attrs = [(Attr.CALLING_STATION_ID, f"02-00-00-{i >> 8 & 255:02x}-{i & 255:02x}-01".encode()),
                 *rp.eap_message_attributes(eap.response(1, eap.EapType.IDENTITY, b"flood"))]
        raw = rp.encode_access_request(i & 0xFF, os.urandom(16), SECRET, attrs)
        reply = server.handle_datagram(raw, ("127.0.0.2", 40000 + i % 1000))
        refused += reply is not None and reply[0] == Code.ACCESS_REJECT
    assert len(server.conversations) == 200 and refused == 10_000 - 200
    reply = Nas(_direct(server, ("127.0.0.1", 1812)), peer_factory("staff-ok")).run()
    assert reply.code == Code.ACCESS_ACCEPT  # the well-behaved NAS got in
    assert _metric("certgate_radius_conversations_shed_total", client="nas-a",
                   reason="client_share") == before + 1
    assert _metric("certgate_radius_conversations_shed_total", client="nas-a",
                   reason="refused") >= 10_000 - 200


def _half_open(server: RadiusServer, addr: tuple[str, int], n: int, announced: int = 65536) -> bytes:
    """Identity, then the first fragment of an announced TLS message that never finishes;
    returns the reply to that fragment (an ACK challenge, or a reject)."""
    station = f"02-00-00-00-{n >> 8 & 255:02x}-{n & 255:02x}".encode()
    attrs = [(Attr.CALLING_STATION_ID, station),
             *rp.eap_message_attributes(eap.response(1, eap.EapType.IDENTITY, b"x"))]
    auth = os.urandom(16)
    reply = rp.decode_reply(server.handle_datagram(
        rp.encode_access_request(1, auth, SECRET, attrs), addr), SECRET, auth)
    assert reply.code == Code.ACCESS_CHALLENGE and reply.eap_message is not None
    tls = frag.build_payload(frag.FLAG_MORE, b"\x16" * 1000, announced)
    attrs = [(Attr.CALLING_STATION_ID, station), (Attr.STATE, reply.get(Attr.STATE)),
             *rp.eap_message_attributes(eap.response(reply.eap_message[1], eap.EapType.TLS, tls))]
    auth = os.urandom(16)
    out = server.handle_datagram(rp.encode_access_request(2, auth, SECRET, attrs), addr)
    assert out is not None
    return out


class TestBufferBudget:
    def test_one_nas_filling_the_budget_does_not_starve_another(self, make_server,  # type: ignore[no-untyped-def]
                                                                peer_factory) -> None:
        flooder = RadiusClient("nas-a", ipaddress.ip_network("127.0.0.2/32"), SECRET)
        victim = RadiusClient("nas-b", ipaddress.ip_network("127.0.0.1/32"), SECRET)
        server = make_server(EapOptions(max_buffered_bytes=1 << 20), clients=[flooder, victim])
        refused_before = _metric("certgate_radius_conversations_shed_total", client="nas-a",
                                 reason="buffer_refused")
        shed_before = _metric("certgate_radius_conversations_shed_total", client="nas-a",
                              reason="buffer_share")
        codes = [_half_open(server, ("127.0.0.2", 40000), i)[0] for i in range(40)]
        assert codes.count(Code.ACCESS_CHALLENGE) == 16  # 1 MiB / 64 KiB
        assert codes.count(Code.ACCESS_REJECT) == 24
        assert server.buffers.used == 1 << 20
        assert _metric("certgate_radius_conversations_shed_total", client="nas-a",
                       reason="buffer_refused") == refused_before + 24
        reply = Nas(_direct(server, ("127.0.0.1", 1812)), peer_factory("staff-ok")).run()
        assert reply.code == Code.ACCESS_ACCEPT  # room made by ending nas-a's oldest
        assert _metric("certgate_radius_conversations_shed_total", client="nas-a",
                       reason="buffer_share") == shed_before + 1
        assert server.buffers.held_by("nas-b") == 0  # given back at Accept
        assert server.buffers.used == 15 << 16
        assert len(server.conversations) == 15

    def test_budget_given_back_when_conversations_expire(self, make_server, clock) -> None:  # type: ignore[no-untyped-def]
        server = make_server(EapOptions(conversation_timeout=10, conversation_lifetime=20))
        for i in range(3):
            assert _half_open(server, ADDR, i)[0] == Code.ACCESS_CHALLENGE
        assert server.buffers.used == 3 * 65536
        clock.t += 11
        server.housekeeping(clock.t)
        assert server.buffers.used == 0 and len(server.conversations) == 0
        assert _metric("certgate_radius_buffered_bytes") == 0

    def test_budget_given_back_at_lifetime_and_reject(self, make_server, clock) -> None:  # type: ignore[no-untyped-def]
        server = make_server(EapOptions(conversation_timeout=10, conversation_lifetime=10))
        assert _half_open(server, ADDR, 1)[0] == Code.ACCESS_CHALLENGE
        clock.t += 10
        server.housekeeping(clock.t)
        assert server.buffers.used == 0
        # a framing error (announced length > 64 KiB) ends the conversation: nothing held
        reply = _half_open(server, ADDR, 2, announced=70000)
        assert reply[0] == Code.ACCESS_REJECT and server.buffers.used == 0

    def test_shed_label_values_start_at_zero(self, make_server) -> None:  # type: ignore[no-untyped-def]
        make_server(clients=[RadiusClient("nas-zero", ipaddress.ip_network("10.9.9.9/32"), SECRET)])
        for why in ("station_limit", "client_share", "lifetime", "refused", "client_limit",
                    "buffer_share", "buffer_refused"):
            assert REGISTRY.get_sample_value("certgate_radius_conversations_shed_total",
                                             {"client": "nas-zero", "reason": why}) == 0.0
