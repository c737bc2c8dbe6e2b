"""Reply attributes given by their dictionary name: value checks and the wire encoding.

``[groups.X.reply]`` (and ``quarantine_reply``) name any attribute a controller acts on,
``"Aruba-User-Role" = "staff"``, ``"Cisco-AVPair" = ["url-redirect-acl=guest"]``. The
settings layer looks each name up in the FreeRADIUS-format dictionaries (with pyrad's
parser) and hands this module a ``Definition``; here the value is checked against the
attribute's data type and encoded once, at config load, into ``ExtraAttribute``s that the
Access-Accept (and a CoA) then carries as they are. Pure: no I/O, no pyrad.

Encoding (RFC 2865 §5, RFC 8044 data types): a vendor attribute is one Vendor-Specific
(26) holding vendor id, vendor type and length (the RFC 2865 §5.26 "1,1" format, the only
one pyrad reads); a list gives one attribute per value, in order; an attribute the
dictionary marks ``has_tag`` takes its tag from the key (``"Tunnel-Assignment-Id:2"``,
RFC 2868 §3.1). Encrypted attributes (``encrypt=``) are refused: their value depends on the
request authenticator, so they cannot be built at config load, and certgate has no reason
to send a secret to a NAS. What certgate itself sets (EAP-Message, Message-Authenticator,
State, MS-MPPE keys, User-Name, Session-Timeout, Termination-Action, Proxy-State) cannot be
overridden here, and neither can what a group key already sets (``vlan``, ``filter_id``,
``class``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pki.groups import ExtraAttribute
from radius import packet as rp

MAX_STRING = rp.MAX_ATTR_VALUE  # 253 octets in an attribute
_VSA_HEADER = 6  # vendor id (4), vendor type (1), vendor length (1)
#: All [reply] attributes of one group together: leaves room in the 4096-byte Access-Accept
#: for EAP-Success, the MPPE keys, User-Name, the VLAN, Class and the NAS's Proxy-State.
MAX_REPLY_OCTETS = 2048
MAX_TAG = 0x1F  # RFC 2868 §3.1: tags 0x01-0x1F; 0 is "no tag"

# (vendor, code) -> why it cannot be a [reply] attribute.
SET_BY_CERTGATE: dict[tuple[int, int], str] = {
    (0, rp.Attr.USER_NAME): "certgate sets User-Name to the certificate's identity",
    (0, rp.Attr.STATE): "certgate sets State in its Access-Challenges",
    (0, rp.Attr.VENDOR_SPECIFIC): "name the vendor attribute itself (e.g. \"Aruba-User-Role\")",
    (0, rp.Attr.SESSION_TIMEOUT): "certgate sets Session-Timeout (clamped to the certificate's "
                                  "notAfter): use [groups.<name>] session_timeout",
    (0, rp.Attr.TERMINATION_ACTION): "certgate sets Termination-Action = RADIUS-Request",
    (0, rp.Attr.PROXY_STATE): "Proxy-State belongs to the proxy that sent the request",
    (0, rp.Attr.EAP_MESSAGE): "certgate sets EAP-Message (the EAP-Success)",
    (0, rp.Attr.MESSAGE_AUTHENTICATOR): "certgate sets Message-Authenticator",
    (rp.VENDOR_MICROSOFT, rp.MS_MPPE_SEND_KEY): "certgate sets the MS-MPPE keys of the session",
    (rp.VENDOR_MICROSOFT, rp.MS_MPPE_RECV_KEY): "certgate sets the MS-MPPE keys of the session",
}
# (vendor, code) -> the group key that sets it (an error when both are given).
SET_BY_GROUP_KEY: dict[tuple[int, int], str] = {
    (0, rp.Attr.FILTER_ID): "filter_id",
    (0, rp.Attr.CLASS): "class",
    (0, rp.Attr.TUNNEL_TYPE): "vlan",
    (0, rp.Attr.TUNNEL_MEDIUM_TYPE): "vlan",
    (0, rp.Attr.TUNNEL_PRIVATE_GROUP_ID): "vlan",
}

_INTEGER_RANGES = {
    "byte": (0, 0xFF, "!B"),
    "short": (0, 0xFFFF, "!H"),
    "integer": (0, 0xFFFFFFFF, "!I"),
    "signed": (-(2**31), 2**31 - 1, "!i"),
    "integer64": (0, 2**64 - 1, "!Q"),
    "date": (0, 0xFFFFFFFF, "!I"),
}
_ETHER = re.compile(r"^[0-9A-Fa-f]{2}([:-]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")
_IFID = re.compile(r"^[0-9A-Fa-f]{1,4}(:[0-9A-Fa-f]{1,4}){3}$")
_KEY = re.compile(r"^(?P<name>[^:]+)(?::(?P<tag>[0-9]+))?$")


class ReplyAttributeError(ValueError):
    """A [reply] entry that cannot be sent: the message says why and what to write."""


@dataclass(frozen=True, slots=True)
class Definition:
    """One attribute of a RADIUS dictionary, as the settings layer found it."""

    name: str
    code: int  # the attribute type, or the vendor type inside Vendor-Specific
    datatype: str  # FreeRADIUS data type: string, octets, integer, ipaddr, ...
    vendor: int = 0  # IANA enterprise number; 0 for a standard attribute
    vendor_name: str = ""
    has_tag: bool = False
    encrypt: int = 0  # the dictionary's encrypt= method; 0: none
    values: Mapping[str, int] = field(default_factory=dict)  # VALUE names of an integer type
    sub_attribute: bool = False  # a member of a TLV


def split_key(key: str) -> tuple[str, int | None]:
    """``"Name"`` or ``"Name:TAG"`` -> (name, tag or None)."""
    m = _KEY.match(key.strip())
    if not m:
        raise ReplyAttributeError('expected an attribute name, or "Name:TAG" for a tagged one')
    tag = m.group("tag")
    return m.group("name").strip(), (int(tag) if tag is not None else None)


def check_allowed(defn: Definition, set_keys: Mapping[str, str]) -> None:
    """Refuse what certgate sets itself, what a group key that is set already sets, and what
    cannot be built once at config load. ``set_keys`` maps ``vlan``, ``filter_id`` and
    ``class`` to the name of the group key that sets it here (``quarantine_reply`` has its
    own), for the ones that are set."""
    where = (defn.vendor, defn.code)
    if where in SET_BY_CERTGATE:
        raise ReplyAttributeError(f"cannot be a reply attribute: {SET_BY_CERTGATE[where]}")
    key = set_keys.get(SET_BY_GROUP_KEY.get(where, ""))
    if key:
        raise ReplyAttributeError(f"is already set by the group's `{key}`; give it in one place")
    if defn.encrypt:
        raise ReplyAttributeError(
            f"is encrypted (encrypt={defn.encrypt} in the dictionary); certgate does not send "
            "encrypted reply attributes (their value depends on each request)")
    if defn.sub_attribute or defn.datatype == "tlv":
        raise ReplyAttributeError("is a TLV or part of one; only plain attributes are supported")
    if defn.datatype == "abinary":
        raise ReplyAttributeError("has the Ascend binary filter type, which certgate does not "
                                  "encode; use Filter-Id or NAS-Filter-Rule")
    if defn.vendor and not 0 < defn.code <= 255:
        raise ReplyAttributeError(f"vendor type {defn.code} does not fit the RFC 2865 "
                                  "vendor format (one octet)")
    if defn.datatype not in _ENCODERS:
        raise ReplyAttributeError(f"has data type {defn.datatype}, which certgate does not encode")


def encode_value(defn: Definition, value: Any) -> bytes:
    """The attribute's value octets (without the tag octet, without the VSA header)."""
    return _ENCODERS[defn.datatype](defn, value)


