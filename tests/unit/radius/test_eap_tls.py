"""EapTlsSession driven by an in-memory pyOpenSSL supplicant, plus a hostile-peer table."""

from __future__ import annotations

import dataclasses
import struct
import time

import pytest

from radius import eap
from radius.authorize import Allow, authorize
from radius.eap_tls import Accept, Challenge, Discard, EapTlsSession, Reject, State
from radius.fragments import FLAG_LENGTH, FLAG_MORE, FLAG_START, build_payload, parse_payload
from radius.options import EapOptions
from radius.reasons import Reason
from revocation.snapshot import RevocationIndex

NOW = time.time()


@pytest.fixture
def session_factory(context_factory, authorize_fn):  # type: ignore[no-untyped-def]
    def make(options: EapOptions | None = None, authorize=None, **kw) -> EapTlsSession:  # type: ignore[no-untyped-def]
        options = options or EapOptions()
        return EapTlsSession(
            context_factory(options),
            authorize or authorize_fn,
            fragment_size=kw.pop("fragment_size", options.fragment_size),
            max_round_trips=kw.pop("max_round_trips", options.max_round_trips),
            now=NOW,
            **kw,
        )

    return make


class TestHandshake:
    @pytest.mark.parametrize("tls", ["1.2", "1.3"])
    @pytest.mark.parametrize(
        ("server_frag", "client_frag"), [(1024, 1398), (300, 300), (1024, 300), (300, 1024)]
    )
    def test_accept_and_msk(  # type: ignore[no-untyped-def]
        self, session_factory, peer_factory, roundtrip, tls, server_frag, client_frag
    ) -> None:
        session = session_factory(fragment_size=server_frag)
        peer = peer_factory("staff-ok", tls=tls, fragment_size=client_frag)
        result, trips = roundtrip(session, peer, NOW)
        assert isinstance(result, Accept), result
        assert result.tls_version == tls
        assert not result.resumed
        assert result.keys.msk == peer.msk()
        assert len(result.keys.emsk) == 64
        assert result.keys.session_id[0] == 13
        assert result.allow.group.name == "staff"
        assert result.allow.identity == "alice@example.test"
        assert 1 <= result.allow.session_timeout <= 3600
        parsed = eap.parse(result.eap)
        assert parsed.code == eap.EapCode.SUCCESS
        assert session.state is State.SUCCESS
        if tls == "1.3":
            assert peer.commitment_seen  # RFC 9190 §2.5
        if (server_frag, client_frag) == (1024, 1398):
            # Access-Requests = challenges + the final one: 5 with P-256 certs. For 1.3 our
            # OpenSSL 4 test client also sends an X25519MLKEM768 key share (1.4 KB
            # ClientHello > 1398), which costs one more round trip whatever the server's
            # groups are.
            assert trips + 1 == (5 if tls == "1.2" else 6), trips

    def test_leaf_only_uses_server_held_intermediate(  # type: ignore[no-untyped-def]
        self, session_factory, peer_factory, roundtrip
    ) -> None:
        result, _ = roundtrip(session_factory(), peer_factory("guests-ok", send_chain=False), NOW)
        assert isinstance(result, Accept)
        assert result.allow.group.name == "guests"
        assert result.allow.identity == "guest-1.example.test"

    def test_cn_identity(self, session_factory, peer_factory, roundtrip) -> None:  # type: ignore[no-untyped-def]
        result, _ = roundtrip(session_factory(), peer_factory("staff-cnonly"), NOW)
        assert isinstance(result, Accept) and result.allow.identity == "bob-laptop"

    def test_success_identifier_matches_last_response(  # type: ignore[no-untyped-def]
        self, session_factory, peer_factory
    ) -> None:
        session, peer = session_factory(), peer_factory("staff-ok")
        message = peer.first()
        while True:
            result = session.handle(message, NOW)
            if not isinstance(result, Challenge):
                break
            request = eap.parse(result.eap)
            assert request.identifier == eap.parse(message).identifier + 1 & 0xFF  # E4
            message = peer.respond(result.eap)
        assert eap.parse(result.eap).identifier == eap.parse(message).identifier

    @pytest.mark.parametrize("tls", ["1.2", "1.3"])
    @pytest.mark.parametrize(
        ("client", "reason", "kw"),
        [
            ("staff-expired", Reason.EXPIRED, {}),
            ("staff-notyet", Reason.NOT_YET_VALID, {}),
            ("staff-revoked", Reason.REVOKED, {}),
            ("staff-serveronly", Reason.BAD_EKU, {}),
            ("rogue-ok", Reason.UNKNOWN_ISSUER, {}),
            ("rogue-ok", Reason.UNKNOWN_ISSUER, {"send_chain": False}),
            ("other-ok", Reason.UNKNOWN_GROUP, {}),
            (None, Reason.NO_CERTIFICATE, {}),
        ],
    )
    def test_reject_sends_alert_then_failure(  # type: ignore[no-untyped-def]
        self, session_factory, peer_factory, roundtrip, tls, client, reason, kw
    ) -> None:
        session = session_factory()
        peer = peer_factory(client, tls=tls, **kw)
        result, _ = roundtrip(session, peer, NOW)
        assert isinstance(result, Reject), result
        assert result.reason is reason, result.detail
        assert eap.parse(result.eap).code == eap.EapCode.FAILURE
        assert result.tls_version == tls
        # E9: the peer saw a TLS alert in an EAP-Request before the Failure
        assert peer.tls_alert is not None

    def test_deny_from_policy_callable(  # type: ignore[no-untyped-def]
        self, session_factory, peer_factory, roundtrip, pki
    ) -> None:
        revoked = RevocationIndex([("guests", pki.clients["guests-ok"].cert.serial_number)])

        def deny_guest(leaf, chain, resumed, now):  # type: ignore[no-untyped-def]
            return authorize(leaf, chain, resumed, pki.groups, revoked, now)

        result, _ = roundtrip(session_factory(authorize=deny_guest), peer_factory("guests-ok"), NOW)
        assert isinstance(result, Reject)
        assert result.reason is Reason.REVOKED and result.group == "guests"

    def test_tls_version_outside_server_range(  # type: ignore[no-untyped-def]
        self, session_factory, peer_factory, roundtrip
    ) -> None:
        options = EapOptions(tls_max_version="1.2")
        result, _ = roundtrip(session_factory(options), peer_factory(tls="1.3"), NOW)
        assert isinstance(result, Reject) and result.reason is Reason.TLS_ERROR


