"""radius.authorize: pure policy with an explicit clock."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.groups import Group, GroupTable, ReplyAttributes
from radius.authorize import Allow, Deny, authorize, identity_of
from radius.reasons import Reason
from revocation.snapshot import RevocationIndex

NOW = dt.datetime.now(dt.UTC)


def _chain(pki, name):  # type: ignore[no-untyped-def]
    issued = pki.clients[name]
    return [issued.cert, *issued.chain, pki.root.cert]


def test_allow_full_handshake(pki) -> None:  # type: ignore[no-untyped-def]
    chain = _chain(pki, "staff-ok")
    d = authorize(chain[0], chain, False, pki.groups, pki.revoked, NOW)
    assert isinstance(d, Allow)
    assert d.group.name == "staff" and d.identity == "alice@example.test"
    assert d.session_timeout == 3600
    assert d.serial == chain[0].serial_number


def test_session_timeout_clamped_to_not_after(pki) -> None:  # type: ignore[no-untyped-def]
    chain = _chain(pki, "staff-ok")
    late = chain[0].not_valid_after_utc - dt.timedelta(seconds=100)
    d = authorize(chain[0], chain, False, pki.groups, pki.revoked, late)
    assert isinstance(d, Allow) and d.session_timeout == 100


def test_session_timeout_without_group_value_is_time_to_expiry(pki) -> None:  # type: ignore[no-untyped-def]
    chain = _chain(pki, "guests-ok")
    d = authorize(chain[0], chain, False, pki.groups, pki.revoked, NOW)
    assert isinstance(d, Allow)
    assert d.session_timeout == int((chain[0].not_valid_after_utc - NOW).total_seconds())


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("staff-revoked", Reason.REVOKED),
        ("staff-expired", Reason.EXPIRED),
        ("staff-notyet", Reason.NOT_YET_VALID),
        ("staff-serveronly", Reason.BAD_EKU),
        ("other-ok", Reason.UNKNOWN_GROUP),
    ],
)
def test_deny(pki, name, reason) -> None:  # type: ignore[no-untyped-def]
    chain = _chain(pki, name)
    d = authorize(chain[0], chain, False, pki.groups, pki.revoked, NOW)
    assert isinstance(d, Deny) and d.reason is reason


def test_rogue_chain_with_copied_dn_is_not_a_group(pki) -> None:  # type: ignore[no-untyped-def]
    rogue = pki.clients["rogue-ok"]
    assert rogue.chain[0].subject == pki.staff_ca.cert.subject
    chain = [rogue.cert, rogue.chain[0], pki.rogue_root.cert]
    d = authorize(rogue.cert, chain, False, pki.groups, pki.revoked, NOW)
    assert isinstance(d, Deny) and d.reason is Reason.UNKNOWN_GROUP
    # resumed path: signature check, not DN
    d = authorize(rogue.cert, None, True, pki.groups, pki.revoked, NOW)
    assert isinstance(d, Deny) and d.reason is Reason.UNKNOWN_GROUP


def test_resumed_rechecks_everything(pki) -> None:  # type: ignore[no-untyped-def]
    leaf = pki.clients["staff-ok"].cert
    assert isinstance(authorize(leaf, None, True, pki.groups, pki.revoked, NOW), Allow)
    revoked = RevocationIndex([("staff", leaf.serial_number)])
    d = authorize(leaf, None, True, pki.groups, revoked, NOW)
    assert isinstance(d, Deny) and d.reason is Reason.REVOKED
    later = leaf.not_valid_after_utc + dt.timedelta(seconds=1)
    d = authorize(leaf, None, True, pki.groups, pki.revoked, later)
    assert isinstance(d, Deny) and d.reason is Reason.EXPIRED
    # group removed from the configuration
    only_guests = GroupTable([g for g in pki.groups if g.name == "guests"])
    d = authorize(leaf, None, True, only_guests, pki.revoked, NOW)
    assert isinstance(d, Deny) and d.reason is Reason.UNKNOWN_GROUP


def test_expired_group_ca(pki) -> None:  # type: ignore[no-untyped-def]
    chain = _chain(pki, "staff-ok")
    far = pki.staff_ca.cert.not_valid_after_utc + dt.timedelta(days=1)
    groups = GroupTable([Group("staff", pki.staff_ca.cert, ReplyAttributes())])
    d = authorize(chain[0], chain, False, groups, pki.revoked, far)
    assert isinstance(d, Deny) and d.reason is Reason.EXPIRED


def test_naive_now_is_a_bug(pki) -> None:  # type: ignore[no-untyped-def]
    chain = _chain(pki, "staff-ok")
    with pytest.raises(ValueError):
        authorize(chain[0], chain, False, pki.groups, pki.revoked, dt.datetime.now())


def test_identity_upn(pki) -> None:  # type: ignore[no-untyped-def]
    key = pki.staff_ca.key
    upn = b"\x0c\x11user@corp.example"
    cert = (
        x509.CertificateBuilder()
        .subject_name(pki.clients["staff-ok"].cert.subject)
        .issuer_name(pki.staff_ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), upn)]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    assert identity_of(cert) == "user@corp.example"


def test_inventory_allow_list(pki) -> None:  # type: ignore[no-untyped-def]
    chain = _chain(pki, "staff-ok")
    serial = chain[0].serial_number
    asked: list[tuple[str, int]] = []

    def issued(group: str, s: int) -> bool:
        asked.append((group, s))
        return s != serial

    d = authorize(chain[0], chain, False, pki.groups, pki.revoked, NOW, issued)
    assert isinstance(d, Deny) and d.reason is Reason.NOT_ISSUED and d.group == "staff"
    assert asked == [("staff", serial)]
    d = authorize(chain[0], None, True, pki.groups, pki.revoked, NOW, lambda g, s: True)
    assert isinstance(d, Allow)  # resumed sessions ask too, and pass when issued
    revoked_chain = _chain(pki, "staff-revoked")
    d = authorize(revoked_chain[0], revoked_chain, False, pki.groups, pki.revoked, NOW,
                  lambda g, s: False)
    assert isinstance(d, Deny) and d.reason is Reason.REVOKED  # revocation is reported first


def test_hold_admits_into_quarantine_when_the_group_has_one(pki) -> None:  # type: ignore[no-untyped-def]
    from radius.reply import accept_attributes, describe

    chain = _chain(pki, "staff-ok")
    serial = chain[0].serial_number
    staff = pki.groups.by_name("staff")
    held = RevocationIndex(held=[("staff", serial)], entries=[("staff", serial)])
    plain = GroupTable([staff])
    d = authorize(chain[0], chain, False, plain, held, NOW)
    assert isinstance(d, Deny) and d.reason is Reason.REVOKED  # no quarantine: held = revoked

    quarantined = GroupTable([Group("staff", staff.intermediate, ReplyAttributes(
        vlan="10", filter_id="staff-acl", class_value="cg-staff", session_timeout=3600,
        quarantine_vlan="999", quarantine_filter_id="quarantine-acl"))])
    d = authorize(chain[0], chain, False, quarantined, held, NOW)
    assert isinstance(d, Allow) and d.quarantined and d.group.name == "staff"
    shown = {a["name"]: a["value"] for a in describe(accept_attributes(d))}
    assert shown["Tunnel-Private-Group-Id"] == "999" and shown["Filter-Id"] == "quarantine-acl"
    for resumed in (True,):  # a resumed session is re-checked the same way
        r = authorize(chain[0], None, resumed, quarantined, held, NOW)
        assert isinstance(r, Allow) and r.quarantined

    final = RevocationIndex([("staff", serial)])  # revoked for good: never quarantined
    assert isinstance(authorize(chain[0], chain, False, quarantined, final, NOW), Deny)
    held.add("staff", serial)  # the hold turned final
    assert not held.is_held("staff", serial)
    assert isinstance(authorize(chain[0], chain, False, quarantined, held, NOW), Deny)
    ok = authorize(chain[0], chain, False, quarantined, RevocationIndex(), NOW)
    assert isinstance(ok, Allow) and not ok.quarantined
    shown = {a["name"]: a["value"] for a in describe(accept_attributes(ok))}
    assert shown["Tunnel-Private-Group-Id"] == "10" and shown["Filter-Id"] == "staff-acl"


def test_reply_attributes_replaced_live(pki) -> None:  # type: ignore[no-untyped-def]
    chain = _chain(pki, "staff-ok")
    staff = pki.groups.by_name("staff")
    table = GroupTable([staff])
    new = ReplyAttributes(vlan="11", quarantine_vlan="999")
    assert table.replace_replies({"staff": new, "nope": new}) == ["staff"]
    assert table.replace_replies({"staff": new}) == []
    d = authorize(chain[0], chain, False, table, RevocationIndex(), NOW)
    assert isinstance(d, Allow) and d.group.reply.vlan == "11"
    assert table.for_intermediate(staff.intermediate).reply == new
