"""Server CPU per full EAP-TLS auth through the whole RADIUS shell, in process, and what
candidate fixes would save (measured by monkeypatching them in; product code untouched).

    .venv/bin/python bench/radius_inproc.py [--auths 300] [--rounds 5] [--tls 1.2,1.3]

Drives radius.server.RadiusServer.handle_datagram (decode, duplicate cache, conversation
table, EapTlsSession, authorize, encode, MPPE keys, metrics, the per-auth log line) with
Access-Requests built from the in-memory supplicant of tests/unit/radius/conftest.py
(ECDSA P-256 PKI, fragment_size 1398 like eapol_test) and counts only the CPU time
(thread_time) spent inside handle_datagram. Socket and event-loop costs are not included.
Logging goes to a StreamHandler on /dev/null with certgate's text format, as in `serve`.

Candidate fixes (micro-benchmarked one by one: µs per call old -> new, x calls per auth
counted inside handle_datagram), then base / base-again / all fixes together end to end in
a shuffled order in each of --rounds rounds, median reported (base-again is a second run of
the unpatched server: its difference from base is the noise floor):
  nolog       radius.server logger at WARNING (cost of the per-auth INFO line)
  hmac1shot   packet._hmac_md5 via hmac.digest(key, b"".join(parts), "md5")
  labels      metric children cached per label tuple (no .labels() lookups per packet)
  codelabel   server._code_label as a dict lookup
  saltxor     packet.salt_encrypt XOR via int.from_bytes instead of a generator per byte
  verify2     verify callback converts only depth 0 and 1 to cryptography (not the root)
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import logging
import os
import random
import statistics
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit" / "radius"))

import conftest  # noqa: E402

from radius import eap_tls as et  # noqa: E402
from radius import metrics as rm  # noqa: E402
from radius import packet as rp  # noqa: E402
from radius import server as rs  # noqa: E402
from radius.authorize import authorize  # noqa: E402
from radius.options import EapOptions, RadiusClient  # noqa: E402
from radius.packet import Attr, Code  # noqa: E402
from radius.tls_context import build_server_context  # noqa: E402

SECRET = b"testing123"
ADDR = ("127.0.0.1", 40000)


def one_auth(server: rs.RadiusServer, peer: conftest.EapTlsPeer, mac: bytes) -> float:
    spent = 0.0
    state = None
    ident = 0
    message = peer.first()
    for _ in range(60):
        ident = (ident + 1) & 0xFF
        auth = os.urandom(16)
        attrs = [(Attr.USER_NAME, b"staff-ok@example.test"), (Attr.CALLING_STATION_ID, mac),
                 (Attr.FRAMED_MTU, rp.integer(1400)), *rp.eap_message_attributes(message)]
        if state is not None:
            attrs.append((Attr.STATE, state))
        raw = rp.encode_access_request(ident, auth, SECRET, attrs)
        t0 = time.thread_time()
        out = server.handle_datagram(raw, ADDR)
        spent += time.thread_time() - t0
        assert out is not None
        reply = rp.decode_reply(out, SECRET, auth)
        if reply.code != Code.ACCESS_CHALLENGE:
            assert reply.code == Code.ACCESS_ACCEPT, reply
            return spent
        state = reply.get(Attr.STATE)
        message = peer.respond(reply.eap_message)
    raise AssertionError("too many round trips")


# --- candidate fixes ------------------------------------------------------------------


@contextmanager
def nolog():  # type: ignore[no-untyped-def]
    lg = logging.getLogger("radius.server")
    old = lg.level
    lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lg.setLevel(old)


@contextmanager
def patch(obj, name, value):  # type: ignore[no-untyped-def]
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _hmac_1shot(secret: bytes, *parts: bytes) -> bytes:
    return hmac.digest(secret, b"".join(parts), "md5")


@contextmanager
def hmac1shot():  # type: ignore[no-untyped-def]
    with patch(rp, "_hmac_md5", _hmac_1shot):
        yield


class _Cached:
    """A metric whose .labels(*values) children are memoised (the suggested fix)."""

    def __init__(self, metric) -> None:  # type: ignore[no-untyped-def]
        self._m = metric
        self._c: dict = {}

    def labels(self, *values):  # type: ignore[no-untyped-def]
        child = self._c.get(values)
        if child is None:
            child = self._c[values] = self._m.labels(*values)
        return child

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._m, name)


@contextmanager
def labels():  # type: ignore[no-untyped-def]
    with ExitStack() as stack:
        for name in ("REQUESTS", "RESPONSES", "DROPPED", "AUTHENTICATIONS", "AUTH_DURATION",
                     "RESUMPTIONS", "DUPLICATES"):
            stack.enter_context(patch(rm, name, _Cached(getattr(rm, name))))
        yield


_CODE_LABELS = {int(c): c.name.lower() for c in Code}


@contextmanager
def codelabel():  # type: ignore[no-untyped-def]
    with patch(rs, "_code_label", lambda code: _CODE_LABELS.get(code, "other")):
        yield


def _salt_encrypt(value: bytes, secret: bytes, request_authenticator: bytes, salt: bytes) -> bytes:
    plain = bytes((len(value),)) + value
    plain += bytes(-len(plain) % 16)
    out = bytearray(salt)
    last = request_authenticator + salt
    for i in range(0, len(plain), 16):
        b = hashlib.md5(secret + last).digest()
        block = (int.from_bytes(plain[i:i + 16], "big") ^ int.from_bytes(b, "big")).to_bytes(16, "big")
        out += block
        last = block
    return bytes(out)


@contextmanager
def saltxor():  # type: ignore[no-untyped-def]
    with patch(rp, "salt_encrypt", _salt_encrypt):
        yield


def _on_verify(self, cert, errno, depth, ok):  # type: ignore[no-untyped-def]
    if not ok:
        if self._verify_errno is None:
            self._verify_errno = errno
        return False
    if depth > 1:
        return True  # the root: authorize never looks at it
    self._chain[depth] = cert.to_cryptography()
    if depth != 0:
        return True
    chain = [self._chain[d] for d in sorted(self._chain)]
    decision = self._authorize(chain[0], chain, False, self._wall_clock())
    self._decision = decision
    return isinstance(decision, et.Allow)


@contextmanager
def verify2():  # type: ignore[no-untyped-def]
    with patch(et.EapTlsSession, "_on_verify", _on_verify):
        yield


FIXES = {"nolog": [nolog], "hmac1shot": [hmac1shot], "labels": [labels],
         "codelabel": [codelabel], "saltxor": [saltxor], "verify2": [verify2]}
# Whole-shell runs: each fix alone is worth tens of µs, below the run-to-run noise of a
# shared 2-core VM, so only base, base-again and all fixes together run end to end; the
# per-fix gains come from the micro-benchmarks (old vs new per call x calls per auth).
# "all" keeps the per-auth log line (it is the audit trail; nolog only prices it).
VARIANTS = {"base": [], "base-again": [],
            "all": [f for k, fs in FIXES.items() if k != "nolog" for f in fs]}
# base-again is a second, independent run of the unpatched server: its difference from
# base is the noise floor of this measurement.


# --- micro-benchmarks of each candidate, old vs new, times calls per auth -------------


def _per_call(fn, n: int = 20000) -> float:  # type: ignore[no-untyped-def]
    fn()
    best = float("inf")
    for _ in range(5):
        t0 = time.thread_time()
        for _ in range(n):
            fn()
        best = min(best, (time.thread_time() - t0) / n)
    return best * 1e6


def micro(pki, calls: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    from OpenSSL import crypto

    secret, parts = SECRET, (os.urandom(20), os.urandom(16), b"\x50\x12", bytes(16), os.urandom(1100))
    auth, salt, key = os.urandom(16), b"\x81\x02", os.urandom(32)
    cached = _Cached(rm.REQUESTS)
    lg = logging.getLogger("radius.server")
    log_args = ("eap result=%s reason=%s client=%s group=%s tls=%s resumed=%s "
                "calling_station=%s outer_identity=%r round_trips=%d ms=%.1f %s",
                "accept", "ok", "nas", "staff", "1.2", False, "02-00-00-00-00-01",
                "staff-ok@example.test", 5, 12.3,
                "identity='alice@example.test' serial=1234 session_timeout=3600")

    x509_root = crypto.X509.from_cryptography(pki.root.cert)
    rows = [
        ("_hmac_md5 (hmac.new + update per part)", "hmac",
         lambda: rp._hmac_md5(secret, *parts), lambda: _hmac_1shot(secret, *parts)),
        ("metric .labels(client, code)", "labels",
         lambda: rm.REQUESTS.labels("nas", "access_request"),
         lambda: cached.labels("nas", "access_request")),
        ("_code_label (Code(code).name.lower())", "code_label",
         lambda: rs._code_label(11), lambda: _CODE_LABELS.get(11, "other")),
        ("salt_encrypt (32-byte MPPE key)", "salt",
         lambda: rp.salt_encrypt(key, secret, auth, salt),
         lambda: _salt_encrypt(key, secret, auth, salt)),
        ("per-auth INFO line (log.info, full path): price", "log",
         lambda: lg.info(*log_args), lambda: None),
        ("X509.to_cryptography (root, verify callback)", "to_crypto_root",
         lambda: x509_root.to_cryptography(), lambda: None),
    ]
    print("micro-benchmarks (best of 5, thread CPU), x calls per full auth:")
    for label, key_, old, new in rows:
        o, n = _per_call(old), _per_call(new)
        k = calls.get(key_, 0)
        print(f"  {label:<46} {o:6.2f} -> {n:5.2f} µs/call x {k:4.1f}/auth = "
              f"saves {(o - n) * k:6.1f} µs/auth")


def count_calls(server, pki, tls: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Calls per full auth made by the server (inside handle_datagram only)."""
    counts = {"hmac": 0, "labels": 0, "code_label": 0, "salt": 0, "log": 0, "to_crypto_root": 0}
    inside = [False]
    stack = ExitStack()

    def counting(obj, name, key):  # type: ignore[no-untyped-def]
        orig = getattr(obj, name)

        def f(*args, **kw):  # type: ignore[no-untyped-def]
            if inside[0]:
                counts[key] += 1
            return orig(*args, **kw)

        stack.enter_context(patch(obj, name, f))

    counting(rp, "_hmac_md5", "hmac")
    counting(rs, "_code_label", "code_label")
    counting(rp, "salt_encrypt", "salt")
    counting(logging.getLogger("radius.server"), "info", "log")
    for m in ("REQUESTS", "RESPONSES", "AUTHENTICATIONS", "AUTH_DURATION", "DROPPED"):
        stack.enter_context(patch(rm, m, _Counting(getattr(rm, m), counts, inside)))
    orig_verify = et.EapTlsSession._on_verify

    def depth_counter(self, cert, errno, depth, ok):  # type: ignore[no-untyped-def]
        if depth > 1:
            counts["to_crypto_root"] += 1
        return orig_verify(self, cert, errno, depth, ok)

    stack.enter_context(patch(et.EapTlsSession, "_on_verify", depth_counter))
    orig_handle = server.handle_datagram

    def handle(data, addr):  # type: ignore[no-untyped-def]
        inside[0] = True
        try:
            return orig_handle(data, addr)
        finally:
            inside[0] = False

    n = 20
    with stack:
        server.handle_datagram = handle
        try:
            for i in range(n):
                peer = conftest.EapTlsPeer(pki, "staff-ok", tls=tls, fragment_size=1398)
                one_auth(server, peer, b"02-00-00-00-%02x-02" % i)
        finally:
            del server.handle_datagram
    return {k: v / n for k, v in counts.items()}