class TestResumption:
    def _full_then_resumed(self, session_factory, peer_factory, roundtrip, tls, options, between=None):  # type: ignore[no-untyped-def]
        first_peer = peer_factory("staff-ok", tls=tls)
        result, _ = roundtrip(session_factory(options), first_peer, NOW)
        assert isinstance(result, Accept) and not result.resumed
        if between:
            between()
        tls_session = first_peer.conn.get_session()
        second_peer = peer_factory(context=first_peer.context, session=tls_session)
        return roundtrip(session_factory(options), second_peer, NOW)

    @pytest.mark.parametrize("tls", ["1.2", "1.3"])
    def test_resumed_accept(self, session_factory, peer_factory, roundtrip, tls) -> None:  # type: ignore[no-untyped-def]
        options = EapOptions(resumption=True)
        result, _ = self._full_then_resumed(session_factory, peer_factory, roundtrip, tls, options)
        assert isinstance(result, Accept), result
        assert result.resumed
        assert result.allow.group.name == "staff"
        assert result.allow.identity == "alice@example.test"

    @pytest.mark.parametrize("tls", ["1.2", "1.3"])
    def test_resumed_session_rechecks_revocation(  # type: ignore[no-untyped-def]
        self, session_factory, peer_factory, roundtrip, pki, tls
    ) -> None:
        options = EapOptions(resumption=True)
        serial = pki.clients["staff-ok"].cert.serial_number
        try:
            result, _ = self._full_then_resumed(
                session_factory,
                peer_factory,
                roundtrip,
                tls,
                options,
                between=lambda: pki.revoked.add("staff", serial),
            )
        finally:
            pki.revoked.discard("staff", serial)
        assert isinstance(result, Reject), result
        assert result.resumed
        assert result.reason is Reason.REVOKED

    @pytest.mark.parametrize("tls", ["1.2", "1.3"])
    def test_resumption_off_by_default(self, session_factory, peer_factory, roundtrip, tls) -> None:  # type: ignore[no-untyped-def]
        result, _ = self._full_then_resumed(session_factory, peer_factory, roundtrip, tls, EapOptions())
        assert isinstance(result, Accept) and not result.resumed


