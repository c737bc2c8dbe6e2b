"""radius.packet: strict decode, reply encoding, cross-checked byte for byte with pyrad."""

from __future__ import annotations

import ipaddress
import os
import struct

import pytest
from pyrad import packet as pyrad_packet
from pyrad.dictionary import Dictionary

from radius import packet as rp
from radius.options import RadiusClient
from radius.packet import Attr, Code, DropReason, MalformedPacket

SECRET = b"testing123"


def _request(attrs: list[tuple[int, bytes]], *, ident: int = 7, auth: bytes | None = None) -> bytes:
    return rp.encode_access_request(ident, auth or os.urandom(16), SECRET, attrs)


def _client(require_ma: bool = True) -> RadiusClient:
    return RadiusClient("nas1", ipaddress.ip_network("127.0.0.1/32"), SECRET, require_ma)


def _raw_request(attrs: bytes, code: int = 1, length: int | None = None) -> bytes:
    length = 20 + len(attrs) if length is None else length
    return struct.pack("!BBH", code, 1, length) + os.urandom(16) + attrs


class TestDecode:
    def test_round_trip_joins_eap_and_collects_proxy_state(self) -> None:
        eap = os.urandom(700)
        attrs = [(Attr.USER_NAME, b"anon@example.test"), (Attr.PROXY_STATE, b"p1")]
        attrs += rp.eap_message_attributes(eap)
        attrs += [(Attr.PROXY_STATE, b"p2"), (Attr.FRAMED_MTU, rp.integer(1400))]
        req = rp.decode(_request(attrs), _client())
        assert req.code is Code.ACCESS_REQUEST
        assert req.eap_message == eap
        assert req.proxy_state == (b"p1", b"p2")
        assert req.framed_mtu == 1400
        assert req.text(Attr.USER_NAME) == "anon@example.test"
        assert req.has_message_authenticator

    def test_padding_after_length_is_ignored(self) -> None:
        data = _request([(Attr.USER_NAME, b"x")])
        assert rp.decode(data + b"\x00" * 10, _client()).get(Attr.USER_NAME) == b"x"

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(b"\x01\x01\x00", id="short-datagram"),
            pytest.param(_raw_request(b"", length=19), id="length-below-20"),
            pytest.param(_raw_request(b"", length=4097), id="length-above-4096"),
            pytest.param(_raw_request(b"\x01\x05ab", length=30), id="length-past-datagram"),
            pytest.param(_raw_request(b"\x01\x00"), id="attr-length-0"),
            pytest.param(_raw_request(b"\x01\x01"), id="attr-length-1"),
            pytest.param(_raw_request(b"\x01\x09abc"), id="attr-past-end"),
            pytest.param(_raw_request(b"\x01\x03a\x02"), id="truncated-attr-header"),
            pytest.param(_raw_request(b"\x50\x10" + bytes(14)), id="ma-wrong-length"),
            pytest.param(_raw_request(b"\x50\x12" + bytes(16)) + b"", id="ma-zero"),
        ],
    )
    def test_malformed(self, data: bytes) -> None:
        with pytest.raises(MalformedPacket) as e:
            rp.decode(data, _client())
        assert e.value.reason in (DropReason.MALFORMED, DropReason.BAD_AUTHENTICATOR)

    def test_two_message_authenticators(self) -> None:
        data = _request([(Attr.MESSAGE_AUTHENTICATOR, bytes(16))])
        with pytest.raises(MalformedPacket, match="two Message-Authenticators"):
            rp.decode(data, _client())

    def test_wrong_message_authenticator(self) -> None:
        data = bytearray(_request([(Attr.USER_NAME, b"x")]))
        data[22] ^= 1  # first MA byte (MA is the first attribute)
        with pytest.raises(MalformedPacket) as e:
            rp.decode(bytes(data), _client())
        assert e.value.reason is DropReason.BAD_AUTHENTICATOR

    def test_tampered_attribute_fails_message_authenticator(self) -> None:
        data = bytearray(_request([(Attr.USER_NAME, b"alice")]))
        data[-1] ^= 1
        with pytest.raises(MalformedPacket) as e:
            rp.decode(bytes(data), _client())
        assert e.value.reason is DropReason.BAD_AUTHENTICATOR

    def test_wrong_secret(self) -> None:
        data = rp.encode_access_request(1, os.urandom(16), b"other", [])
        with pytest.raises(MalformedPacket) as e:
            rp.decode(data, _client())
        assert e.value.reason is DropReason.BAD_AUTHENTICATOR

    def test_missing_message_authenticator(self) -> None:
        data = _raw_request(rp.attribute(Attr.USER_NAME, b"x"))
        with pytest.raises(MalformedPacket) as e:
            rp.decode(data, _client())
        assert e.value.reason is DropReason.MISSING_MESSAGE_AUTHENTICATOR

    def test_missing_message_authenticator_allowed_by_explicit_opt_out(self) -> None:
        data = _raw_request(rp.attribute(Attr.USER_NAME, b"x"))
        req = rp.decode(data, _client(require_ma=False))
        assert not req.has_message_authenticator

    def test_opt_out_still_verifies_a_present_message_authenticator(self) -> None:
        data = bytearray(_request([]))
        data[25] ^= 0xFF
        with pytest.raises(MalformedPacket):
            rp.decode(bytes(data), _client(require_ma=False))

    def test_status_server_always_needs_message_authenticator(self) -> None:
        data = _raw_request(b"", code=Code.STATUS_SERVER)
        with pytest.raises(MalformedPacket) as e:
            rp.decode(data, _client(require_ma=False))
        assert e.value.reason is DropReason.MISSING_MESSAGE_AUTHENTICATOR

    @pytest.mark.parametrize("code", [2, 3, 4, 11, 40, 43, 99])
    def test_unknown_code(self, code: int) -> None:
        data = rp.encode_access_request(1, os.urandom(16), SECRET, [], code=code)
        with pytest.raises(MalformedPacket) as e:
            rp.decode(data, _client())
        assert e.value.reason is DropReason.UNKNOWN_CODE


