"""radius.radsec_peer: who may hold a RadSec connection once TLS verified the chain."""

from __future__ import annotations

import ipaddress

from cryptography.hazmat.primitives.serialization import Encoding

from radius.options import RadiusClient
from radius.radsec_peer import PeerRefusal, certificate_names, check_peer

NET = ipaddress.ip_network("127.0.0.0/8")


def _der(pki, name: str) -> bytes:  # type: ignore[no-untyped-def]
    return pki.clients[name].cert.public_bytes(Encoding.DER)


def _client(pin: str | None = None) -> RadiusClient:
    return RadiusClient("wlc", NET, b"radsec", radsec_name=pin)


def never(group: str, serial: int) -> bool:
    return False


def test_a_nas_certificate_of_a_group_ca_is_admitted(pki) -> None:  # type: ignore[no-untyped-def]
    v = check_peer(_der(pki, "staff-cnonly"), _client(), pki.groups, pki.revoked, never)
    assert v.refusal is None and v.group == "staff" and "bob-laptop" in v.subject


def test_revoked_or_held_is_refused(pki) -> None:  # type: ignore[no-untyped-def]
    v = check_peer(_der(pki, "staff-revoked"), _client(), pki.groups, pki.revoked, never)
    assert v.refusal is PeerRefusal.REVOKED and "revoked" in v.detail


def test_a_device_certificate_is_not_a_nas_credential(pki) -> None:  # type: ignore[no-untyped-def]
    serial = pki.clients["staff-ok"].cert.serial_number
    v = check_peer(_der(pki, "staff-ok"), _client(), pki.groups, pki.revoked,
                   lambda g, s: g == "staff" and s == serial)
    assert v.refusal is PeerRefusal.DEVICE_CERTIFICATE and "--profile nas" in v.detail


def test_pinned_name_matches_a_dns_san_case_insensitively(pki) -> None:  # type: ignore[no-untyped-def]
    der = _der(pki, "guests-ok")  # DNS SAN guest-1.example.test
    assert check_peer(der, _client("Guest-1.Example.Test"), pki.groups, pki.revoked,
                      never).refusal is None
    v = check_peer(der, _client("wlc-2.example.test"), pki.groups, pki.revoked, never)
    assert v.refusal is PeerRefusal.NAME_MISMATCH
    assert "guest-1.example.test" in v.detail and "wlc-2.example.test" in v.detail


def test_pin_falls_back_to_the_cn_without_dns_sans(pki) -> None:  # type: ignore[no-untyped-def]
    der = _der(pki, "staff-cnonly")
    assert certificate_names(pki.clients["staff-cnonly"].cert) == ("bob-laptop",)
    assert check_peer(der, _client("bob-laptop"), pki.groups, pki.revoked, never).refusal is None
    # a DNS SAN present: the CN is not a name to pin
    assert certificate_names(pki.clients["guests-ok"].cert) == ("guest-1.example.test",)


def test_a_certificate_of_another_client_ca_is_judged_by_the_pin_only(pki) -> None:  # type: ignore[no-untyped-def]
    der = _der(pki, "other-ok")  # not under a group intermediate: OpenSSL vouched for it
    v = check_peer(der, _client(), pki.groups, pki.revoked, lambda g, s: True)
    assert v.refusal is None and v.group is None
    assert check_peer(der, _client("x.example"), pki.groups, pki.revoked,
                      never).refusal is PeerRefusal.NAME_MISMATCH


def test_no_certificate(pki) -> None:  # type: ignore[no-untyped-def]
    assert check_peer(None, _client(), pki.groups, pki.revoked,
                      never).refusal is PeerRefusal.NO_CERTIFICATE


def test_inventory_lookup_admits_only_a_nas_row_of_the_same_group(pki) -> None:  # type: ignore[no-untyped-def]
    from radius.radsec_peer import nas_verdict

    ok = check_peer(_der(pki, "staff-cnonly"), _client(), pki.groups, pki.revoked, never)
    assert ok.serial == pki.clients["staff-cnonly"].cert.serial_number
    assert nas_verdict(ok, "nas", "staff") is ok
    for profile, group, words in ((None, None, "not in the inventory"),
                                  ("device", "staff", "recorded as device"),
                                  ("nas", "guests", "recorded for group guests")):
        v = nas_verdict(ok, profile, group)
        assert v.refusal is PeerRefusal.NOT_ISSUED, (profile, group)
        assert words in v.detail, v.detail
    foreign = check_peer(_der(pki, "other-ok"), _client(), pki.groups, pki.revoked, never)
    assert nas_verdict(foreign, None, None) is foreign  # not ours: client_ca vouched for it
    refused = check_peer(_der(pki, "staff-revoked"), _client(), pki.groups, pki.revoked, never)
    assert nas_verdict(refused, "nas", "staff") is refused