# --- hostile peer -----------------------------------------------------------------


def _tls(ident: int, flags: int, data: bytes = b"", total: int | None = None) -> bytes:
    return eap.response(ident, eap.EapType.TLS, build_payload(flags, data, total))


def _started(session: EapTlsSession) -> int:
    """Identity -> TLS Start; returns the identifier the peer must echo."""
    result = session.handle(eap.response(5, eap.EapType.IDENTITY, b"x@y"), NOW)
    assert isinstance(result, Challenge)
    request = eap.parse(result.eap)
    assert parse_payload(request.data).flags & FLAG_START
    return request.identifier


def _next_id(result) -> int:  # type: ignore[no-untyped-def]
    assert isinstance(result, Challenge), result
    return eap.parse(result.eap).identifier


class TestHostilePeer:
    def test_l_bit_repeated_with_new_length(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        i = _started(s)
        i = _next_id(s.handle(_tls(i, FLAG_MORE, b"a" * 300, 1000), NOW))
        r = s.handle(_tls(i, FLAG_MORE, b"b" * 300, 2000), NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_l_bit_repeated_with_same_length_ok(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        i = _started(s)
        i = _next_id(s.handle(_tls(i, FLAG_MORE, b"a" * 300, 600), NOW))
        r = s.handle(_tls(i, FLAG_MORE, b"b" * 200, 600), NOW)
        assert isinstance(r, Challenge)  # ACKed
        assert parse_payload(eap.parse(r.eap).data).flags == 0

    def test_announced_length_over_64k(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        i = _started(s)
        r = s.handle(_tls(i, FLAG_MORE, b"a" * 300, 65537), NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_unannounced_total_over_64k(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory(max_round_trips=1000)
        i = _started(s)
        r = None
        for _ in range(70):
            r = s.handle(_tls(i, FLAG_MORE, b"a" * 1000), NOW)
            if isinstance(r, Reject):
                break
            i = _next_id(r)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_data_past_announced_length(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        i = _started(s)
        i = _next_id(s.handle(_tls(i, FLAG_MORE, b"a" * 80, 100), NOW))
        r = s.handle(_tls(i, 0, b"b" * 40), NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_single_message_longer_than_announced(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        i = _started(s)
        r = s.handle(_tls(i, 0, b"a" * 20, 10), NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_ack_with_payload(self, session_factory, peer_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory(fragment_size=200)
        peer = peer_factory()
        r = s.handle(peer.first(), NOW)
        r = s.handle(peer.respond(r.eap), NOW)  # ClientHello -> first server fragment
        request = eap.parse(r.eap)
        assert parse_payload(request.data).flags & FLAG_MORE
        bad = _tls(request.identifier, 0, b"unsolicited")
        r = s.handle(bad, NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_wrong_identifier_is_discarded_without_advancing(  # type: ignore[no-untyped-def]
        self, session_factory, peer_factory
    ) -> None:
        s = session_factory()
        peer = peer_factory()
        r = s.handle(peer.first(), NOW)
        reply = peer.respond(r.eap)
        wrong = bytearray(reply)
        wrong[1] = (wrong[1] + 7) & 0xFF
        assert isinstance(s.handle(bytes(wrong), NOW), Discard)
        assert s.round_trips == 1
        assert isinstance(s.handle(reply, NOW), Challenge)  # the right one still works

    def test_garbage_tls(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        i = _started(s)
        r = s.handle(_tls(i, 0, b"\x16\x03\x01\x00\x05hello garbage"), NOW)
        if isinstance(r, Challenge):  # an alert went out first (E9)
            assert s.state is State.ALERT
            r = s.handle(_tls(_next_id(r), 0), NOW)
        assert isinstance(r, Reject) and r.reason is Reason.TLS_ERROR

    def test_unsolicited_ack_in_handshake(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        i = _started(s)
        r = s.handle(_tls(i, 0), NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_more_flag_without_data(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        i = _started(s)
        r = s.handle(_tls(i, FLAG_MORE, b"", 100), NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_l_flag_without_length(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        i = _started(s)
        r = s.handle(eap.response(i, 13, bytes((FLAG_LENGTH,)) + b"\x00\x01"), NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_nak(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        i = _started(s)
        r = s.handle(eap.response(i, eap.EapType.NAK, b"\x19"), NOW)
        assert isinstance(r, Reject) and r.reason is Reason.NAK
        assert eap.parse(r.eap) == eap.EapPacket(4, i, None, b"")

    def test_non_tls_type_first(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        r = session_factory().handle(eap.response(1, 4, b"md5"), NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_request_code_from_peer(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        r = session_factory().handle(eap.request(1, eap.EapType.IDENTITY), NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_eap_length_mismatch(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        data = eap.response(1, eap.EapType.IDENTITY, b"abc")
        r = session_factory().handle(data[:-1], NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP
        bad_len = data[:2] + struct.pack("!H", 99) + data[4:]
        r = session_factory().handle(bad_len, NOW)
        assert isinstance(r, Reject) and r.reason is Reason.MALFORMED_EAP

    def test_eap_start_asks_identity(self, session_factory, peer_factory, roundtrip) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        r = s.handle(b"", NOW)
        request = eap.parse(r.eap)
        assert request.type == eap.EapType.IDENTITY
        peer = peer_factory()
        r2 = s.handle(peer.first(request.identifier), NOW)
        assert isinstance(r2, Challenge)

    def test_too_many_round_trips(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory(max_round_trips=4)
        i = _started(s)
        r = None
        for _ in range(10):
            r = s.handle(_tls(i, FLAG_MORE, b"a" * 10), NOW)
            if isinstance(r, Reject):
                break
            i = _next_id(r)
        assert isinstance(r, Reject) and r.reason is Reason.TOO_MANY_ROUND_TRIPS

    def test_finished_session_refuses_input(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        s = session_factory()
        s.handle(eap.response(1, eap.EapType.NAK, b"\x04"), NOW)
        with pytest.raises(RuntimeError):
            s.handle(eap.response(1, 1, b"x"), NOW)

    def test_authorize_bug_is_internal_error(self, session_factory, peer_factory, roundtrip) -> None:  # type: ignore[no-untyped-def]
        # Raised inside OpenSSL's verify callback: it cannot propagate through C, so the
        # peer gets the internal_error alert and the session Reject(internal_error).
        def broken(*args):  # type: ignore[no-untyped-def]
            raise KeyError("bug")

        peer = peer_factory()
        result, _ = roundtrip(session_factory(authorize=broken), peer, NOW)
        assert isinstance(result, Reject) and result.reason is Reason.INTERNAL_ERROR
        assert peer.alert_received == "internal_error"


def test_allow_is_frozen(pki) -> None:  # type: ignore[no-untyped-def]
    allow = Allow(next(iter(pki.groups)), "x", 1, 1, pki.root.cert.not_valid_after_utc)
    with pytest.raises(dataclasses.FrozenInstanceError):
        allow.identity = "y"  # type: ignore[misc]
