"""radius.dynamic_auth: what each change asks of a session, and the fallback to Disconnect."""

from __future__ import annotations

import pytest

from pki.groups import ReplyAttributes
from radius.dynamic_auth import (
    DISCONNECT,
    Change,
    Step,
    authorization,
    changed_groups,
    first_step,
    next_step,
    session_attributes,
)

PLAIN = ReplyAttributes(vlan="10", filter_id="staff-acl")
QUARANTINE = ReplyAttributes(vlan="10", filter_id="staff-acl", quarantine_vlan="999",
                             quarantine_filter_id="quarantine-acl")
ONLY_FILTER = ReplyAttributes(vlan="10", quarantine_filter_id="walled-garden")
BARE = ReplyAttributes(quarantine_vlan="999")  # no VLAN of its own


def _vlan(step: Step) -> str | None:
    for code, value in step.attributes:
        if code == 81:
            return value.decode()
    return None


def test_revoke_always_disconnects() -> None:
    for reply in (PLAIN, QUARANTINE, BARE):
        assert first_step(Change.REVOKE, reply) == DISCONNECT


def test_hold_moves_to_quarantine_or_disconnects() -> None:
    step = first_step(Change.HOLD, QUARANTINE)
    assert step is not None and step.kind == "coa" and _vlan(step) == "999"
    assert (11, b"quarantine-acl") in step.attributes
    assert first_step(Change.HOLD, PLAIN) == DISCONNECT  # no quarantine: held = rejected
    only = first_step(Change.HOLD, ONLY_FILTER)
    assert only is not None and only.attributes == ((11, b"walled-garden"),)


def test_release_moves_back() -> None:
    step = first_step(Change.RELEASE, QUARANTINE)
    assert step is not None and step.kind == "coa" and _vlan(step) == "10"
    assert (11, b"staff-acl") in step.attributes
    assert first_step(Change.RELEASE, PLAIN) is None  # disconnected at the hold: nothing left
    assert first_step(Change.RELEASE, BARE) == DISCONNECT  # a CoA cannot remove a VLAN


def test_reauthorize_gives_what_the_session_should_carry() -> None:
    assert _vlan(first_step(Change.REAUTHORIZE, QUARANTINE)) == "10"
    assert _vlan(first_step(Change.REAUTHORIZE, QUARANTINE, held=True)) == "999"
    assert first_step(Change.REAUTHORIZE, PLAIN, held=True) == DISCONNECT
    assert first_step(Change.REAUTHORIZE, ReplyAttributes()) == DISCONNECT


@pytest.mark.parametrize("result", ["nak", "timeout", "error", "no_coa_port"])
def test_a_coa_that_did_not_take_falls_back_to_disconnect(result: str) -> None:
    coa = first_step(Change.HOLD, QUARANTINE)
    assert coa is not None
    fallback = next_step(coa, result)
    assert fallback == Step("disconnect", fallback=True)
    assert next_step(fallback, result) is None  # a Disconnect's result is final


def test_ack_ends() -> None:
    coa = first_step(Change.HOLD, QUARANTINE)
    assert coa is not None and next_step(coa, "ack") is None
    assert next_step(DISCONNECT, "ack") is None


def test_attributes_and_changes() -> None:
    assert authorization(None, None) == ()
    assert session_attributes(QUARANTINE, False) == authorization("10", "staff-acl")
    old = {"staff": QUARANTINE, "guests": PLAIN, "gone": PLAIN}
    new = {"staff": ReplyAttributes(vlan="11", filter_id="staff-acl", quarantine_vlan="999",
                                    quarantine_filter_id="quarantine-acl"),
           "guests": ReplyAttributes(vlan="10", filter_id="staff-acl", class_value="x",
                                     session_timeout=60),
           "new": PLAIN}
    assert changed_groups(old, new) == ["staff"]  # Class / Session-Timeout need no CoA


def test_reply_attributes_ride_along() -> None:
    from pki.groups import ExtraAttribute

    role = ExtraAttribute("Aruba-User-Role", "staff", 26, b"\x00\x00\x39\xe7\x01\x07staff")
    jail = ExtraAttribute("Aruba-User-Role", "quarantine", 26,
                          b"\x00\x00\x39\xe7\x01\x0cquarantine")
    reply = ReplyAttributes(vlan="10", extra=(role,), quarantine_extra=(jail,))
    assert reply.has_quarantine  # a [quarantine_reply] alone is a quarantine
    hold = first_step(Change.HOLD, reply)
    assert hold is not None and hold.attributes == ((26, jail.value),)
    back = first_step(Change.RELEASE, reply)
    assert back is not None and back.attributes == (*authorization("10", None), (26, role.value))
    assert changed_groups({"g": reply}, {"g": ReplyAttributes(vlan="10", extra=(jail,),
                                                               quarantine_extra=(jail,))}) == ["g"]
