"""A small EAP-TLS supplicant over RADIUS/UDP for the one case eapol_test cannot do: no
client certificate (eapol_test refuses EAP-TLS without a key). Real pyOpenSSL TLS, real
UDP, real RADIUS framing (Message-Authenticator, State, EAP-Message split, fragments)."""

from __future__ import annotations

import os
import socket
import struct

from OpenSSL import SSL

from radius import packet as rp

EAP_REQUEST, EAP_RESPONSE, EAP_SUCCESS, EAP_FAILURE = 1, 2, 3, 4
TYPE_IDENTITY, TYPE_TLS = 1, 13
FLAG_L, FLAG_M, FLAG_S = 0x80, 0x40, 0x20


def run(host: str, port: int, secret: bytes, ca_file: str, cert: str | None = None,
        key: str | None = None, identity: bytes = b"anonymous", timeout: float = 5.0,
        max_trips: int = 40) -> tuple[int, list[tuple[int, bytes]]]:
    """Authenticate once; returns (final RADIUS code, reply attributes)."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.load_verify_locations(ca_file)
    ctx.set_verify(SSL.VERIFY_PEER, lambda *a: a[-1])
    if cert and key:
        ctx.use_certificate_chain_file(cert)
        ctx.use_privatekey_file(key)
    tls = SSL.Connection(ctx, None)
    tls.set_connect_state()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    state: bytes | None = None
    ident = 0

    def exchange(eap: bytes) -> rp.Reply:
        nonlocal state, ident
        ident = (ident + 1) % 256
        auth = os.urandom(16)
        attrs = [(rp.Attr.USER_NAME, identity)] + rp.eap_message_attributes(eap)
        if state is not None:
            attrs.append((rp.Attr.STATE, state))
        sock.sendto(rp.encode_access_request(ident, auth, secret, attrs), (host, port))
        data, _ = sock.recvfrom(65535)
        reply = rp.decode_reply(data, secret, auth)
        state = reply.get(rp.Attr.STATE)
        return reply

    try:
        reply = exchange(struct.pack("!BBHB", EAP_RESPONSE, 0, 5 + len(identity), TYPE_IDENTITY)
                         + identity)
        inbound = b""
        for _ in range(max_trips):
            if reply.code != rp.Code.ACCESS_CHALLENGE:
                return reply.code, list(reply.attributes)
            eap = reply.eap_message or b""
            eap_id, flags = eap[1], eap[5] if len(eap) > 5 else 0
            data = eap[6:]
            if flags & FLAG_L:
                data = data[4:]
            inbound += data
            if flags & FLAG_M:  # ACK the fragment
                reply = exchange(struct.pack("!BBHBB", EAP_RESPONSE, eap_id, 6, TYPE_TLS, 0))
                continue
            if inbound:
                tls.bio_write(inbound)
                inbound = b""
            try:
                tls.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error:
                pass
            out = b""
            while True:
                try:
                    out += tls.bio_read(65536)
                except SSL.WantReadError:
                    break
            # send (fragmented at 1000 bytes, waiting for the server's ACKs)
            chunks = [out[i:i + 1000] for i in range(0, len(out), 1000)] or [b""]
            for n, chunk in enumerate(chunks):
                more = n < len(chunks) - 1
                fl = (FLAG_M if more else 0) | (FLAG_L if n == 0 and len(chunks) > 1 else 0)
                body = (struct.pack("!I", len(out)) if fl & FLAG_L else b"") + chunk
                pkt = struct.pack("!BBHBB", EAP_RESPONSE, eap_id, 6 + len(body), TYPE_TLS, fl)
                reply = exchange(pkt + body)
                if more:
                    if reply.code != rp.Code.ACCESS_CHALLENGE:
                        return reply.code, list(reply.attributes)
                    eap_id = (reply.eap_message or b"\0\0")[1]
        raise AssertionError("too many round trips")
    finally:
        sock.close()
