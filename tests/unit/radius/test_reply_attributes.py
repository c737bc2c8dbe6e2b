"""radius.reply_attributes: [reply] values checked and encoded, cross-checked with pyrad.

Every encoding is compared byte for byte with what pyrad builds for the same attribute
from the same dictionary (config/dictionary.certgate, which includes certgate's packaged
vendor files), and a whole Access-Accept carrying them is decoded by pyrad by name.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from pyrad import packet as pyrad_packet
from pyrad.dictionary import Dictionary

from certgate.settings.dictionaries import _definition
from radius import packet as rp
from radius.reply_attributes import (
    Definition,
    ReplyAttributeError,
    build,
    check_allowed,
    split_key,
    wire,
)

DICT_PATH = Path(__file__).resolve().parents[3] / "config" / "dictionary.certgate"
SECRET = b"reply-attrs-secret"


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    return Dictionary(str(DICT_PATH))


def defn(dictionary: Dictionary, name: str) -> Definition:
    return _definition(dictionary, name)


def pyrad_raw(dictionary: Dictionary, key: str, values: object) -> list[bytes]:
    """What pyrad encodes for ``key`` (raw value octets, without the VSA header)."""
    pkt = pyrad_packet.Packet(dict=dictionary)
    pkt.AddAttribute(key, values)
    name = key.partition(":")[0]
    return list(dict.__getitem__(pkt, pkt._EncodeKey(name)))


def inner(value: bytes, vendor: int) -> bytes:
    """The vendor attribute's data inside one Vendor-Specific value."""
    assert int.from_bytes(value[:4], "big") == vendor
    assert value[5] == len(value) - 4
    return value[6:]


CASES = [
    ("Aruba-User-Role", "staff", "staff"),
    ("Cisco-AVPair", ["url-redirect-acl=guest", "ip:inacl#1=permit ip any any"], None),
    ("Aruba-User-Vlan", 30, 30),
    ("Aruba-Port-Auth-Mode", "Client-Mode", "Client-Mode"),
    ("Airespace-QOS-Level", "gold", "Gold"),  # VALUE names ignore case, like FreeRADIUS
    ("Mikrotik-Rate-Limit", "10M/20M", "10M/20M"),
    ("Mikrotik-Host-IP", "192.0.2.7", "192.0.2.7"),
    ("Ruckus-User-Groups", "staff", "staff"),
    ("WISPr-Bandwidth-Max-Down", 20000000, 20000000),
    ("Filter-Id", "acl-in", "acl-in"),
    ("Idle-Timeout", 600, 600),
    ("Framed-IPv6-Prefix", "2001:db8:1::/48", "2001:db8:1::/48"),
    ("Egress-VLAN-Name", "1voice", "1voice"),
]


@pytest.mark.parametrize(("name", "value", "decoded"), CASES)
def test_encoding_matches_pyrad_and_pyrad_decodes_it(dictionary: Dictionary, name: str,
                                                     value: object, decoded: object) -> None:
    d = defn(dictionary, name)
    attrs = build(d, name, value, {})
    values = value if isinstance(value, list) else [value]
    assert [a.name for a in attrs] == [name] * len(values)
    raw = [inner(a.value, d.vendor) if d.vendor else a.value for a in attrs]
    expected = pyrad_raw(dictionary, name, [decoded if decoded is not None else v for v in values])
    if d.datatype == "ipv6prefix":  # we send the prefix's significant octets (as FreeRADIUS
        # does, RFC 8044 §3.11), pyrad all 16: the same prefix
        expected = [e[: len(r)] for e, r in zip(expected, raw, strict=True)
                    if not any(e[len(r):])]
    assert raw == expected
    for a in attrs:
        assert a.type == (rp.Attr.VENDOR_SPECIFIC if d.vendor else d.code)

    # a whole Access-Accept, decoded by pyrad by name
    req_auth = os.urandom(16)
    request = rp.Request(rp.Code.ACCESS_REQUEST, 7, req_auth, (), None, (), True)
    data = rp.encode_reply(rp.Code.ACCESS_ACCEPT, request, SECRET, wire(attrs))
    reply = pyrad_packet.Packet(secret=SECRET, dict=dictionary, packet=data)
    got = reply[name]
    want = [decoded if decoded is not None else v for v in values]
    assert got == want


