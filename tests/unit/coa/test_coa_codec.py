from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import struct

import pytest
from pyrad import packet as rp

from radius.coa import (
    CoaCode,
    CoaReply,
    DisconnectRequest,
    ErrorCause,
    InvalidReply,
    Session,
    decode_reply,
    encode_coa,
    encode_disconnect,
)
from radius.dynamic_auth import authorization

SECRET = b"coa-secret"
T0 = dt.datetime.fromtimestamp(1763769600, dt.UTC)
FULL = Session(
    nas_ip_address="192.0.2.10",
    nas_identifier="wlc-1",
    calling_station_id="AA-BB-CC-DD-EE-FF",
    acct_session_id="5F3A0001",
    user_name="laptop-1.example",
)


def _decode(rad_dict, data: bytes, secret: bytes = SECRET) -> rp.CoAPacket:
    return rp.CoAPacket(packet=data, secret=secret, dict=rad_dict)


def _reply(
    req: DisconnectRequest,
    code: int,
    attrs: bytes = b"",
    *,
    secret=SECRET,
    ma: bool | bytes = True,
    ident: int | None = None,
    request_auth: bytes | None = None,
):
    """A reply built by hand from RFC 5176 / RFC 3579, independent of radius/coa.py."""
    ident = req.identifier if ident is None else ident
    auth = req.authenticator if request_auth is None else request_auth
    if ma is not False:
        attrs = bytes((80, 18)) + bytes(16) + attrs
    head = struct.pack("!BBH", code, ident, 20 + len(attrs))
    if ma is True:
        mac = hmac.new(secret, head + auth + attrs, hashlib.md5).digest()
        attrs = attrs[:2] + mac + attrs[18:]
    elif isinstance(ma, bytes):
        attrs = attrs[:2] + ma + attrs[18:]
    resp_auth = hashlib.md5(head + auth + attrs + secret).digest()
    return head + resp_auth + attrs


def _error_cause(value: int) -> bytes:
    return bytes((101, 6)) + struct.pack("!I", value)


class TestEncodeCrossCheckedWithPyrad:
    def test_all_attributes(self, rad_dict):
        req = encode_disconnect(FULL, SECRET, 42, T0)
        p = _decode(rad_dict, req.data)
        assert p.code == rp.DisconnectRequest == 40 and p.id == 42 == req.identifier
        assert p.authenticator == req.authenticator == req.data[4:20]
        assert p.VerifyCoARequest()
        assert p.verify_message_authenticator()
        assert p["User-Name"] == ["laptop-1.example"]
        assert p["Calling-Station-Id"] == ["AA-BB-CC-DD-EE-FF"]
        assert p["Acct-Session-Id"] == ["5F3A0001"]
        assert p["NAS-IP-Address"] == ["192.0.2.10"]
        assert p["NAS-Identifier"] == ["wlc-1"]
        assert p["Event-Timestamp"] == [1763769600]

    def test_message_authenticator_first(self):
        data = encode_disconnect(FULL, SECRET, 1, T0).data
        assert data[20] == 80 and data[21] == 18

    def test_wrong_secret_fails_pyrad(self, rad_dict):
        p = _decode(rad_dict, encode_disconnect(FULL, SECRET, 1, T0).data, b"other")
        assert not p.VerifyCoARequest()
        assert not p.verify_message_authenticator()

    def test_minimal_and_ipv6(self, rad_dict):
        s = Session(nas_ip_address="2001:db8::1", calling_station_id="aa:bb:cc:dd:ee:ff")
        p = _decode(rad_dict, encode_disconnect(s, SECRET, 0, T0).data)
        assert p.VerifyCoARequest()
        assert p["NAS-IPv6-Address"] == ["2001:db8::1"]
        assert "NAS-Identifier" not in p and "User-Name" not in p

    def test_deterministic(self):
        """Same inputs, same bytes: retransmissions are identical by construction."""
        assert encode_disconnect(FULL, SECRET, 9, T0) == encode_disconnect(FULL, SECRET, 9, T0)

    def test_utf8_values(self, rad_dict):
        s = Session(nas_identifier="wlc-ü", user_name="jürgen")
        p = _decode(rad_dict, encode_disconnect(s, SECRET, 3, T0).data)
        assert p["User-Name"] == ["jürgen"] and p["NAS-Identifier"] == ["wlc-ü"]


