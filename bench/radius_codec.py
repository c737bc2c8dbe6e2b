"""Micro-benchmarks for the RADIUS hot path: codec and server-side EAP-TLS CPU.

    .venv/bin/python bench/radius_codec.py [--n 20000] [--handshakes 200]

Prints µs per codec operation and ms of *server* CPU per full EAP-TLS handshake
(time spent inside EapTlsSession.handle only; the in-memory client is not counted).
Uses the throwaway PKI from tests/unit/radius/conftest.py (ECDSA P-256).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit" / "radius"))

import conftest  # noqa: E402

from radius import packet as rp  # noqa: E402
from radius.authorize import authorize  # noqa: E402
from radius.eap_tls import Accept, Challenge, EapTlsSession  # noqa: E402
from radius.options import EapOptions, RadiusClient  # noqa: E402
from radius.packet import Attr, Code  # noqa: E402
from radius.tls_context import build_server_context  # noqa: E402

SECRET = b"testing123"


def bench(label: str, fn, n: int) -> None:  # type: ignore[no-untyped-def]
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    print(f"{label:<48} {(time.perf_counter() - t0) / n * 1e6:8.1f} µs")


def codec(n: int) -> None:
    client = RadiusClient("nas", ipaddress.ip_network("127.0.0.1/32"), SECRET)
    attrs = [
        (Attr.USER_NAME, b"anonymous@example.test"),
        (Attr.CALLING_STATION_ID, b"02-00-00-00-00-01"),
        (Attr.FRAMED_MTU, rp.integer(1400)),
        *rp.eap_message_attributes(os.urandom(1000)),
        (Attr.STATE, os.urandom(16)),
    ]
    raw = rp.encode_access_request(1, os.urandom(16), SECRET, attrs)
    request = rp.decode(raw, client)
    challenge = rp.eap_message_attributes(os.urandom(1034)) + [(Attr.STATE, os.urandom(16))]
    msk = os.urandom(64)
    print(f"request {len(raw)} B, 4 EAP-Message attributes")
    bench("decode + verify MA + join EAP", lambda: rp.decode(raw, client), n)
    bench(
        "encode Access-Challenge (1034 B EAP)",
        lambda: rp.encode_reply(Code.ACCESS_CHALLENGE, request, SECRET, challenge),
        n,
    )

    def accept() -> bytes:
        a = rp.eap_message_attributes(b"\x03\x05\x00\x04")
        a += rp.mppe_key_attributes(msk, SECRET, request.authenticator)
        a += rp.tunnel_vlan_attributes("10")
        a.append((Attr.SESSION_TIMEOUT, rp.integer(3600)))
        return rp.encode_reply(Code.ACCESS_ACCEPT, request, SECRET, a)

    bench("encode Access-Accept (MPPE keys + VLAN)", accept, n)


def handshakes(count: int) -> None:
    pki = conftest.build_pki()
    for tls in ("1.2", "1.3"):
        options = EapOptions()
        ctx = build_server_context(
            certificate=pki.server.cert,
            private_key=pki.server.key,
            chain=[],
            root=pki.root.cert,
            intermediates=[g.intermediate for g in pki.groups],
            options=options,
        )
        server_time = 0.0
        trips = 0
        for _ in range(count):
            now = time.time()
            session = EapTlsSession(
                ctx,
                lambda leaf, chain, r, t: authorize(leaf, chain, r, pki.groups, pki.revoked, t),
                now=now,
            )
            peer = conftest.EapTlsPeer(pki, "staff-ok", tls=tls, fragment_size=1398)
            message = peer.first()
            while True:
                t0 = time.process_time()
                result = session.handle(message, now)
                server_time += time.process_time() - t0
                trips += 1
                if not isinstance(result, Challenge):
                    assert isinstance(result, Accept), result
                    break
                message = peer.respond(result.eap)
        print(
            f"TLS {tls} full handshake, server CPU per auth      "
            f"{server_time / count * 1e3:8.2f} ms  ({trips / count:.0f} round trips)"
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--handshakes", type=int, default=200)
    a = p.parse_args()
    codec(a.n)
    handshakes(a.handshakes)


if __name__ == "__main__":
    main()