class TestEncode:
    def _req(self, proxy: list[bytes] = ()) -> rp.Request:  # type: ignore[assignment]
        attrs = [(Attr.PROXY_STATE, p) for p in proxy]
        return rp.decode(_request(attrs), _client())

    def test_message_authenticator_first_and_proxy_state_last(self) -> None:
        req = self._req([b"one", b"two"])
        out = rp.encode_reply(Code.ACCESS_CHALLENGE, req, SECRET, [(Attr.STATE, b"s" * 16)])
        assert out[20] == Attr.MESSAGE_AUTHENTICATOR and out[21] == 18
        reply = rp.decode_reply(out, SECRET, req.authenticator)
        types = [t for t, _ in reply.attributes]
        assert types == [80, 24, 33, 33]
        assert [v for t, v in reply.attributes if t == 33] == [b"one", b"two"]

    def test_eap_message_split(self) -> None:
        eap = os.urandom(1000)
        parts = rp.eap_message_attributes(eap)
        assert [len(v) for _, v in parts] == [253, 253, 253, 241]
        req = self._req()
        out = rp.encode_reply(Code.ACCESS_CHALLENGE, req, SECRET, parts)
        assert rp.decode_reply(out, SECRET, req.authenticator).eap_message == eap

    def test_too_large(self) -> None:
        req = self._req()
        with pytest.raises(rp.PacketTooLarge):
            rp.encode_reply(Code.ACCESS_CHALLENGE, req, SECRET, rp.eap_message_attributes(bytes(4100)))

    def test_attribute_too_long(self) -> None:
        with pytest.raises(ValueError):
            rp.attribute(1, bytes(254))

    def test_salt_round_trip_and_length(self) -> None:
        auth, key = os.urandom(16), os.urandom(32)
        salt = rp.new_salt()
        enc = rp.salt_encrypt(key, SECRET, auth, salt)
        assert len(enc) == 50 and enc[:2] == salt and salt[0] & 0x80
        assert rp.salt_decrypt(enc, SECRET, auth) == key

    def test_salts_unique_with_high_bit(self) -> None:
        msk = os.urandom(64)
        for _ in range(50):
            a, b = rp.mppe_key_attributes(msk, SECRET, os.urandom(16))
            sa, sb = a[1][6:8], b[1][6:8]
            assert sa != sb and sa[0] & 0x80 and sb[0] & 0x80

    def test_tunnel_attributes(self) -> None:
        assert rp.tunnel_vlan_attributes("10") == [
            (64, b"\x00\x00\x00\x0d"),
            (65, b"\x00\x00\x00\x06"),
            (81, b"10"),
        ]
        assert rp.tunnel_vlan_attributes("10", tag=1)[2] == (81, b"\x0110")
        assert rp.tunnel_vlan_attributes("\x05x")[2] == (81, b"\x00\x05x")


