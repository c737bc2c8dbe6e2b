"""The Access-Accept attributes an authorization decision gives a device, and their names.

One function builds them for both the RADIUS server (which adds EAP-Success and the
per-session MS-MPPE keys around them) and ``certgate explain`` (which prints them), so what
explain shows is byte for byte what a NAS receives. Pure: no clock, no I/O.
"""

from __future__ import annotations

import functools
import struct

from pki.groups import ExtraAttribute, Group
from radius import packet as rp
from radius.accounting import class_value
from radius.authorize import Allow
from radius.packet import Attr
from radius.reply_attributes import wire

TERMINATION_ACTION = (Attr.TERMINATION_ACTION, rp.integer(rp.TERMINATION_ACTION_RADIUS_REQUEST))

NAMES = {
    Attr.USER_NAME: "User-Name",
    Attr.FILTER_ID: "Filter-Id",
    Attr.CLASS: "Class",
    Attr.SESSION_TIMEOUT: "Session-Timeout",
    Attr.TERMINATION_ACTION: "Termination-Action",
    Attr.TUNNEL_TYPE: "Tunnel-Type",
    Attr.TUNNEL_MEDIUM_TYPE: "Tunnel-Medium-Type",
    Attr.TUNNEL_PRIVATE_GROUP_ID: "Tunnel-Private-Group-Id",
}
_INTEGER_NAMES = {
    Attr.TUNNEL_TYPE: {rp.TUNNEL_TYPE_VLAN: "VLAN"},
    Attr.TUNNEL_MEDIUM_TYPE: {rp.TUNNEL_MEDIUM_IEEE_802: "IEEE-802"},
    Attr.TERMINATION_ACTION: {rp.TERMINATION_ACTION_RADIUS_REQUEST: "RADIUS-Request"},
}
# Added by the server per authentication, never by this module (explain lists them as such).
PER_SESSION = ("EAP-Message (EAP-Success)", "MS-MPPE-Send-Key", "MS-MPPE-Recv-Key",
               "Message-Authenticator")


@functools.lru_cache(maxsize=256)
def group_attributes(
    vlan: str | None, filter_id: str | None, class_value: str | None
) -> tuple[tuple[int, bytes], ...]:
    """The attributes of a group's [reply] settings, built once per value."""
    attrs: list[tuple[int, bytes]] = []
    if vlan:
        attrs += rp.tunnel_vlan_attributes(vlan)
    if filter_id:
        attrs.append((Attr.FILTER_ID, filter_id.encode()))
    if class_value:
        attrs.append((Attr.CLASS, class_value.encode()))
    return tuple(attrs)


def accept_attributes(allow: Allow) -> list[tuple[int, bytes]]:
    """User-Name, the group's VLAN / Filter-Id / Class, its [reply] attributes (vendor
    attributes by name, encoded at config load) -- for a certificate on hold the quarantine's
    VLAN / Filter-Id / [quarantine_reply] instead --, certgate's own Class (links the NAS's
    accounting to the certificate), Session-Timeout (clamped to notAfter by ``authorize``)
    and Termination-Action, in the order the Access-Accept carries them."""
    reply = allow.group.reply
    attrs: list[tuple[int, bytes]] = [(Attr.USER_NAME, allow.identity.encode()[: rp.MAX_ATTR_VALUE])]
    if allow.quarantined:  # on hold: the quarantine instead of the group's own attributes
        attrs += group_attributes(reply.quarantine_vlan, reply.quarantine_filter_id,
                                  reply.class_value)
        attrs += wire(reply.quarantine_extra)
    else:
        attrs += group_attributes(reply.vlan, reply.filter_id, reply.class_value)
        attrs += wire(reply.extra)
    attrs.append((Attr.CLASS, class_value(allow.group.name, allow.serial)))
    attrs.append((Attr.SESSION_TIMEOUT, rp.integer(allow.session_timeout)))
    attrs.append(TERMINATION_ACTION)
    return attrs


def quarantine_attributes(group: Group) -> list[tuple[int, bytes]]:
    """The group's ``[groups.X.quarantine_reply]`` attributes as (type, value) pairs, for the
    Access-Accept or CoA-Request that puts a device into quarantine."""
    return wire(group.reply.quarantine_extra)


def describe(attrs: list[tuple[int, bytes]], extra: tuple[ExtraAttribute, ...] = ()
             ) -> list[dict[str, object]]:
    """Each attribute as ``{"type", "name", "value"}`` (an int or text), plus ``label`` (the
    dictionary name of an integer value) and ``tag`` (RFC 2868) when there is one. An
    attribute of ``extra`` (the group's [reply] entries) is shown by its dictionary name with
    the value as configured, and ``vendor`` for a vendor attribute."""
    named = {(a.type, a.value): a for a in extra}
    out: list[dict[str, object]] = []
    for attr_type, value in attrs:
        known = named.get((attr_type, value))
        if known is not None:
            entry: dict[str, object] = {"type": int(attr_type), "name": known.name,
                                        "value": known.text}
            if attr_type == Attr.VENDOR_SPECIFIC and len(value) >= 4:
                entry["vendor"] = int.from_bytes(value[:4], "big")
            out.append(entry)
            continue
        name = NAMES.get(attr_type, f"Attr-{attr_type}")
        entry = {"type": int(attr_type), "name": name}
        if attr_type in (Attr.SESSION_TIMEOUT, *_INTEGER_NAMES) and len(value) == 4:
            (number,) = struct.unpack("!I", value)
            tag, number = (number >> 24, number & 0xFFFFFF) if attr_type in (
                Attr.TUNNEL_TYPE, Attr.TUNNEL_MEDIUM_TYPE) else (0, number)
            entry["value"] = number
            label = _INTEGER_NAMES.get(attr_type, {}).get(number)
            if label:
                entry["label"] = label
            if tag:
                entry["tag"] = tag
        elif attr_type == Attr.TUNNEL_PRIVATE_GROUP_ID and value and value[0] <= 0x1F:
            entry["value"] = value[1:].decode("utf-8", "backslashreplace")
            if value[0]:
                entry["tag"] = value[0]
        else:
            entry["value"] = value.decode("utf-8", "backslashreplace")
        out.append(entry)
    return out