def build(defn: Definition, key: str, values: Any, set_keys: Mapping[str, str]
          ) -> tuple[ExtraAttribute, ...]:
    """Check and encode one ``[reply]`` entry: ``values`` is one TOML value or a list of
    them. Raises ``ReplyAttributeError`` naming the problem (the caller adds the key)."""
    _, tag = split_key(key)
    name = defn.name if tag is None else f"{defn.name}:{tag}"
    check_allowed(defn, set_keys)
    if tag is not None:
        if not defn.has_tag:
            raise ReplyAttributeError(f"{defn.name} is not a tagged attribute; drop :{tag}")
        if not 0 <= tag <= MAX_TAG:
            raise ReplyAttributeError(f"tag {tag} out of range: expected 1-{MAX_TAG}")
    items = values if isinstance(values, list) else [values]
    if not items:
        raise ReplyAttributeError("an empty list: give a value, or drop the key")
    out: list[ExtraAttribute] = []
    for i, item in enumerate(items):
        where = f"[{i}]: " if isinstance(values, list) else ""
        try:
            data = encode_value(defn, item)
            data = _with_tag(defn, data, tag or 0)
            out.append(_wrap(defn, name, data, _text(item)))
        except ReplyAttributeError as exc:
            raise ReplyAttributeError(f"{where}{exc}") from None
    return tuple(out)