class TestPyradCrossCheck:
    @pytest.fixture
    def dictionary(self, dictionary_path: str) -> Dictionary:
        return Dictionary(dictionary_path)

    def test_pyrad_request_decoded_by_us(self, dictionary: Dictionary) -> None:
        eap = os.urandom(600)
        req = pyrad_packet.AuthPacket(secret=SECRET, dict=dictionary, id=42)
        req["User-Name"] = "alice"
        req["Framed-MTU"] = 1400
        req["Proxy-State"] = [b"ps1", b"ps2"]
        # pyrad cannot split EAP-Message (>253 raises): add the pieces by hand.
        for _, part in rp.eap_message_attributes(eap):
            req.AddAttribute("EAP-Message", part)
        req.add_message_authenticator()
        raw = req.RequestPacket()
        ours = rp.decode(raw, _client())
        assert ours.identifier == 42
        assert ours.eap_message == eap
        assert ours.framed_mtu == 1400
        assert ours.proxy_state == (b"ps1", b"ps2")
        assert ours.authenticator == req.authenticator

    def test_pyrad_request_with_wrong_secret_rejected(self, dictionary: Dictionary) -> None:
        req = pyrad_packet.AuthPacket(secret=b"nope", dict=dictionary)
        req["User-Name"] = "alice"
        req.add_message_authenticator()
        with pytest.raises(MalformedPacket):
            rp.decode(req.RequestPacket(), _client())

    def test_our_accept_verified_and_decrypted_by_pyrad(self, dictionary: Dictionary) -> None:
        req = pyrad_packet.AuthPacket(secret=SECRET, dict=dictionary, id=9)
        req["User-Name"] = "alice"
        req["Proxy-State"] = [b"hop1", b"hop2"]
        req.AddAttribute("EAP-Message", b"\x02\x05\x00\x06\x0d\x00")
        req.add_message_authenticator()
        raw_req = req.RequestPacket()
        ours = rp.decode(raw_req, _client())

        msk = os.urandom(64)
        attrs = rp.eap_message_attributes(b"\x03\x05\x00\x04")
        attrs += rp.mppe_key_attributes(msk, SECRET, ours.authenticator)
        attrs += [(Attr.USER_NAME, b"alice@example.test")]
        attrs += rp.tunnel_vlan_attributes("10")
        attrs += [
            (Attr.FILTER_ID, b"staff-acl"),
            (Attr.CLASS, b"cg-staff"),
            (Attr.SESSION_TIMEOUT, rp.integer(3600)),
            (Attr.TERMINATION_ACTION, rp.integer(1)),
        ]
        raw = rp.encode_reply(Code.ACCESS_ACCEPT, ours, SECRET, attrs)

        reply = req.CreateReply(packet=raw)
        reply.request_authenticator = req.authenticator
        assert req.VerifyReply(reply, raw, enforce_ma=True)
        assert reply.verify_message_authenticator(
            original_authenticator=req.authenticator, original_code=req.code
        )
        assert reply.code == pyrad_packet.AccessAccept
        assert reply["MS-MPPE-Recv-Key"] == [msk[:32]]
        assert reply["MS-MPPE-Send-Key"] == [msk[32:64]]
        assert reply["Tunnel-Type"] == ["VLAN"]
        assert reply["Tunnel-Medium-Type"] == ["IEEE-802"]
        assert reply["Tunnel-Private-Group-Id"] == ["10"]
        assert reply["Session-Timeout"] == [3600]
        assert reply["Termination-Action"] == ["RADIUS-Request"]
        assert reply["Filter-Id"] == ["staff-acl"]
        assert reply["Proxy-State"] == [b"hop1", b"hop2"]

    def test_pyrad_salt_encryption_decrypted_by_us(self, dictionary: Dictionary) -> None:
        auth = os.urandom(16)
        pkt = pyrad_packet.AuthPacket(secret=SECRET, dict=dictionary, authenticator=auth)
        key = os.urandom(32)
        enc = pkt.SaltCrypt(key)
        assert rp.salt_decrypt(enc, SECRET, auth) == key
        # and pyrad decrypts ours with the same salt byte-for-byte
        ours = rp.salt_encrypt(key, SECRET, auth, enc[:2])
        assert ours == enc

    def test_status_server_reply_verified_by_pyrad(self, dictionary: Dictionary) -> None:
        req = pyrad_packet.AuthPacket(code=pyrad_packet.StatusServer, secret=SECRET, dict=dictionary, id=3)
        req.add_message_authenticator()
        raw_req = req.RequestPacket()
        ours = rp.decode(raw_req, _client())
        assert ours.code is Code.STATUS_SERVER
        raw = rp.encode_reply(Code.ACCESS_ACCEPT, ours, SECRET, [])
        reply = req.CreateReply(packet=raw)
        assert req.VerifyReply(reply, raw, enforce_ma=True)


def test_precomputed_hmac_md5_equals_the_stdlib() -> None:
    import hashlib
    import hmac
    import random

    from radius.packet import _hmac_md5

    rng = random.Random(7)
    for _ in range(2000):
        secret = rng.randbytes(rng.choice([1, 8, 16, 63, 64, 65, 200]))
        parts = [rng.randbytes(rng.randrange(0, 300)) for _ in range(rng.randrange(1, 5))]
        assert _hmac_md5(secret, *parts) == hmac.digest(secret, b"".join(parts), hashlib.md5)
