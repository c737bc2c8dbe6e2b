"""Prototype of a faster CRL build for large CRLs, measured against revocation/crl.build_crl.

    .venv/bin/python bench/crl_fast.py [--n 1000000] [--check 20000]

Not product code: it shows what a fix in revocation/crl.py could gain. The idea: let
cryptography build and sign an *empty* CRL (issuer, times, algorithm, cRLNumber, AKI: all
the parts that need care), then splice a revokedCertificates SEQUENCE encoded directly in
Python bytes into its TBSCertList and sign the new TBS with the issuer key. Per entry
this is a few bytes operations instead of a RevokedCertificateBuilder + build() +
RevokedEntry validation (~12 µs per entry measured in build_crl).

--check N: for N entries, the TBSCertList bytes must equal build_crl's byte for byte (same
times and number), and the result must parse and verify with cryptography.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from revocation.crl import (  # noqa: E402
    RevokedEntry,
    build_crl,
    crl_der,
    signature_hash_for,
)
from revocation.reasons import to_flag  # noqa: E402

_REASON_CODE = {f: i for i, f in enumerate([
    x509.ReasonFlags.unspecified, x509.ReasonFlags.key_compromise, x509.ReasonFlags.ca_compromise,
    x509.ReasonFlags.affiliation_changed, x509.ReasonFlags.superseded,
    x509.ReasonFlags.cessation_of_operation, x509.ReasonFlags.certificate_hold])}
_REASON_CODE[x509.ReasonFlags.privilege_withdrawn] = 9
_REASON_CODE[x509.ReasonFlags.aa_compromise] = 10
# crlEntryExtensions: SEQUENCE { SEQUENCE { OID 2.5.29.21, OCTET STRING { ENUMERATED n } } }
_REASON_EXT = {
    code: bytes.fromhex("300c300a0603551d150403 0a01") + bytes((code,))
    for code in range(11)
}


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(b),)) + b


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _len(len(body)) + body


def _read_tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of body, end of element) of the element at pos."""
    tag = der[pos]
    n = der[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(der[pos:pos + k], "big")
        pos += k
    return tag, pos, pos + n


def _time(t: dt.datetime) -> bytes:
    t = t.astimezone(dt.UTC)
    if 1950 <= t.year < 2050:  # RFC 5280 §5.1.2.4: UTCTime through 2049
        return _tlv(0x17, t.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, t.strftime("%Y%m%d%H%M%SZ").encode())


def encode_entries(entries: list[tuple[int, dt.datetime, str | None]]) -> bytes:
    parts = []
    time_cache: dict[dt.datetime, bytes] = {}
    reason_cache: dict[str | None, bytes] = {}
    for serial, at, reason in entries:
        s = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # leading 0 keeps it positive
        t = time_cache.get(at)
        if t is None:
            t = time_cache[at] = _time(at)
        ext = reason_cache.get(reason)
        if ext is None:
            code = _REASON_CODE[to_flag(reason)]
            ext = reason_cache[reason] = b"" if code == 0 else _REASON_EXT[code]
        body = b"\x02" + _len(len(s)) + s + t + ext
        parts.append(b"\x30" + _len(len(body)) + body)
    return _tlv(0x30, b"".join(parts)) if parts else b""


def build_crl_der_fast(issuer_cert, issuer_key, entries, crl_number, this_update,  # type: ignore[no-untyped-def]
                       next_update) -> bytes:
    """Same output as crl_der(build_crl(...)) for (serial, revoked_at, reason) tuples."""
    empty = build_crl(issuer_cert, issuer_key, [], crl_number, this_update, next_update)
    der = crl_der(empty)
    _, body, _ = _read_tlv(der, 0)  # CertificateList
    _, tbs_body, tbs_end = _read_tlv(der, body)  # TBSCertList
    _, _, sigalg_end = _read_tlv(der, tbs_end)
    sigalg = der[tbs_end:sigalg_end]
    # walk the TBS: version, signature, issuer, thisUpdate, nextUpdate, [0] crlExtensions
    pos = tbs_body
    for _ in range(5):
        pos = _read_tlv(der, pos)[2]
    head, tail = der[tbs_body:pos], der[pos:tbs_end]
    tbs = _tlv(0x30, head + encode_entries(entries) + tail)
    h = signature_hash_for(issuer_key)
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        sig = issuer_key.sign(tbs, ec.ECDSA(h))
    elif isinstance(issuer_key, rsa.RSAPrivateKey):
        sig = issuer_key.sign(tbs, padding.PKCS1v15(), h)
    else:
        sig = issuer_key.sign(tbs)
    return _tlv(0x30, tbs + sigalg + _tlv(0x03, b"\x00" + sig))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--check", type=int, default=20000)
    a = p.parse_args()
    sys.path.insert(0, str(ROOT / "tests" / "unit" / "radius"))
    import conftest

    pki = conftest.build_pki()
    issuer_cert, issuer_key = pki.staff_ca.cert, pki.staff_ca.key
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    nxt = now + dt.timedelta(hours=24)
    reasons = ("keyCompromise", "superseded", "cessationOfOperation", None)
    base = 1 << 120
    rows = [(base + i * 7919, now - dt.timedelta(seconds=i % 86400), reasons[i % 4])
            for i in range(a.n)]

    if a.check:
        sub = rows[: a.check]
        ref = build_crl(issuer_cert, issuer_key, [RevokedEntry(*r) for r in sub], 7, now, nxt)
        fast = x509.load_der_x509_crl(build_crl_der_fast(issuer_cert, issuer_key, sub, 7, now, nxt))
        same = ref.tbs_certlist_bytes == fast.tbs_certlist_bytes
        valid = fast.is_signature_valid(issuer_cert.public_key())
        print(f"check {a.check:,} entries: TBSCertList identical to build_crl: {same}; "
              f"signature valid: {valid}; entries {len(fast)}")
        if not (same and valid):
            return 1

    t0 = time.perf_counter()
    der = build_crl_der_fast(issuer_cert, issuer_key, rows, 8, now, nxt)
    fast_s = time.perf_counter() - t0
    print(f"fast path: {a.n:,} entries in {fast_s:.2f} s ({len(der) / 1e6:.1f} MB DER)", flush=True)
    t0 = time.perf_counter()
    entries = [RevokedEntry(*r) for r in rows]
    crl = build_crl(issuer_cert, issuer_key, entries, 8, now, nxt)
    ref_der = crl_der(crl)
    ref_s = time.perf_counter() - t0
    print(f"build_crl: {a.n:,} entries in {ref_s:.2f} s ({len(ref_der) / 1e6:.1f} MB DER), "
          f"RevokedEntry construction included; fast path is {ref_s / fast_s:.1f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
