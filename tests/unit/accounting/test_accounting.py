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
