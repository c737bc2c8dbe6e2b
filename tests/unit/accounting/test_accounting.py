"""Accounting codec (RFC 2866) against packets built independently with pyrad."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pyrad.dictionary import Dictionary
from pyrad.packet import AcctPacket

from radius.accounting import (
    StatusType,
    class_value,
    decode_accounting,
    encode_response,
    parse_class,
)
from radius.packet import DropReason, MalformedPacket

SECRET = b"acct-secret-123"
DICT = Path(__file__).resolve().parents[3] / "config" / "dictionary.certgate"


def pyrad_request(**attrs) -> bytes:
    pkt = AcctPacket(secret=SECRET, dict=Dictionary(str(DICT)), id=42)
    for name, value in attrs.items():
        pkt[name.replace("_", "-")] = value
    return pkt.RequestPacket()


def test_start_with_our_class_links_the_certificate() -> None:
    data = pyrad_request(Acct_Status_Type="Start", Acct_Session_Id="S1",
                         NAS_IP_Address="127.0.0.1", Calling_Station_Id="02-00-00-00-00-01",
                         User_Name="dev", Class=[b"staff", class_value("staff", 0xABC)])
    rec = decode_accounting(data, SECRET)
    assert rec.status_type == StatusType.START and rec.session_id == "S1"
    assert rec.nas_ip == "127.0.0.1" and rec.calling_station_id == "02-00-00-00-00-01"
    assert rec.certificate == ("staff", 0xABC)
    reply = encode_response(rec, SECRET)
    assert reply[0] == 5 and reply[1] == 42
    assert reply[4:20] == hashlib.md5(reply[:4] + data[4:20] + reply[20:] + SECRET).digest()


def test_wrong_secret_and_missing_status_are_dropped() -> None:
    data = pyrad_request(Acct_Status_Type="Stop", Acct_Session_Id="S1")
    with pytest.raises(MalformedPacket) as err:
        decode_accounting(data, b"other-secret")
    assert err.value.reason is DropReason.BAD_AUTHENTICATOR
    with pytest.raises(MalformedPacket, match="Acct-Status-Type"):
        decode_accounting(pyrad_request(Acct_Session_Id="S1"), SECRET)
    with pytest.raises(MalformedPacket):
        decode_accounting(data[:19], SECRET)


def test_class_parsing_ignores_foreign_values() -> None:
    assert parse_class([b"staff", b"other"]) is None
    assert parse_class([b"certgate:guests:ff"]) == ("guests", 255)
    assert parse_class([b"certgate:guests:zz"]) is None


async def test_server_caps_records_in_flight_and_finishes_them_at_stop(monkeypatch) -> None:
    import asyncio
    import ipaddress
    import socket

    from radius import accounting
    from radius.options import RadiusClient

    monkeypatch.setattr(accounting, "MAX_IN_FLIGHT", 2)
    client = RadiusClient("nas", ipaddress.ip_network("127.0.0.0/8"), SECRET)
    release = asyncio.Event()
    stored: list[str] = []

    async def slow_sink(name: str, rec) -> None:  # a store that is behind
        await release.wait()
        stored.append(rec.session_id)

    server = accounting.AccountingServer(lambda host: client, slow_sink)
    await server.start("127.0.0.1", 0)
    port = server._transport.get_extra_info("sockname")[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(4):
            sock.sendto(pyrad_request(Acct_Status_Type="Start", Acct_Session_Id=f"S{i}"),
                        ("127.0.0.1", port))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(server._tasks) == 2 and accounting.ACCOUNTING_DROPPED.labels(
                    client="nas", reason="queue_full")._value.get() >= 2:
                break
        assert len(server._tasks) == 2
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0.05)
        release.set()
        await stopping
    assert sorted(stored) == ["S0", "S1"]  # the two accepted records were stored, not cancelled


def test_message_authenticator_checked_when_present() -> None:
    """RFC 3579 MA on Accounting-Request (hostapd sends one): good accepted, tampered dropped."""
    import hmac as _hmac
    import struct

    from radius.packet import attribute

    attrs = attribute(40, (1).to_bytes(4, "big")) + attribute(44, b"S9")
    ma_at = 20 + len(attrs) + 2
    body = attrs + attribute(80, bytes(16))
    header = struct.pack("!BBH", 4, 7, 20 + len(body))
    mac = _hmac.digest(SECRET, header + bytes(16) + body, "md5")
    body = body[: ma_at - 20] + mac
    auth = hashlib.md5(header + bytes(16) + body + SECRET).digest()
    rec = decode_accounting(header + auth + body, SECRET)
    assert rec.session_id == "S9"
    bad = body[:-1] + bytes((body[-1] ^ 1,))
    auth = hashlib.md5(header + bytes(16) + bad + SECRET).digest()
    with pytest.raises(MalformedPacket, match="Message-Authenticator"):
        decode_accounting(header + auth + bad, SECRET)