def test_tagged_attributes_take_the_tag_from_the_key(dictionary: Dictionary) -> None:
    d = defn(dictionary, "Tunnel-Assignment-Id")
    assert d.has_tag
    (a,) = build(d, "Tunnel-Assignment-Id:3", "pool-a", {})
    assert a.name == "Tunnel-Assignment-Id:3"
    assert a.value == b"\x03pool-a" == pyrad_raw(dictionary, "Tunnel-Assignment-Id:3", "pool-a")[0]
    (untagged,) = build(d, "Tunnel-Assignment-Id", "pool-a", {})
    assert untagged.value == b"pool-a"  # tag 0 left out, as FreeRADIUS writes it
    (low,) = build(d, "Tunnel-Assignment-Id", "\x05x", {})
    assert low.value == b"\x00\x05x"  # a first octet <= 0x1F would be read as a tag
    p = defn(dictionary, "Tunnel-Preference")
    (pref,) = build(p, "Tunnel-Preference:2", 7, {})
    assert pref.value == b"\x02\x00\x00\x07" == pyrad_raw(dictionary, "Tunnel-Preference:2", 7)[0]
    with pytest.raises(ReplyAttributeError, match="out of range"):
        build(p, "Tunnel-Preference:2", 0x1000000, {})  # the tag takes the high octet
    with pytest.raises(ReplyAttributeError, match="is not a tagged attribute"):
        build(defn(dictionary, "Aruba-User-Role"), "Aruba-User-Role:1", "x", {})
    with pytest.raises(ReplyAttributeError, match="tag 40 out of range"):
        build(d, "Tunnel-Assignment-Id:40", "x", {})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("Aruba-User-Vlan", "thirty", "expected an integer"),
        ("Aruba-User-Vlan", -1, "out of range"),
        ("Aruba-User-Vlan", 2**32, "out of range"),
        ("Aruba-User-Vlan", True, "expected an integer"),
        ("Aruba-Port-Auth-Mode", "Bogus-Mode", "Client-Mode"),  # lists the VALUE names
        ("Aruba-User-Role", 7, "expected a string"),
        ("Aruba-User-Role", "", "empty string"),
        ("Aruba-User-Role", "x" * 248, "at most 247"),  # 253 - 6 octets of vendor header
        ("Filter-Id", "x" * 254, "at most 253"),
        ("Mikrotik-Host-IP", "192.0.2.300", "expected \"192.0.2.1\""),
        ("Mikrotik-Host-IP", 3232235777, "IPv4 address"),
        ("Framed-IPv6-Prefix", "2001:db8::1/48", "no host bits"),
        ("Chargeable-User-Identity", "0xzz", "not hex"),
    ],
)
def test_wrong_values_say_what_is_expected(dictionary: Dictionary, name: str, value: object,
                                           message: str) -> None:
    with pytest.raises(ReplyAttributeError, match=message):
        build(defn(dictionary, name), name, value, {})


def test_a_list_error_names_the_index(dictionary: Dictionary) -> None:
    with pytest.raises(ReplyAttributeError, match=r"^\[1\]: .*expected a string"):
        build(defn(dictionary, "Cisco-AVPair"), "Cisco-AVPair", ["a=b", 3], {})
    with pytest.raises(ReplyAttributeError, match="empty list"):
        build(defn(dictionary, "Cisco-AVPair"), "Cisco-AVPair", [], {})


@pytest.mark.parametrize("name", ["EAP-Message", "Message-Authenticator", "State",
                                  "MS-MPPE-Send-Key", "MS-MPPE-Recv-Key", "User-Name",
                                  "Session-Timeout", "Termination-Action", "Proxy-State",
                                  "Vendor-Specific"])
def test_what_certgate_sets_itself_is_refused(dictionary: Dictionary, name: str) -> None:
    with pytest.raises(ReplyAttributeError, match="cannot be a reply attribute"):
        check_allowed(defn(dictionary, name), {})


