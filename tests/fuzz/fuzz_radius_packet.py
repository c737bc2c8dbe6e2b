"""Fuzz the RADIUS codecs: Access-Request/Status-Server decode with its
Message-Authenticator walk, Accounting-Request decode, and the two reply decoders
(our client side, Disconnect/CoA replies).

The first byte picks the decoder (low 2 bits) and whether the harness first makes the
authenticators right (0x10: the Request/Response Authenticator and a single well-formed
Message-Authenticator recomputed with the secret), so mutations reach the code behind
the HMAC checks instead of dying at them. The rest is the datagram.

Invariants: each decoder returns a result or raises its typed error (MalformedPacket
with a DropReason label, coa.InvalidReply); a decoded request agrees with the plain
two-pass reference walk (packet._walk + packet._ma_offset) it replaced, attribute for
attribute, and a re-encoded reply to it decodes back.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct

from radius import accounting, coa
from radius import packet as rp
from radius.options import RadiusClient

SECRET = b"fuzzing-secret"
CLIENT = RadiusClient("fuzz", ipaddress.ip_network("127.0.0.0/8"), SECRET)
LEGACY = RadiusClient("legacy", ipaddress.ip_network("127.0.0.0/8"), SECRET,
                      require_message_authenticator=False)
REQUEST_AUTH = bytes(range(16))
# a Disconnect-Request as sent (its code byte says which replies answer it)
DISCONNECT = coa.CoaRequest(identifier=7, authenticator=REQUEST_AUTH,
                            data=bytes((40, 7, 0, 20)) + REQUEST_AUTH)

ACCESS, ACCOUNTING, REPLY, COA_REPLY = range(4)
FIX = 0x10
LEGACY_CLIENT = 0x20


def _attributes(data: bytes, length: int) -> list[tuple[int, int]]:
    """(offset, type) of each attribute as far as the lengths allow (best effort)."""
    out, pos = [], 20
    while pos + 2 <= length:
        alen = data[pos + 1]
        if alen < 2 or pos + alen > length:
            break
        out.append((pos, data[pos]))
        pos += alen
    return out


def _fix(data: bytes, mode: int) -> bytes:
    """Recompute what only the secret's holder can: the header authenticator and a
    single 18-octet Message-Authenticator."""
    if len(data) < 20:
        return data
    buf = bytearray(data)
    length = min(struct.unpack_from("!H", buf, 2)[0], len(buf))
    attrs = _attributes(bytes(buf), length)
    mas = [pos for pos, t in attrs if t == rp.Attr.MESSAGE_AUTHENTICATOR and buf[pos + 1] == 18]
    if mode == ACCOUNTING:
        buf[4:20] = bytes(16)
    elif mode in (REPLY, COA_REPLY):
        buf[4:20] = REQUEST_AUTH  # the MAC and then the Response Authenticator use it
        if mode == COA_REPLY:
            buf[1] = DISCONNECT.identifier
    if len(mas) == 1:
        pos = mas[0] + 2
        buf[pos:pos + 16] = bytes(16)
        buf[pos:pos + 16] = rp._hmac_md5(SECRET, bytes(buf[:length]))
    if mode != ACCESS:
        head = bytes(buf[:4]) + (bytes(16) if mode == ACCOUNTING else REQUEST_AUTH)
        buf[4:20] = hashlib.md5(head + bytes(buf[20:length]) + SECRET).digest()
    return bytes(buf)


def _check_access(data: bytes, client: RadiusClient) -> None:
    try:
        request = rp.decode(data, client)
    except rp.MalformedPacket as exc:
        assert isinstance(exc.reason, rp.DropReason)
        if exc.reason is rp.DropReason.MALFORMED and len(data) >= 20:
            length = struct.unpack_from("!H", data, 2)[0]
            if rp.MIN_LENGTH <= length <= min(len(data), rp.MAX_LENGTH) and data[0] in (1, 12):
                try:  # the reference walk must refuse it too
                    rp._walk(data, length)
                    rp._ma_offset(data, length)
                except rp.MalformedPacket:
                    return
                raise AssertionError(f"decode refused what the reference accepts: {exc}") from None
        return
    length = struct.unpack_from("!H", data, 2)[0]
    attrs = rp._walk(data, length)
    assert request.attributes == tuple(attrs)
    assert request.has_message_authenticator == (rp._ma_offset(data, length) != -1)
    eap = [v for t, v in attrs if t == rp.Attr.EAP_MESSAGE]
    assert request.eap_message == (b"".join(eap) if eap else None)
    assert request.proxy_state == tuple(v for t, v in attrs if t == rp.Attr.PROXY_STATE)
    try:
        reply = rp.encode_reply(rp.Code.ACCESS_REJECT, request, client.secret, [])
    except rp.PacketTooLarge:
        return
    decoded = rp.decode_reply(reply, client.secret, request.authenticator)
    assert decoded.code == rp.Code.ACCESS_REJECT and decoded.identifier == request.identifier
    assert [v for t, v in decoded.attributes if t == rp.Attr.PROXY_STATE] == list(request.proxy_state)


def one_input(data: bytes) -> None:
    if not data:
        return
    control, datagram = data[0], data[1:]
    mode = control & 0x03
    if control & FIX:
        datagram = _fix(datagram, mode)
    if mode == ACCESS:
        _check_access(datagram, LEGACY if control & LEGACY_CLIENT else CLIENT)
    elif mode == ACCOUNTING:
        try:
            record = accounting.decode_accounting(datagram, SECRET)
        except rp.MalformedPacket as exc:
            assert isinstance(exc.reason, rp.DropReason)
            return
        response = accounting.encode_response(record, SECRET)
        assert response[0] == rp.Code.ACCOUNTING_RESPONSE and response[1] == record.identifier
    elif mode == REPLY:
        try:
            reply = rp.decode_reply(datagram, SECRET, REQUEST_AUTH)
        except rp.MalformedPacket as exc:
            assert isinstance(exc.reason, rp.DropReason)
            return
        assert reply.identifier == datagram[1]
    else:
        try:
            answer = coa.decode_reply(datagram, DISCONNECT, SECRET,
                                      require_message_authenticator=bool(control & LEGACY_CLIENT))
        except coa.InvalidReply:
            return
        assert answer.code in (coa.CoaCode.DISCONNECT_ACK, coa.CoaCode.DISCONNECT_NAK)


def _seeds() -> list[bytes]:
    eap_identity = bytes((2, 1, 0, 10, 1)) + b"alice"
    access = rp.encode_access_request(
        1, REQUEST_AUTH, SECRET,
        [(rp.Attr.USER_NAME, b"alice"), (rp.Attr.EAP_MESSAGE, eap_identity),
         (rp.Attr.CALLING_STATION_ID, b"02-00-00-00-00-01"), (rp.Attr.PROXY_STATE, b"p1"),
         (rp.Attr.PROXY_STATE, b"p2"), (rp.Attr.STATE, b"s" * 16)])
    status = rp.encode_access_request(2, REQUEST_AUTH, SECRET, [], code=rp.Code.STATUS_SERVER)
    no_ma = struct.pack("!BBH", 1, 3, 27) + REQUEST_AUTH + bytes((1, 7)) + b"alice"
    acct_body = bytes((40, 6, 0, 0, 0, 1, 44, 6)) + b"sess" + bytes((25, 9)) + b"cg:s:10"
    acct = struct.pack("!BBH", 4, 9, 20 + len(acct_body)) + bytes(16) + acct_body
    disconnect_ack = struct.pack("!BBH", 41, 7, 20 + 6) + bytes(16) + bytes((101, 6, 0, 0, 0, 201))
    reject = struct.pack("!BBH", 3, 1, 20 + 18) + bytes(16) + bytes((80, 18)) + bytes(16)
    return [
        bytes([ACCESS]) + access,
        bytes([ACCESS | FIX]) + access,
        bytes([ACCESS]) + status,
        bytes([ACCESS | LEGACY_CLIENT]) + no_ma,
        bytes([ACCESS]) + no_ma,
        bytes([ACCOUNTING | FIX]) + acct,
        bytes([REPLY | FIX]) + reject,
        bytes([COA_REPLY | FIX]) + disconnect_ack,
        bytes([COA_REPLY | FIX | LEGACY_CLIENT]) + disconnect_ack,
    ]


SEEDS = _seeds()

if __name__ == "__main__":
    from tests.fuzz._harness import run

    run("radius_packet", one_input, SEEDS)