def wire(attributes: tuple[ExtraAttribute, ...]) -> list[tuple[int, bytes]]:
    """The (type, value) pairs of encoded reply attributes, in order, for ``radius.packet``."""
    return [(a.type, a.value) for a in attributes]


def total_octets(attributes: tuple[ExtraAttribute, ...]) -> int:
    """What the attributes add to a packet (2 octets of header each)."""
    return sum(2 + len(a.value) for a in attributes)


# --- value encoders ---------------------------------------------------------------------


def _limit(defn: Definition) -> int:
    """The most value octets one attribute of this definition can carry."""
    room = MAX_STRING - (_VSA_HEADER if defn.vendor else 0)
    return room - (1 if defn.has_tag else 0)


def _string(defn: Definition, value: Any) -> bytes:
    if not isinstance(value, str):
        raise ReplyAttributeError(f"{defn.name} is a string attribute; expected a string, "
                                  f"got {_shown(value)}")
    data = value.encode()
    return _sized(defn, data, "string")


def _octets(defn: Definition, value: Any) -> bytes:
    if not isinstance(value, str):
        raise ReplyAttributeError(f"{defn.name} is an octets attribute; expected a string "
                                  f"(text, or hex like \"0x0a0b\"), got {_shown(value)}")
    if value[:2].lower() == "0x":
        try:
            data = bytes.fromhex(value[2:])
        except ValueError:
            raise ReplyAttributeError(f"{_shown(value)} is not hex after 0x") from None
    else:
        data = value.encode()
    return _sized(defn, data, "octets")


def _sized(defn: Definition, data: bytes, kind: str) -> bytes:
    if not data:
        raise ReplyAttributeError(f"an empty {kind} (RFC 2865 §5: a value is at least one octet)")
    limit = _limit(defn)
    if len(data) > limit:
        what = "a vendor attribute" if defn.vendor else "an attribute"
        raise ReplyAttributeError(f"{len(data)} octets is too long: {what} of "
                                  f"{'a tagged ' if defn.has_tag else ''}{kind} holds at most "
                                  f"{limit} (253 minus the headers); split it into a list")
    return data


def _integer(defn: Definition, value: Any) -> bytes:
    lo, hi, fmt = _INTEGER_RANGES[defn.datatype]
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str):
        number = _named(defn, value)
    elif isinstance(value, dt.datetime) and defn.datatype == "date":
        if value.tzinfo is None:
            raise ReplyAttributeError("a date needs a time zone (e.g. 2027-01-01T00:00:00Z)")
        number = int(value.timestamp())
    if number is None:
        names = ", ".join(sorted(defn.values)[:8])
        raise ReplyAttributeError(
            f"{defn.name} is {_a(defn.datatype)} attribute; expected an integer"
            + (f" or one of its names ({names}{', ...' if len(defn.values) > 8 else ''})"
               if names else "") + f", got {_shown(value)}")
    if defn.has_tag and defn.datatype == "integer":
        hi = 0xFFFFFF  # the tag takes the high octet (RFC 2868 §3.1)
    if not lo <= number <= hi:
        raise ReplyAttributeError(f"{number} is out of range for {defn.name} "
                                  f"({defn.datatype}: {lo}..{hi})")
    return struct.pack(fmt, number)


