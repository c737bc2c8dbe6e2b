"""radius.radsec: the RadSec shell over real TLS on 127.0.0.1 (Python's ssl module as the
NAS side; radsecproxy and FreeRADIUS are the peers of tests/integration/test_radsec.py).

The packets are handled by the same RadiusServer as UDP: an EAP-TLS authentication over
RadSec gets its Access-Accept with MS-MPPE keys under the secret "radsec".
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import socket
import ssl
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from prometheus_client import REGISTRY

from radius import packet as rp
from radius.accounting import AccountingRecord
from radius.options import EapOptions, RadiusClient
from radius.packet import Attr, Code
from radius.radsec import RadsecOptions, RadsecServer
from radius.radsec_peer import check_peer
from radius.server import RadiusServer
from revocation.snapshot import RevocationIndex

RADSEC = b"radsec"
PEM = serialization.Encoding.PEM


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _server_context(pki, tmp: Path) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    cert, key = pki.server.write(tmp, "server")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=b"".join(
        c.public_bytes(PEM) for c in (pki.root.cert, pki.staff_ca.cert, pki.guests_ca.cert,
                                      pki.other_ca.cert)).decode())
    ctx.load_cert_chain(cert, key)
    return ctx


def _client_context(pki, tmp: Path, name: str, tls: str = "1.3") -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    cert, key = pki.clients[name].write(tmp, name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    version = ssl.TLSVersion.TLSv1_3 if tls == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = version
    ctx.load_verify_locations(cadata=pki.root.cert.public_bytes(PEM).decode())
    ctx.load_cert_chain(cert, key)
    return ctx


class Harness:
    def __init__(self, pki, tmp: Path, context_factory, authorize_fn,  # type: ignore[no-untyped-def]
                 network: str = "127.0.0.0/8", **opts) -> None:
        self.pki, self.tmp = pki, tmp
        self.records: list[AccountingRecord] = []
        self.release = asyncio.Event()
        self.release.set()
        self.concurrent = 0
        self.peak = 0
        clients = [RadiusClient("wlc", ipaddress.ip_network(network), b"udp-secret-123")]
        self.radius = RadiusServer(clients, EapOptions(), context_factory(EapOptions()),
                                   authorize_fn)
        context = _server_context(pki, tmp)
        self.revoked = RevocationIndex([("staff", pki.clients["staff-revoked"].cert.serial_number)])
        self.server = RadsecServer(
            clients, self.radius, lambda: context,
            lambda der, c: check_peer(der, c, pki.groups, self.revoked, lambda g, s: False),
            self.sink, RadsecOptions(**opts))

    async def sink(self, client: str, record: AccountingRecord) -> None:
        self.concurrent += 1
        self.peak = max(self.peak, self.concurrent)
        try:
            await self.release.wait()
            self.records.append(record)
        finally:
            self.concurrent -= 1

    async def __aenter__(self) -> Harness:
        await self.server.start("127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()

    async def connect(self, name: str = "staff-cnonly", tls: str = "1.3"
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self.server.address
        return await asyncio.wait_for(asyncio.open_connection(
            host, port, ssl=_client_context(self.pki, self.tmp, name, tls),
            server_hostname="radius.test"), 10)


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readexactly(4), 10)
    (length,) = struct.unpack("!H", head[2:])
    return head + await asyncio.wait_for(reader.readexactly(length - 4), 10)


def status_server(ident: int) -> tuple[bytes, bytes]:
    auth = os.urandom(16)
    return rp.encode_access_request(ident, auth, RADSEC, [], code=Code.STATUS_SERVER), auth


def accounting_request(ident: int, session: str, secret: bytes = RADSEC) -> bytes:
    attrs = b"".join(bytes((t, len(v) + 2)) + v for t, v in (
        (40, struct.pack("!I", 1)), (Attr.ACCT_SESSION_ID, session.encode()),
        (Attr.CALLING_STATION_ID, b"02-00-00-00-00-09")))
    header = struct.pack("!BBH", Code.ACCOUNTING_REQUEST, ident, 20 + len(attrs))
    auth = hashlib.md5(header + bytes(16) + attrs + secret).digest()
    return header + auth + attrs


@pytest.fixture
def harness(pki, tmp_path, context_factory, authorize_fn):  # type: ignore[no-untyped-def]
    return lambda **kw: Harness(pki, tmp_path, context_factory, authorize_fn, **kw)


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
async def test_eap_tls_over_radsec_gets_mppe_keys_under_the_radsec_secret(
        harness, peer_factory, tls) -> None:  # type: ignore[no-untyped-def]
    before = _metric("certgate_radius_requests_total", client="wlc", code="access_request",
                     transport="radsec")
    async with harness() as h:
        reader, writer = await h.connect(tls=tls)
        peer = peer_factory("staff-ok", tls=tls)
        message, state = peer.first(), None
        for ident in range(1, 31):
            auth = os.urandom(16)
            attrs = [(Attr.USER_NAME, b"anonymous"), *rp.eap_message_attributes(message)]
            if state is not None:
                attrs.append((Attr.STATE, state))
            writer.write(rp.encode_access_request(ident, auth, RADSEC, attrs))
            reply = rp.decode_reply(await read_packet(reader), RADSEC, auth)
            if reply.code != Code.ACCESS_CHALLENGE:
                break
            state = reply.get(Attr.STATE)
            message = peer.respond(reply.eap_message)
        assert reply.code == Code.ACCESS_ACCEPT
        keys = {v[4]: rp.salt_decrypt(v[6:], RADSEC, auth)
                for t, v in reply.attributes if t == Attr.VENDOR_SPECIFIC}
        msk = peer.msk()
        assert keys[17] == msk[:32] and keys[16] == msk[32:64]  # MPPE keys OK
        writer.close()
    assert _metric("certgate_radius_requests_total", client="wlc", code="access_request",
                   transport="radsec") >= before + 3


async def test_status_server_keepalive_and_pipelined_requests(harness) -> None:  # type: ignore[no-untyped-def]
    async with harness() as h:
        reader, writer = await h.connect()
        sent = [status_server(i) for i in range(1, 6)]
        writer.write(b"".join(raw for raw, _ in sent))  # five in one TLS record
        for raw, auth in sent:
            reply = rp.decode_reply(await read_packet(reader), RADSEC, auth)
            assert reply.code == Code.ACCESS_ACCEPT and reply.identifier == raw[1]
        writer.close()


async def test_accounting_in_flight_is_bounded_and_every_request_answered(harness) -> None:  # type: ignore[no-untyped-def]
    async with harness(max_in_flight=4) as h:
        h.release.clear()
        reader, writer = await h.connect()
        writer.write(b"".join(accounting_request(i, f"s-{i}") for i in range(1, 11)))
        for _ in range(50):
            await asyncio.sleep(0.02)
            if h.concurrent == 4:
                break
        await asyncio.sleep(0.1)
        assert h.concurrent == 4 and h.peak == 4  # the rest waits unread, not dropped
        h.release.set()
        answered = {(await read_packet(reader))[1] for _ in range(10)}
        assert answered == set(range(1, 11))
        assert [r.session_id for r in h.records] == [f"s-{i}" for i in range(1, 11)]
        writer.close()


async def test_a_certificate_from_another_ca_is_refused(harness) -> None:  # type: ignore[no-untyped-def]
    before = _metric("certgate_radsec_handshakes_total", client="wlc", result="tls_error")
    async with harness() as h:
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            reader, writer = await h.connect("rogue-ok")  # chains to another root
            raw, _ = status_server(1)
            writer.write(raw)
            await read_packet(reader)
    assert _metric("certgate_radsec_handshakes_total", client="wlc", result="tls_error") == before + 1


async def test_a_revoked_nas_certificate_is_refused(harness) -> None:  # type: ignore[no-untyped-def]
    before = _metric("certgate_radsec_handshakes_total", client="wlc", result="revoked")
    async with harness() as h:
        reader, writer = await h.connect("staff-revoked")
        raw, _ = status_server(1)
        writer.write(raw)
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError, ssl.SSLError)):
            await read_packet(reader)
    assert _metric("certgate_radsec_handshakes_total", client="wlc", result="revoked") == before + 1


async def test_an_address_no_client_serves_is_closed_before_tls(harness) -> None:  # type: ignore[no-untyped-def]
    before = _metric("certgate_radsec_handshakes_total", client="unknown", result="unknown_client")
    async with harness(network="10.0.0.0/8") as h:
        host, port = h.server.address
        reader, writer = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(reader.read(10), 5) == b""  # closed, no ServerHello
        writer.close()
    assert _metric("certgate_radsec_handshakes_total", client="unknown",
                   result="unknown_client") == before + 1


async def test_handshake_and_idle_timeouts(harness) -> None:  # type: ignore[no-untyped-def]
    hs = _metric("certgate_radsec_handshakes_total", client="wlc", result="timeout")
    idle = _metric("certgate_radsec_connections_closed_total", reason="idle_timeout")
    async with harness(handshake_timeout=0.5, idle_timeout=0.6) as h:
        host, port = h.server.address
        reader, writer = await asyncio.open_connection(host, port)  # TCP, never a ClientHello
        assert await asyncio.wait_for(reader.read(10), 5) == b""
        writer.close()
        reader, writer = await h.connect()
        raw, auth = status_server(1)
        writer.write(raw)
        await read_packet(reader)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await asyncio.wait_for(reader.read(10), 5) == b""
        assert 0.3 < loop.time() - t0 < 3
    assert _metric("certgate_radsec_handshakes_total", client="wlc", result="timeout") == hs + 1
    assert _metric("certgate_radsec_connections_closed_total", reason="idle_timeout") == idle + 1


async def test_a_length_that_cannot_be_framed_closes_the_connection(harness) -> None:  # type: ignore[no-untyped-def]
    before = _metric("certgate_radsec_connections_closed_total", reason="bad_length")
    async with harness() as h:
        reader, writer = await h.connect()
        writer.write(struct.pack("!BBH", 1, 1, 9000) + bytes(16))
        assert await asyncio.wait_for(reader.read(10), 5) == b""
    assert _metric("certgate_radsec_connections_closed_total", reason="bad_length") == before + 1


async def test_connection_limit_per_address(harness) -> None:  # type: ignore[no-untyped-def]
    before = _metric("certgate_radsec_handshakes_total", client="wlc", result="over_limit")
    async with harness(max_connections_per_address=1) as h:
        _, w1 = await h.connect()
        host, port = h.server.address
        reader, writer = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(reader.read(10), 5) == b""
        w1.close()
    assert _metric("certgate_radsec_handshakes_total", client="wlc", result="over_limit") == before + 1


async def test_revoking_the_nas_certificate_ends_its_open_connection(harness, pki) -> None:  # type: ignore[no-untyped-def]
    before = _metric("certgate_radsec_connections_closed_total", reason="revoked")
    async with harness() as h:
        reader, writer = await h.connect("staff-cnonly")
        _, other = await h.connect("other-ok")  # not issued by a group CA: not affected
        raw, auth = status_server(1)
        writer.write(raw)
        await read_packet(reader)
        assert h.server.close_revoked(h.revoked.is_revoked) == 0
        h.revoked.add("staff", pki.clients["staff-cnonly"].cert.serial_number)
        assert h.server.close_revoked(h.revoked.is_revoked) == 1
        assert await asyncio.wait_for(reader.read(10), 5) == b""
        assert not other.is_closing()
        other.close()
    assert _metric("certgate_radsec_connections_closed_total", reason="revoked") == before + 1


async def test_a_packet_that_does_not_authenticate_is_dropped_and_the_connection_stays(harness) -> None:  # type: ignore[no-untyped-def]
    """Over RadSec the secret is "radsec": a request signed with the UDP secret is dropped
    (bad_authenticator, counted), unknown codes too, and the next good request is answered."""
    bad = _metric("certgate_radius_dropped_total", client="wlc", reason="bad_authenticator")
    code = _metric("certgate_radius_dropped_total", client="wlc", reason="unknown_code")
    async with harness() as h:
        reader, writer = await h.connect()
        auth = os.urandom(16)
        writer.write(rp.encode_access_request(1, auth, b"udp-secret-123", [],
                                              code=Code.STATUS_SERVER))
        writer.write(struct.pack("!BBH", 40, 2, 20) + bytes(16))  # Disconnect-Request to us
        raw, auth = status_server(3)
        writer.write(raw)
        reply = rp.decode_reply(await read_packet(reader), RADSEC, auth)
        assert reply.identifier == 3 and reply.code == Code.ACCESS_ACCEPT
        writer.close()
    assert _metric("certgate_radius_dropped_total", client="wlc",
                   reason="bad_authenticator") == bad + 1
    assert _metric("certgate_radius_dropped_total", client="wlc", reason="unknown_code") == code + 1


async def test_the_audit_observer_is_told_the_transport(pki, tmp_path, context_factory,  # type: ignore[no-untyped-def]
                                                        authorize_fn, peer_factory) -> None:
    seen = []
    h = Harness(pki, tmp_path, context_factory, authorize_fn)
    h.radius._on_result = seen.append  # noqa: SLF001 - the observer RadiusServer is given
    async with h:
        reader, writer = await h.connect()
        auth = os.urandom(16)
        peer = peer_factory("staff-revoked")
        attrs = [(Attr.USER_NAME, b"anonymous"), *rp.eap_message_attributes(peer.first())]
        writer.write(rp.encode_access_request(1, auth, RADSEC, attrs))
        reply = rp.decode_reply(await read_packet(reader), RADSEC, auth)
        assert reply.code == Code.ACCESS_CHALLENGE
        state = reply.get(Attr.STATE)
        writer.write(rp.encode_access_request(2, auth, RADSEC, [
            (Attr.USER_NAME, b"anonymous"), *rp.eap_message_attributes(peer.first()),
            (Attr.STATE, b"x" * 16)]))  # an unknown State: rejected without a session
        await read_packet(reader)
        writer.close()
    assert state and seen and all(r.transport == "radsec" for r in seen)


async def test_a_nas_that_leaves_its_replies_unread_is_closed_at_write_timeout(harness) -> None:  # type: ignore[no-untyped-def]
    """The replies queued for a NAS are bounded (max_write_buffer): past it certgate waits
    write_timeout for the NAS to read, then closes the connection."""
    before = _metric("certgate_radsec_connections_closed_total", reason="write_timeout")
    async with harness(max_write_buffer=4096, write_timeout=0.5) as h:
        host, port = h.server.address
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a NAS that reads nothing
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=_client_context(h.pki, h.tmp, "staff-cnonly"),
            server_hostname="radius.test")
        batch = b"".join(status_server(i % 256)[0] for i in range(500))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while loop.time() < deadline and _metric(
                "certgate_radsec_connections_closed_total", reason="write_timeout") == before:
            if writer.is_closing():
                break
            writer.write(batch)
            try:
                await asyncio.wait_for(writer.drain(), 0.2)
            except (TimeoutError, ConnectionError, ssl.SSLError):
                await asyncio.sleep(0.1)
        writer.transport.abort()
    assert _metric("certgate_radsec_connections_closed_total", reason="write_timeout") == before + 1
