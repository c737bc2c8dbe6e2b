"""radius.verdict: the explain core, against the unit PKI, and against the real handshake.

Every case is also run through an in-memory EAP-TLS authentication (EapTlsSession with the
TLS context the server builds, a pyOpenSSL supplicant holding the private key), and the
verdict must agree with it: same accept/reject, same reason, same group. The accepted case
is also run through RadiusServer.handle_datagram, and the Access-Accept must carry exactly
the attributes the verdict lists (plus the per-session EAP, MPPE and authenticator ones).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from radius import packet as rp
from radius.eap_tls import Accept, EapTlsSession, Reject
from radius.options import EapOptions, RadiusClient
from radius.packet import Attr, Code
from radius.reasons import Reason
from radius.reply import describe
from radius.server import RadiusServer
from radius.verdict import evaluate, parse_certificates, policy, verify_chain
from revocation.snapshot import RevocationIndex

SECRET = b"testing123"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _explain(pki, name, *, send_chain=True, revoked=None, issued=None, closed=None, now=None):  # type: ignore[no-untyped-def]
    issued_cert = pki.clients[name]
    decide = policy(pki.groups, pki.revoked if revoked is None else revoked, issued, closed)
    return evaluate(issued_cert.cert, issued_cert.chain if send_chain else [],
                    root=pki.root.cert, intermediates=[g.intermediate for g in pki.groups],
                    decide=decide, now=now or _now())


def _handshake(pki, context_factory, peer_factory, roundtrip, name, *, send_chain=True,  # type: ignore[no-untyped-def]
               revoked=None, issued=None, closed=None, tls="1.2"):
    decide = policy(pki.groups, pki.revoked if revoked is None else revoked, issued, closed)
    session = EapTlsSession(context_factory(), decide, now=time.time())
    result, _ = roundtrip(session, peer_factory(name, tls=tls, send_chain=send_chain), time.time())
    assert isinstance(result, Accept | Reject)
    return result


def _agree(verdict, result) -> None:  # type: ignore[no-untyped-def]
    if isinstance(result, Accept):
        assert verdict.accepted, (verdict, result)
        assert verdict.group == result.allow.group.name
    else:
        assert not verdict.accepted, (verdict, result)
        assert verdict.reason is result.reason, (verdict.decision, result.reason, result.detail)
        assert verdict.group == result.group


@pytest.mark.parametrize(("name", "reason", "group"), [
    ("staff-ok", Reason.OK, "staff"),
    ("guests-ok", Reason.OK, "guests"),
    ("staff-revoked", Reason.REVOKED, "staff"),
    ("staff-expired", Reason.EXPIRED, None),  # OpenSSL's chain check refuses it first
    ("staff-notyet", Reason.NOT_YET_VALID, None),
    ("staff-serveronly", Reason.BAD_EKU, None),  # ssl_client purpose: no clientAuth
    ("rogue-ok", Reason.UNKNOWN_ISSUER, None),  # foreign root with our DNs
    ("other-ok", Reason.UNKNOWN_GROUP, None),  # our root, not a group intermediate
])
@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_verdict_agrees_with_a_real_handshake(pki, context_factory, peer_factory, roundtrip,  # type: ignore[no-untyped-def]
                                               name, reason, group, tls) -> None:
    verdict = _explain(pki, name)
    assert verdict.reason is reason, verdict.decision
    assert verdict.group == group
    assert verdict.accepted is (reason is Reason.OK)
    _agree(verdict, _handshake(pki, context_factory, peer_factory, roundtrip, name, tls=tls))


def test_accept_lists_the_chain_and_the_reply(pki) -> None:  # type: ignore[no-untyped-def]
    verdict = _explain(pki, "staff-ok")
    leaf = pki.clients["staff-ok"].cert
    assert verdict.chain == (leaf, pki.staff_ca.cert, pki.root.cert)
    shown = [(a["name"], a["value"], a.get("label")) for a in describe(list(verdict.attributes))]
    assert shown == [
        ("User-Name", "alice@example.test", None), ("Tunnel-Type", 13, "VLAN"),
        ("Tunnel-Medium-Type", 6, "IEEE-802"), ("Tunnel-Private-Group-Id", "10", None),
        ("Filter-Id", "staff-acl", None), ("Class", "cg-staff", None),
        ("Class", f"certgate:staff:{leaf.serial_number:x}", None),
        ("Session-Timeout", 3600, None), ("Termination-Action", 1, "RADIUS-Request"),
    ]


def test_describe_tags_and_unknown_attributes() -> None:
    tagged = rp.tunnel_vlan_attributes("30", tag=2) + [(Attr.NAS_PORT, b"\x00\x01")]
    shown = describe(tagged)
    assert shown[0] == {"type": 64, "name": "Tunnel-Type", "value": 13, "label": "VLAN", "tag": 2}
    assert shown[2] == {"type": 81, "name": "Tunnel-Private-Group-Id", "value": "30", "tag": 2}
    assert shown[3]["name"] == "Attr-5"


def test_session_timeout_clamped_to_not_after(pki) -> None:  # type: ignore[no-untyped-def]
    leaf = pki.clients["guests-ok"].cert  # guests: no session_timeout of its own
    late = leaf.not_valid_after_utc - dt.timedelta(seconds=90)
    verdict = _explain(pki, "guests-ok", now=late)
    assert verdict.accepted
    assert dict((t, v) for t, v in verdict.attributes)[Attr.SESSION_TIMEOUT] == rp.integer(90)


def test_at_a_later_time_the_certificate_is_expired(pki) -> None:  # type: ignore[no-untyped-def]
    leaf = pki.clients["staff-ok"].cert
    verdict = _explain(pki, "staff-ok", now=leaf.not_valid_after_utc + dt.timedelta(seconds=1))
    assert verdict.reason is Reason.EXPIRED and "depth 0" in verdict.detail


def test_on_hold_is_revoked(pki, context_factory, peer_factory, roundtrip) -> None:  # type: ignore[no-untyped-def]
    """A certificateHold is an entry of the revocation index like any revocation."""
    held = RevocationIndex([("guests", pki.clients["guests-ok"].cert.serial_number)])
    verdict = _explain(pki, "guests-ok", revoked=held)
    assert verdict.reason is Reason.REVOKED and verdict.group == "guests"
    _agree(verdict, _handshake(pki, context_factory, peer_factory, roundtrip, "guests-ok",
                               revoked=held))
    held.discard("guests", pki.clients["guests-ok"].cert.serial_number)  # released
    assert _explain(pki, "guests-ok", revoked=held).accepted


def test_inventory(pki, context_factory, peer_factory, roundtrip) -> None:  # type: ignore[no-untyped-def]
    serial = pki.clients["staff-ok"].cert.serial_number
    cases = [
        (lambda g, s: False, Reason.NOT_ISSUED),  # not in the inventory (require_inventory)
        (lambda g, s: (g, s) == ("guests", serial), Reason.NOT_ISSUED),  # wrong group
        (lambda g, s: None, Reason.STORE_UNAVAILABLE),  # never seen, store unreachable
        (lambda g, s: (g, s) == ("staff", serial), Reason.OK),
    ]
    for issued, reason in cases:
        verdict = _explain(pki, "staff-ok", issued=issued)
        assert verdict.reason is reason
        _agree(verdict, _handshake(pki, context_factory, peer_factory, roundtrip, "staff-ok",
                                   issued=issued))


def test_outage_grace_passed_rejects_everything(pki) -> None:  # type: ignore[no-untyped-def]
    verdict = _explain(pki, "staff-ok", closed=lambda: True)
    assert verdict.reason is Reason.STORE_UNAVAILABLE and not verdict.attributes


def test_the_group_is_the_signing_intermediate(pki) -> None:  # type: ignore[no-untyped-def]
    verdict = _explain(pki, "guests-ok")
    values = dict((t, v) for t, v in verdict.attributes)
    assert verdict.group == "guests" and values[Attr.TUNNEL_PRIVATE_GROUP_ID] == b"20"
    assert Attr.FILTER_ID not in values


def test_nongroup_intermediate_not_sent_is_an_unknown_issuer(pki, context_factory,  # type: ignore[no-untyped-def]
                                                              peer_factory, roundtrip) -> None:
    verdict = _explain(pki, "other-ok", send_chain=False)
    assert verdict.reason is Reason.UNKNOWN_ISSUER
    _agree(verdict, _handshake(pki, context_factory, peer_factory, roundtrip, "other-ok",
                               send_chain=False))
    # a group leaf needs no chain: the group intermediates are in the trust store
    assert _explain(pki, "staff-ok", send_chain=False).accepted


def test_no_eku_at_all_is_bad_eku_from_authorize(pki) -> None:  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no-eku")]))
            .issuer_name(pki.staff_ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(pki.staff_ca.key, hashes.SHA256()))
    verdict = evaluate(leaf, [], root=pki.root.cert,
                       intermediates=[g.intermediate for g in pki.groups],
                       decide=policy(pki.groups, pki.revoked), now=now)
    assert verdict.reason is Reason.BAD_EKU and verdict.group == "staff"
    assert verdict.detail == "no extendedKeyUsage"


def test_verify_chain_requires_an_aware_time_and_reports_openssl_errors(pki) -> None:  # type: ignore[no-untyped-def]
    deny = verify_chain(pki.clients["rogue-ok"].cert, pki.clients["rogue-ok"].chain,
                        pki.root.cert, [pki.staff_ca.cert], _now())
    assert not isinstance(deny, list) and deny.reason is Reason.UNKNOWN_ISSUER
    assert deny.detail.startswith("X509 verify error ")
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(pki.clients["staff-ok"].cert, [], root=pki.root.cert, intermediates=[],
                 decide=policy(pki.groups, pki.revoked), now=dt.datetime.now())


def test_accept_attributes_are_what_the_server_sends(pki, context_factory, peer_factory) -> None:  # type: ignore[no-untyped-def]
    verdict = _explain(pki, "staff-ok")
    server = RadiusServer([RadiusClient("nas1", ipaddress.ip_network("127.0.0.0/8"), SECRET)],
                          EapOptions(), context_factory(), policy(pki.groups, pki.revoked))
    peer = peer_factory("staff-ok")
    message, state = peer.first(), None
    for ident in range(1, 60):
        auth = os.urandom(16)
        attrs = [(Attr.USER_NAME, b"anonymous"), *rp.eap_message_attributes(message)]
        if state is not None:
            attrs.append((Attr.STATE, state))
        raw = rp.encode_access_request(ident, auth, SECRET, attrs)
        reply = rp.decode_reply(server.handle_datagram(raw, ("127.0.0.1", 40000)), SECRET, auth)
        if reply.code != Code.ACCESS_CHALLENGE:
            break
        state = reply.get(Attr.STATE)
        message = peer.respond(reply.eap_message)
    assert reply.code == Code.ACCESS_ACCEPT
    per_session = {Attr.EAP_MESSAGE, Attr.VENDOR_SPECIFIC, Attr.MESSAGE_AUTHENTICATOR}
    sent = [(t, v) for t, v in reply.attributes if t not in per_session]
    assert sent == list(verdict.attributes)


def test_parse_certificates(pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    leaf = pki.clients["staff-ok"]
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [leaf.cert, *leaf.chain])
    assert parse_certificates(pem) == [leaf.cert, *leaf.chain]
    assert parse_certificates(leaf.cert.public_bytes(serialization.Encoding.DER)) == [leaf.cert]
    for bad, message in ((b"", "neither PEM nor"), (b"hello", "neither PEM nor"),
                         (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                          "not a PEM certificate")):
        with pytest.raises(ValueError, match=message):
            parse_certificates(bad)


def test_server_only_eku_is_refused_by_openssl_not_by_authorize(pki) -> None:  # type: ignore[no-untyped-def]
    verdict = _explain(pki, "staff-serveronly")
    assert verdict.reason is Reason.BAD_EKU and "X509 verify error 26" in verdict.detail