class _Counting:
    def __init__(self, metric, counts, inside) -> None:  # type: ignore[no-untyped-def]
        self._m, self._counts, self._inside = metric, counts, inside

    def labels(self, *values):  # type: ignore[no-untyped-def]
        if self._inside[0]:
            self._counts["labels"] += 1
        return self._m.labels(*values)

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._m, name)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--auths", type=int, default=400, help="auths per variant per TLS version")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--tls", default="1.2,1.3")
    a = p.parse_args()

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)

    pki = conftest.build_pki()
    options = EapOptions()
    ctx = build_server_context(certificate=pki.server.cert, private_key=pki.server.key,
                               chain=[], root=pki.root.cert,
                               intermediates=[g.intermediate for g in pki.groups],
                               options=options)
    client = RadiusClient("nas", ipaddress.ip_network("127.0.0.0/8"), SECRET)

    def decide(leaf, chain, resumed, now):  # type: ignore[no-untyped-def]
        return authorize(leaf, chain, resumed, pki.groups, pki.revoked, now)

    server = rs.RadiusServer([client], options, ctx, decide)
    calls = count_calls(server, pki, "1.2")
    print("calls per full auth (TLS 1.2, 5 round trips): "
          + ", ".join(f"{k} {v:.1f}" for k, v in calls.items()))
    micro(pki, calls)

    per = max(1, a.auths // a.rounds)
    for tls in a.tls.split(","):
        samples: dict[str, list[float]] = {k: [] for k in VARIANTS}
        rng = random.Random(42)
        for r in range(a.rounds + 1):  # round 0 is a warm-up
            order = list(VARIANTS.items())
            rng.shuffle(order)  # no variant always runs first (or after another)
            for name, fixes in order:
                with ExitStack() as stack:
                    for fix in fixes:
                        stack.enter_context(fix())
                    server = rs.RadiusServer([client], options, ctx, decide)
                    spent = 0.0
                    for i in range(per):
                        peer = conftest.EapTlsPeer(pki, "staff-ok", tls=tls, fragment_size=1398)
                        spent += one_auth(server, peer, b"02-00-00-00-%02x-01" % (i % 256))
                if r:
                    samples[name].append(spent / per * 1e3)
        base = statistics.median(samples["base"])
        print(f"TLS {tls}: server CPU per full auth through handle_datagram "
              f"({per * a.rounds} auths per variant, median of {a.rounds} rounds)")
        for name, vals in samples.items():
            med = statistics.median(vals)
            gain = ("" if name == "base" else
                    f"  saves {(base - med) * 1e3:5.0f} µs ({(1 - med / base) * 100:4.1f} %)")
            print(f"  {name:<10} {med:6.3f} ms{gain}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