def test_group_keys_and_reply_cannot_both_set_an_attribute(dictionary: Dictionary) -> None:
    for name, key in (("Filter-Id", "filter_id"), ("Tunnel-Private-Group-Id", "vlan"),
                      ("Tunnel-Type", "vlan"), ("Class", "class")):
        check_allowed(defn(dictionary, name), {})  # fine while the group key is not set
        with pytest.raises(ReplyAttributeError, match=f"set by the group's `{key}`"):
            check_allowed(defn(dictionary, name), {key: key})
    with pytest.raises(ReplyAttributeError, match="`quarantine_vlan`"):
        check_allowed(defn(dictionary, "Tunnel-Private-Group-Id"), {"vlan": "quarantine_vlan"})


def test_encrypted_and_unencodable_attributes_are_refused(dictionary: Dictionary) -> None:
    with pytest.raises(ReplyAttributeError, match="encrypted"):
        check_allowed(defn(dictionary, "Aruba-MPSK-Passphrase"), {})
    with pytest.raises(ReplyAttributeError, match="encrypted"):
        check_allowed(defn(dictionary, "Tunnel-Password"), {})
    with pytest.raises(ReplyAttributeError, match="one octet"):
        check_allowed(Definition("X-Wide", 300, "string", vendor=99), {})
    with pytest.raises(ReplyAttributeError, match="TLV"):
        check_allowed(Definition("X-Tlv", 1, "tlv", vendor=99), {})
    with pytest.raises(ReplyAttributeError, match="Ascend"):
        check_allowed(Definition("X-Filter", 242, "abinary"), {})


def test_other_data_types(dictionary: Dictionary) -> None:
    when = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    (date,) = build(Definition("X-Date", 200, "date"), "X-Date", when, {})
    assert date.value == int(when.timestamp()).to_bytes(4, "big")
    with pytest.raises(ReplyAttributeError, match="time zone"):
        build(Definition("X-Date", 200, "date"), "X-Date", dt.datetime(2027, 1, 1), {})
    (mac,) = build(Definition("X-Mac", 201, "ether"), "X-Mac", "02-00-00-aa-bb-cc", {})
    assert mac.value == bytes.fromhex("020000aabbcc")
    (ifid,) = build(defn(dictionary, "Framed-Interface-Id"), "Framed-Interface-Id",
                    "0211:22ff:fe33:4455", {})
    assert ifid.value == pyrad_raw(dictionary, "Framed-Interface-Id", "0211:22ff:fe33:4455")[0]
    (v6,) = build(defn(dictionary, "Login-IPv6-Host"), "Login-IPv6-Host", "2001:db8::1", {})
    assert v6.value == pyrad_raw(dictionary, "Login-IPv6-Host", "2001:db8::1")[0]
    (signed,) = build(Definition("X-Signed", 202, "signed"), "X-Signed", -5, {})
    assert signed.value == (-5).to_bytes(4, "big", signed=True)
    (octets,) = build(defn(dictionary, "Chargeable-User-Identity"), "Chargeable-User-Identity",
                      "0x0a0b", {})
    assert octets.value == b"\x0a\x0b"
    (numeric,) = build(defn(dictionary, "Aruba-User-Vlan"), "Aruba-User-Vlan", "30", {})
    assert numeric.value.endswith((30).to_bytes(4, "big"))


def test_split_key() -> None:
    assert split_key("Aruba-User-Role") == ("Aruba-User-Role", None)
    assert split_key("Tunnel-Assignment-Id:2") == ("Tunnel-Assignment-Id", 2)
    with pytest.raises(ReplyAttributeError):
        split_key("Name:x")


def test_explain_describes_them_by_name(dictionary: Dictionary) -> None:
    from radius.reply import describe

    extra = (build(defn(dictionary, "Aruba-User-Role"), "Aruba-User-Role", "staff", {})
             + build(defn(dictionary, "Idle-Timeout"), "Idle-Timeout", 900, {}))
    attrs = [(rp.Attr.FILTER_ID, b"acl"), *wire(extra)]
    assert describe(attrs, extra) == [
        {"type": 11, "name": "Filter-Id", "value": "acl"},
        {"type": 26, "name": "Aruba-User-Role", "value": "staff", "vendor": 14823},
        {"type": 28, "name": "Idle-Timeout", "value": 900},
    ]
