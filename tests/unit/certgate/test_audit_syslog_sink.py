"""SyslogSink against real loopback peers (a UDP socket, asyncio TCP/TLS servers): one
datagram per event, octet-counted frames, TLS verified against the CA, reconnect after
the server drops the stream, overflow and losses counted, never raising or blocking."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path

import pytest

from certgate.audit.syslog import SyslogSink, SyslogURLError, parse_url
from certgate.errors import OperatorError
from tests.syslog_support import flat_strings, make_tls_files, parse, split_frames


def _event(i: int, **extra: object) -> dict:
    return {"@timestamp": "2026-12-07T12:30:15.123+00:00",
            "event": {"action": "radius-authentication", "outcome": "failure", "seq": i},
            "log": {"level": "warning"}, **extra}


class Results:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, result: str) -> None:
        self.seen.append(result)

    def count(self, result: str) -> int:
        return self.seen.count(result)


class StreamPeer:
    """A TCP (or TLS) syslog receiver collecting raw bytes per connection."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.connections: list[bytearray] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        self.connections.append(buf)
        self.writers.append(writer)
        try:
            while chunk := await reader.read(65536):
                buf += chunk
        except (ConnectionError, ssl.SSLError):
            pass

    def messages(self) -> list[bytes]:
        return [m for buf in self.connections for m in split_frames(bytes(buf))]

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[bytes]:
        for _ in range(int(timeout / 0.02)):
            if len(self.messages()) >= n:
                break
            await asyncio.sleep(0.02)
        return self.messages()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()


def test_urls() -> None:
    assert str(parse_url("udp://127.0.0.1")) == "udp://127.0.0.1:514"
    assert str(parse_url("tcp://syslog.example.net")) == "tcp://syslog.example.net:514"
    assert str(parse_url("tls://siem.example.net")) == "tls://siem.example.net:6514"
    assert str(parse_url("tls://[::1]:7000")) == "tls://[::1]:7000"
    for bad, why in [("http://x:1", "scheme 'http'"), ("udp://:514", "no host"),
                     ("tcp://x:99999", "out of range"), ("tcp://x:1/path", "only a host"),
                     ("x:514", "scheme"), ("udp://x:0", "port 0")]:
        with pytest.raises(SyslogURLError, match=why):
            SyslogSink(bad)
    with pytest.raises(ValueError, match="facility"):
        SyslogSink("udp://127.0.0.1", facility="local9")


def test_an_unusable_ca_file_is_an_operator_error_at_construction(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    for ca in (not_pem, tmp_path / "missing.pem"):
        with pytest.raises(SyslogURLError, match=r"\[audit\] syslog_ca .*no usable PEM") as e:
            SyslogSink("tls://127.0.0.1:6514", ca_file=str(ca))
        assert isinstance(e.value, OperatorError) and e.value.exit_code == 2


async def test_udp_one_datagram_per_event() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        results = Results()
        sink = SyslogSink(f"udp://127.0.0.1:{rx.getsockname()[1]}", hostname="n1",
                          facility="local3", on_drop=results)
        await sink.start()
        evs = [_event(i, user={"name": f"dev\n{i}"}) for i in range(3)]
        for ev in evs:
            sink.emit(ev)
        await sink.aclose()
        got = [parse(rx.recv(65536)) for _ in evs]
    assert [p.params for p in got] == [list(flat_strings(ev).items()) for ev in evs]
    assert {p.pri for p in got} == {19 * 8 + 4} and {p.hostname for p in got} == {"n1"}
    assert results.count("written") == 3 and results.seen == ["written"] * 3


async def test_tcp_octet_counting_and_reconnect_after_the_server_closes() -> None:
    peer = StreamPeer()
    port = await peer.start()
    results = Results()
    sink = SyslogSink(f"tcp://127.0.0.1:{port}", on_drop=results)
    await sink.start()
    sink.emit(_event(0, user={"name": "a\nb ] \" \\"}))
    sink.emit(_event(1))
    msgs = await peer.wait_for(2)
    assert [dict(parse(m).params)["event.seq"] for m in msgs] == ["0", "1"]
    assert dict(parse(msgs[0]).params)["user.name"] == "a\nb ] \" \\"
    for w in peer.writers:  # the server drops the connection (restart, idle timeout)
        w.close()
    await asyncio.sleep(0.1)
    sink.emit(_event(2))
    await peer.wait_for(3)
    assert len(peer.connections) == 2  # reconnected
    sink.reopen()  # SIGHUP: a fresh connection
    sink.emit(_event(3))
    msgs = await peer.wait_for(4)
    await sink.aclose()
    await peer.close()
    assert len(peer.connections) == 3
    assert [dict(parse(m).params)["event.seq"] for m in msgs] == ["0", "1", "2", "3"]
    assert results.count("written") == 4 and results.count("error") == 0


async def test_tls_verified_against_the_ca_and_refused_with_another(tmp_path: Path) -> None:
    ca, cert, key = make_tls_files(tmp_path, "good")
    other_ca, _, _ = make_tls_files(tmp_path, "other")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    peer = StreamPeer(server_tls)
    port = await peer.start()
    good = Results()
    sink = SyslogSink(f"tls://127.0.0.1:{port}", ca_file=str(ca), on_drop=good)
    await sink.start()
    sink.emit(_event(0))
    msgs = await peer.wait_for(1)
    await sink.aclose()
    assert len(msgs) == 1 and parse(msgs[0]).msgid == "radius-authentication"
    assert good.seen == ["written"]

    bad = Results()
    sink = SyslogSink(f"tls://127.0.0.1:{port}", ca_file=str(other_ca), on_drop=bad)
    await sink.start()
    sink.emit(_event(1))
    await sink.aclose()  # within its deadline; the event was never sent
    await peer.close()
    assert len(peer.messages()) == 1 and bad.seen == ["dropped"]


async def test_overflow_and_unreachable_are_counted_never_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    port = _closed_tcp_port()
    results = Results()
    sink = SyslogSink(f"tcp://127.0.0.1:{port}", queue_size=3, on_drop=results)
    for i in range(5):  # before start: queued up to the bound, then dropped
        sink.emit(_event(i))
    assert results.seen == ["dropped", "dropped"]
    caplog.set_level(logging.WARNING, "certgate.audit")
    await sink.start()
    for i in range(20):
        sink.emit(_event(i))
        await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await sink.aclose()
    assert loop.time() - t0 < 3.0
    assert results.count("written") == 0
    assert results.count("dropped") == 5 + 20  # every event accounted for, none raised
    warnings = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited, not one per message


async def test_udp_send_errors_are_counted() -> None:
    port = _closed_udp_port()
    results = Results()
    sink = SyslogSink(f"udp://127.0.0.1:{port}", on_drop=results)
    await sink.start()
    for i in range(3):  # ICMP port unreachable makes a later send fail
        sink.emit(_event(i))
        await asyncio.sleep(0.05)
    await sink.aclose()
    assert len(results.seen) == 3 and results.count("error") >= 1


def _closed_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
