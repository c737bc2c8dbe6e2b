"""CPU inside the EAP-TLS verify callback per full handshake: pyOpenSSL's set_verify
wrapper (its code, copied, calling the pre-#12 ``verify_dispatch``) vs
``radius.tls_verify`` (issue #12 §3, which sets the X509 error that selects the alert).

    .venv/bin/python bench/verify_callback.py [--tls 1.2] [--blocks 20] [--n 50]

Both callbacks run inside the same timing ffi callback (thread CPU around the Python body,
summed over the 3 calls of a handshake: root, intermediate, leaf), in alternating blocks of
``--n`` EapTlsSession handshakes against the in-memory supplicant of
tests/unit/radius/conftest.py; median over the blocks. ``authorize`` is replaced by a
constant Allow (it is the same in both and would dominate). The end-to-end
radius_inproc.py cannot resolve the difference (its run-to-run noise is 5-15 % here).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit" / "radius"))

import conftest  # noqa: E402
from OpenSSL import SSL  # noqa: E402
from OpenSSL._util import ffi, lib  # noqa: E402
from OpenSSL.crypto import X509  # noqa: E402

from radius import tls_verify  # noqa: E402
from radius.authorize import authorize  # noqa: E402
from radius.eap_tls import Accept, Challenge, EapTlsSession  # noqa: E402
from radius.options import EapOptions  # noqa: E402
from radius.tls_context import build_server_context  # noqa: E402

_spent = [0]


def _old_dispatch(conn, cert, errno, depth, ok):  # type: ignore[no-untyped-def]
    session = tls_verify._sessions.get(conn._ssl)  # stands in for conn.get_app_data()
    if isinstance(session, EapTlsSession):
        return session._on_verify(cert, errno, depth, ok)
    return bool(ok)


def _old_wrapper(ok, store_ctx):  # type: ignore[no-untyped-def]
    """pyOpenSSL 26's _VerifyHelper wrapper."""
    x509 = lib.X509_STORE_CTX_get_current_cert(store_ctx)
    lib.X509_up_ref(x509)
    cert = X509._from_raw_x509_ptr(x509)
    errno = lib.X509_STORE_CTX_get_error(store_ctx)
    depth = lib.X509_STORE_CTX_get_error_depth(store_ctx)
    ssl = lib.X509_STORE_CTX_get_ex_data(store_ctx, lib.SSL_get_ex_data_X509_STORE_CTX_idx())
    connection = SSL.Connection._reverse_mapping[ssl]
    try:
        result = _old_dispatch(connection, cert, errno, depth, ok)
    except Exception:
        return 0
    if result:
        lib.X509_STORE_CTX_set_error(store_ctx, lib.X509_V_OK)
        return 1
    return 0


def _timed(fn):  # type: ignore[no-untyped-def]
    def callback(ok, store_ctx):  # type: ignore[no-untyped-def]
        t0 = time.thread_time_ns()
        result = fn(ok, store_ctx)
        _spent[0] += time.thread_time_ns() - t0
        return result

    return ffi.callback("int (*)(int, X509_STORE_CTX *)", callback)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", default="1.2")
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    pki = conftest.build_pki()
    callbacks = {"pyOpenSSL wrapper": _timed(_old_wrapper), "tls_verify": _timed(tls_verify._verify)}
    contexts = {}
    for name, callback in callbacks.items():
        ctx = build_server_context(certificate=pki.server.cert, private_key=pki.server.key,
                                   chain=[], root=pki.root.cert,
                                   intermediates=[g.intermediate for g in pki.groups],
                                   options=EapOptions())
        lib.SSL_CTX_set_verify(ctx._context, SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                               callback)
        contexts[name] = ctx

    leaf = pki.clients["staff-ok"].cert
    allow = authorize(leaf, [leaf, pki.staff_ca.cert], False, pki.groups, pki.revoked,
                      conftest.NOW)

    def policy(leaf, chain, resumed, now):  # type: ignore[no-untyped-def]
        return allow  # a constant: what is measured is the callback, not the policy

    def handshake(ctx: SSL.Context) -> None:
        now = time.time()
        session = EapTlsSession(ctx, policy, fragment_size=1398, now=now)
        peer = conftest.EapTlsPeer(pki, "staff-ok", tls=args.tls, fragment_size=1398)
        message = peer.first()
        while isinstance(result := session.handle(message, now), Challenge):
            message = peer.respond(result.eap)
        assert isinstance(result, Accept), result

    per_block: dict[str, list[float]] = {name: [] for name in contexts}
    for _ in range(args.blocks):
        for name, ctx in contexts.items():
            _spent[0] = 0
            for _ in range(args.n):
                handshake(ctx)
            per_block[name].append(_spent[0] / args.n / 1000)
    for name, values in per_block.items():
        print(f"TLS {args.tls} {name:<18} {statistics.median(values):6.1f} µs/handshake "
              f"(median of {args.blocks} blocks; min {min(values):.1f})")


if __name__ == "__main__":
    main()
