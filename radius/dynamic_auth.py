"""What certgate asks of a NAS when a session's authorization changes (RFC 5176). Pure.

Four changes reach a live 802.1X session:

* ``revoke`` (a final revocation): Disconnect-Request; the device's next authentication is
  rejected.
* ``hold`` (certificateHold, or the MDM reporting the device non-compliant): a CoA-Request
  moving the session to the group's quarantine (``quarantine_vlan``,
  ``quarantine_filter_id``, ``[quarantine_reply]``); a group without quarantine gets a
  Disconnect, and the held certificate is then rejected like a revoked one.
* ``release`` (removeFromCRL / release of the hold, or the MDM reporting it compliant again):
  a CoA-Request back to the group's own VLAN / Filter-Id / ``[reply]``; a group without quarantine has no
  session left to move (they were disconnected), and a group with neither a VLAN nor a
  Filter-Id gets a Disconnect (a CoA cannot *remove* a VLAN: the re-authentication can).
* ``reauthorize`` (the group's VLAN or Filter-Id changed on a config reload): a CoA-Request
  with the new attributes (the quarantine ones for a session whose certificate is held).

Every CoA that the NAS NAKs (Error-Cause, RFC 5176 §3.6) or leaves unanswered falls back to
a Disconnect-Request: the device re-authenticates and gets what the policy says now, so the
change takes effect either way. hostapd, for one, NAKs every CoA that carries a VLAN
(Error-Cause 401 Unsupported-Attribute, or 405 without Hotspot 2.0): there the fallback is
the path. A Disconnect's own result is final.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pki.groups import ReplyAttributes
from radius import packet as rp
from radius.packet import Attr
from radius.reply_attributes import wire


class Change(StrEnum):
    REVOKE = "revoke"
    HOLD = "hold"
    RELEASE = "release"
    REAUTHORIZE = "reauthorize"


Kind = Literal["coa", "disconnect"]
KINDS: tuple[Kind, ...] = ("coa", "disconnect")


@dataclass(frozen=True, slots=True)
class Step:
    """One request to send: a CoA with ``attributes``, or a Disconnect (no attributes)."""

    kind: Kind
    attributes: tuple[tuple[int, bytes], ...] = ()
    fallback: bool = False  # a Disconnect sent because the CoA before it did not take


DISCONNECT = Step("disconnect")


def authorization(vlan: str | None, filter_id: str | None) -> tuple[tuple[int, bytes], ...]:
    """The CoA attributes of a VLAN and/or Filter-Id (the Access-Accept's own encoding)."""
    attrs: list[tuple[int, bytes]] = []
    if vlan:
        attrs += rp.tunnel_vlan_attributes(vlan)
    if filter_id:
        attrs.append((Attr.FILTER_ID, filter_id.encode()))
    return tuple(attrs)


def has_quarantine(reply: ReplyAttributes) -> bool:
    return reply.has_quarantine


def session_attributes(reply: ReplyAttributes, held: bool) -> tuple[tuple[int, bytes], ...]:
    """What a session should carry now: the quarantine when its certificate is held (and the
    group has one), else the group's own VLAN / Filter-Id / [reply] attributes -- the same
    attributes its Access-Accept would carry (``radius.reply.accept_attributes``)."""
    if held and has_quarantine(reply):
        return (*authorization(reply.quarantine_vlan, reply.quarantine_filter_id),
                *wire(reply.quarantine_extra))
    return (*authorization(reply.vlan, reply.filter_id), *wire(reply.extra))


def first_step(change: Change, reply: ReplyAttributes, *, held: bool = False) -> Step | None:
    """The first request for one session, or None when there is nothing to ask.

    ``held`` (``reauthorize`` only): the session's certificate is on hold."""
    if change is Change.REVOKE:
        return DISCONNECT
    if change is Change.HOLD:
        if not has_quarantine(reply):
            return DISCONNECT  # held = rejected in a group without quarantine
        return Step("coa", session_attributes(reply, True))
    if change is Change.RELEASE:
        if not has_quarantine(reply):
            return None  # its sessions were disconnected at the hold
        attrs = session_attributes(reply, False)
        return Step("coa", attrs) if attrs else DISCONNECT
    if change is Change.REAUTHORIZE:
        if held and not has_quarantine(reply):
            return DISCONNECT  # quarantine removed: a held certificate is now rejected
        attrs = session_attributes(reply, held)
        return Step("coa", attrs) if attrs else DISCONNECT
    raise ValueError(f"unknown change {change!r}")


def next_step(step: Step, result: str) -> Step | None:
    """After ``result`` (ack, nak, timeout, error) of ``step``: a CoA that did not take falls
    back to a Disconnect; anything else is the end."""
    if step.kind == "coa" and result != "ack":
        return Step("disconnect", fallback=True)
    return None


def changed_groups(old: dict[str, ReplyAttributes], new: dict[str, ReplyAttributes]
                   ) -> list[str]:
    """Groups (in both) whose VLAN, Filter-Id or quarantine changed: their live sessions
    need a CoA (``reauthorize``)."""
    def key(r: ReplyAttributes) -> tuple:
        return (r.vlan, r.filter_id, r.extra, r.quarantine_vlan, r.quarantine_filter_id,
                r.quarantine_extra)

    return [name for name in new if name in old and key(old[name]) != key(new[name])]