class TestEncodeRejects:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"calling_station_id": "aa"}, "nas_ip_address or nas_identifier"),
            ({"nas_identifier": "wlc"}, "calling_station_id, acct_session_id or user_name"),
            ({"nas_ip_address": "wlc-1", "user_name": "x"}, "does not appear to be an IP"),
            ({"nas_identifier": "", "user_name": "x"}, "1..253"),
            ({"nas_identifier": "w", "user_name": "x" * 254}, "1..253"),
        ],
    )
    def test_session(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            Session(**kwargs)

    def test_session_types(self):
        with pytest.raises(TypeError):
            Session(nas_identifier=b"wlc", user_name="x")

    def test_arguments(self):
        with pytest.raises(ValueError, match="identifier"):
            encode_disconnect(FULL, SECRET, 256, T0)
        with pytest.raises(ValueError, match="secret"):
            encode_disconnect(FULL, b"", 1, T0)
        with pytest.raises(TypeError):
            encode_disconnect(FULL, "secret", 1, T0)
        with pytest.raises(ValueError, match="timezone-aware"):
            encode_disconnect(FULL, SECRET, 1, T0.replace(tzinfo=None))
        with pytest.raises(TypeError):
            encode_disconnect({"user_name": "x"}, SECRET, 1, T0)


class TestDecodeReply:
    @pytest.fixture
    def req(self) -> DisconnectRequest:
        return encode_disconnect(FULL, SECRET, 17, T0)

    def test_ack(self, req):
        assert decode_reply(_reply(req, 41), req, SECRET) == CoaReply(CoaCode.DISCONNECT_ACK)
        assert decode_reply(_reply(req, 41), req, SECRET).acked

    def test_nak_with_error_cause(self, req):
        r = decode_reply(_reply(req, 42, _error_cause(503)), req, SECRET)
        assert not r.acked and r.error_cause == ErrorCause.SESSION_CONTEXT_NOT_FOUND == 503

    def test_ack_with_residual_context(self, req):
        r = decode_reply(_reply(req, 41, _error_cause(201)), req, SECRET)
        assert r.acked and r.error_cause == 201

    def test_unknown_error_cause_kept_as_int(self, req):
        assert decode_reply(_reply(req, 42, _error_cause(999)), req, SECRET).error_cause == 999

    def test_without_message_authenticator(self, req):
        data = _reply(req, 41, ma=False)
        assert decode_reply(data, req, SECRET).acked
        with pytest.raises(InvalidReply, match="no Message-Authenticator"):
            decode_reply(data, req, SECRET, require_message_authenticator=True)

    def test_padding_after_length_ignored(self, req):
        assert decode_reply(_reply(req, 41) + b"\x00" * 8, req, SECRET).acked

    def test_reply_built_by_pyrad(self, req, rad_dict):
        p = _decode(rad_dict, req.data)
        reply = p.CreateReply()
        reply.code = rp.DisconnectNAK
        reply["Error-Cause"] = 404
        reply.add_message_authenticator()
        r = decode_reply(reply.ReplyPacket(), req, SECRET, require_message_authenticator=True)
        assert r == CoaReply(CoaCode.DISCONNECT_NAK, 404)

    @pytest.mark.parametrize(
        ("make", "match"),
        [
            (lambda req: _reply(req, 41)[:19], "shorter"),
            (lambda req: _reply(req, 41)[:30], "Length"),
            (lambda req: _reply(req, 2), "code 2"),
            (lambda req: _reply(req, 44), "code 44"),
            (lambda req: _reply(req, 41, ident=18), "identifier"),
            (lambda req: _reply(req, 41, secret=b"wrong"), "Response Authenticator"),
            (lambda req: _reply(req, 41, request_auth=bytes(16)), "Response Authenticator"),
            (lambda req: _reply(req, 41, ma=b"\x01" * 16), "bad Message-Authenticator"),
            (lambda req: _reply(req, 41, bytes((101, 1))), "bad length"),
            (lambda req: _reply(req, 41, bytes((101,))), "truncated"),
            (lambda req: _reply(req, 42, bytes((101, 5, 0, 0, 1))), "Error-Cause"),
            (lambda req: _reply(req, 41, bytes((80, 18)) + bytes(16)), "more than one"),
        ],
    )
    def test_invalid(self, req, make, match):
        with pytest.raises(InvalidReply, match=match) as e:
            decode_reply(make(req), req, SECRET)
        assert isinstance(e.value, ValueError) and e.value.reason

    def test_flipped_bit_anywhere_is_rejected(self, req):
        good = _reply(req, 42, _error_cause(503))
        for i in range(len(good)):
            bad = bytearray(good)
            bad[i] ^= 0x01
            with pytest.raises(InvalidReply):
                decode_reply(bytes(bad), req, SECRET)

    def test_argument_types(self, req):
        with pytest.raises(TypeError):
            decode_reply(_reply(req, 41), req.data, SECRET)
        with pytest.raises(ValueError):
            decode_reply(_reply(req, 41), req, b"")


class TestCoaRequest:
    """CoA-Request (43): identification, then the authorization change, then Event-Timestamp;
    its replies are CoA-ACK/NAK (44/45), never Disconnect-ACK/NAK."""

    CHANGE = tuple(authorization("999", "quarantine-acl"))

    def test_cross_checked_with_pyrad(self, rad_dict):
        req = encode_coa(FULL, SECRET, 7, T0, self.CHANGE)
        assert req.code == CoaCode.COA_REQUEST and req.replies == (44, 45)
        p = _decode(rad_dict, req.data)
        assert p.code == rp.CoARequest == 43 and p.id == 7
        assert p.VerifyCoARequest() and p.verify_message_authenticator()
        assert p["Tunnel-Private-Group-Id"] == ["999"]
        assert p["Tunnel-Type"] == [13] and p["Tunnel-Medium-Type"] == [6]
        assert p["Filter-Id"] == ["quarantine-acl"]
        assert p["Calling-Station-Id"] == ["AA-BB-CC-DD-EE-FF"]
        assert p["Event-Timestamp"][0] == int(T0.timestamp())

    def test_change_needs_attributes(self):
        with pytest.raises(ValueError, match="at least one"):
            encode_coa(FULL, SECRET, 1, T0, ())
        for bad in ([(80, bytes(16))], [(31, b"x")], [(11, b"")], [(300, b"x")]):
            with pytest.raises(ValueError):
                encode_coa(FULL, SECRET, 1, T0, bad)

    def test_replies(self, rad_dict):
        req = encode_coa(FULL, SECRET, 9, T0, self.CHANGE)
        assert decode_reply(_reply(req, 44), req, SECRET) == CoaReply(CoaCode.COA_ACK)
        nak = decode_reply(_reply(req, 45, _error_cause(401)), req, SECRET)
        assert not nak.acked and nak.error_cause == ErrorCause.UNSUPPORTED_ATTRIBUTE
        for code in (41, 42):
            with pytest.raises(InvalidReply, match=f"code {code}"):
                decode_reply(_reply(req, code), req, SECRET)
        p = _decode(rad_dict, req.data)
        reply = p.CreateReply()
        reply.code = rp.CoANAK
        reply["Error-Cause"] = 405
        reply.add_message_authenticator()
        assert decode_reply(reply.ReplyPacket(), req, SECRET,
                            require_message_authenticator=True) == CoaReply(CoaCode.COA_NAK, 405)