def _named(defn: Definition, text: str) -> int | None:
    if text in defn.values:
        return defn.values[text]
    folded = {k.lower(): v for k, v in defn.values.items()}
    if text.lower() in folded:
        return folded[text.lower()]
    if re.fullmatch(r"-?[0-9]+", text.strip()):
        return int(text)
    return None


def _address(kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address], what: str,
             example: str) -> Callable[[Definition, Any], bytes]:
    def encode(defn: Definition, value: Any) -> bytes:
        try:
            return kind(value if isinstance(value, str) else "").packed
        except ValueError:
            raise ReplyAttributeError(f"{defn.name} is an {what} address attribute; expected "
                                      f"\"{example}\", got {_shown(value)}") from None

    return encode


_ipaddr = _address(ipaddress.IPv4Address, "IPv4", "192.0.2.1")
_ipv6addr = _address(ipaddress.IPv6Address, "IPv6", "2001:db8::1")


def _ipv6prefix(defn: Definition, value: Any) -> bytes:
    """RFC 3162 §2.3: reserved octet, prefix length, the prefix's significant octets."""
    try:
        net = ipaddress.IPv6Network(value if isinstance(value, str) else "", strict=True)
    except ValueError:
        raise ReplyAttributeError(f"{defn.name} is an IPv6 prefix attribute; expected "
                                  f"\"2001:db8::/48\" (no host bits), got {_shown(value)}") from None
    n = net.prefixlen
    return bytes((0, n)) + net.network_address.packed[: (n + 7) // 8]


def _ifid(defn: Definition, value: Any) -> bytes:
    if not isinstance(value, str) or not _IFID.match(value):
        raise ReplyAttributeError(f"{defn.name} is an interface id; expected "
                                  f"\"hhhh:hhhh:hhhh:hhhh\", got {_shown(value)}")
    return b"".join(int(p, 16).to_bytes(2, "big") for p in value.split(":"))


def _ether(defn: Definition, value: Any) -> bytes:
    if not isinstance(value, str) or not _ETHER.match(value):
        raise ReplyAttributeError(f"{defn.name} is a MAC address; expected "
                                  f"\"02:00:00:00:00:01\", got {_shown(value)}")
    return bytes.fromhex(re.sub(r"[:-]", "", value))


_ENCODERS = {
    "string": _string,
    "octets": _octets,
    "integer": _integer,
    "signed": _integer,
    "short": _integer,
    "byte": _integer,
    "integer64": _integer,
    "date": _integer,
    "ipaddr": _ipaddr,
    "ipv6addr": _ipv6addr,
    "ipv6prefix": _ipv6prefix,
    "ifid": _ifid,
    "ether": _ether,
}


def _with_tag(defn: Definition, data: bytes, tag: int) -> bytes:
    """RFC 2868 §3.1: an integer's tag is its high octet; a string's a leading octet, which
    is left out for tag 0 unless the value itself starts with an octet a receiver would read
    as a tag (<= 0x1F), as ``radius.packet.tunnel_vlan_attributes`` does."""
    if not defn.has_tag:
        return data
    if defn.datatype == "integer":
        return bytes((tag,)) + data[1:]
    if tag or data[0] <= MAX_TAG:
        return bytes((tag,)) + data
    return data


def _wrap(defn: Definition, name: str, data: bytes, text: str) -> ExtraAttribute:
    if defn.vendor:
        attr_type, value = rp.vendor_specific(defn.vendor, defn.code, data)
        return ExtraAttribute(name, text, int(attr_type), value)
    return ExtraAttribute(name, text, defn.code, data)


def _text(value: Any) -> str | int:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return str(value)


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
