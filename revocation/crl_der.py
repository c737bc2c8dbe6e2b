"""Large CRLs fast: cryptography signs an empty CRL (issuer, times, cRLNumber, AKI, algorithm),
then the revokedCertificates SEQUENCE is encoded here directly and spliced into its
TBSCertList, which is signed again with the issuer key. The entries may come as several
pre-encoded chunks (sign_crl): a complete CRL of a million entries is then re-signed with one
new entry by hashing and copying what it already has, ~0.1 s instead of a rebuild.

Why: cryptography's builder costs ~12 µs per entry (a RevokedCertificateBuilder each),
9 s for a million revocations; this costs ~2 µs. The output is byte-identical to
`build_crl` (same entry order, same encodings; tested), so relying parties see no difference.
"""

from __future__ import annotations

import base64
import datetime as _dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from revocation.crl import build_crl, crl_der, signature_hash_for
from revocation.reasons import reason_code, to_flag

# crlEntryExtensions: SEQUENCE { SEQUENCE { OID 2.5.29.21 (reasonCode), OCTET STRING { ENUMERATED } } }
_REASON_PREFIX = bytes.fromhex("300c300a0603551d1504030a01")

Chunk = bytes | bytearray | memoryview


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(b),)) + b


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _len(len(body)) + body


def _read_tlv(der: bytes, pos: int) -> tuple[int, int]:
    """(start of body, end of element) of the DER element at pos."""
    n = der[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(der[pos:pos + k], "big")
        pos += k
    return pos, pos + n


def _time(t: _dt.datetime) -> bytes:
    t = t.astimezone(_dt.UTC)
    if 1950 <= t.year < 2050:  # RFC 5280 §5.1.2.4: UTCTime through 2049
        return _tlv(0x17, t.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, t.strftime("%Y%m%d%H%M%SZ").encode())


REMOVE_FROM_CRL = "removeFromCRL"  # delta CRLs only (RFC 5280 §5.3.1, code 8)


def encode_entries(entries: Iterable[tuple[int, _dt.datetime, str | None]]) -> bytes:
    """The revokedCertificates entries, concatenated, without the SEQUENCE header: pieces
    that can be joined (an incremental CRL keeps them, revocation/crl_delta.py).
    ``removeFromCRL`` is accepted here; only the delta builder passes it."""
    parts = []
    times: dict[_dt.datetime, bytes] = {}
    reasons: dict[str | None, bytes] = {}
    for serial, at, reason in entries:
        if serial <= 0:
            raise ValueError(f"serial {serial} is not positive")
        s = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # leading 0 keeps it positive
        t = times.get(at)
        if t is None:
            t = times[at] = _time(at)
        ext = reasons.get(reason)
        if ext is None:
            code = 8 if reason == REMOVE_FROM_CRL else reason_code(to_flag(reason))
            ext = reasons[reason] = b"" if code == 0 else _REASON_PREFIX + bytes((code,))
        body = b"\x02" + _len(len(s)) + s + t + ext
        parts.append(b"\x30" + _len(len(body)) + body)
    return b"".join(parts)


def encode_revoked(entries: Iterable[tuple[int, _dt.datetime, str | None]]) -> bytes:
    """The revokedCertificates SEQUENCE (empty bytes when there is none, as RFC 5280 wants)."""
    body = encode_entries(entries)
    return _tlv(0x30, body) if body else b""


@dataclass(frozen=True, slots=True)
class SignedCrl:
    der: bytes
    entries_offset: int  # where the first revokedCertificates entry starts in `der`
    entries_length: int  # bytes of entries (the concatenated chunks)


def _sign(issuer_key: CertificateIssuerPrivateKeyTypes, pieces: Sequence[Chunk]) -> bytes:
    """Sign the concatenation of `pieces` without building it: the digest is fed piece by
    piece (Prehashed), so a 45 MB TBSCertList is hashed, never copied."""
    h = signature_hash_for(issuer_key)
    if h is None:  # Ed25519 / Ed448 hash internally
        return issuer_key.sign(b"".join(pieces))  # type: ignore[call-arg]
    hasher = hashes.Hash(h)
    for piece in pieces:
        hasher.update(piece)
    digest = hasher.finalize()
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        return issuer_key.sign(digest, ec.ECDSA(Prehashed(h)))
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        return issuer_key.sign(digest, padding.PKCS1v15(), Prehashed(h))
    raise TypeError(f"unsupported issuer key type {type(issuer_key).__name__}")


def sign_crl(
    issuer_cert: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    chunks: Sequence[Chunk],
    crl_number: int,
    this_update: _dt.datetime,
    next_update: _dt.datetime,
    extensions: Sequence[x509.Extension] = (),
) -> SignedCrl:
    """A signed CRL whose revokedCertificates are the concatenation of `chunks` (each a run
    of entries from encode_entries; the caller guarantees no serial appears twice).
    Cost: one pass of hashing and one copy of the entries, whatever their number."""
    der = crl_der(build_crl(issuer_cert, issuer_key, [], crl_number, this_update, next_update,
                            extensions))
    body, _ = _read_tlv(der, 0)  # CertificateList
    tbs_body, tbs_end = _read_tlv(der, body)  # TBSCertList
    _, sigalg_end = _read_tlv(der, tbs_end)
    pos = tbs_body
    for _ in range(5):  # version, signature, issuer, thisUpdate, nextUpdate
        pos = _read_tlv(der, pos)[1]
    prefix, suffix = der[tbs_body:pos], der[pos:tbs_end]
    total = sum(len(c) for c in chunks)
    revoked_header = b"\x30" + _len(total) if total else b""
    tbs_len = len(prefix) + len(revoked_header) + total + len(suffix)
    pieces: list[Chunk] = [b"\x30" + _len(tbs_len), prefix, revoked_header, *chunks, suffix]
    signature = _tlv(0x03, b"\x00" + _sign(issuer_key, pieces))
    sigalg = der[tbs_end:sigalg_end]
    outer = b"\x30" + _len(len(pieces[0]) + tbs_len + len(sigalg) + len(signature))
    offset = len(outer) + len(pieces[0]) + len(prefix) + len(revoked_header)
    return SignedCrl(b"".join([outer, *pieces, sigalg, signature]), offset, total)


def build_crl_der(
    issuer_cert: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    entries: Iterable[tuple[int, _dt.datetime, str | None]],
    crl_number: int,
    this_update: _dt.datetime,
    next_update: _dt.datetime,
    extensions: Sequence[x509.Extension] = (),
) -> bytes:
    """DER CRL equal to crl_der(build_crl(...)) for (serial, revoked_at, reason) tuples."""
    return sign_crl(issuer_cert, issuer_key, [encode_entries(entries)], crl_number,
                    this_update, next_update, extensions).der


def entries_span(der: bytes) -> tuple[int, int]:
    """(offset, length) of the revokedCertificates entries in a DER CRL ((end, 0) if none):
    to take up a persisted CRL's entries again without decoding them."""
    body, _ = _read_tlv(der, 0)
    tbs_body, tbs_end = _read_tlv(der, body)
    pos = tbs_body
    for _ in range(5):
        pos = _read_tlv(der, pos)[1]
    if pos < tbs_end and der[pos] == 0x30:
        start, end = _read_tlv(der, pos)
        return start, end - start
    return pos, 0


def der_to_pem(der: bytes) -> bytes:
    b64 = base64.b64encode(der)
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN X509 CRL-----\n" + b"\n".join(lines) + b"\n-----END X509 CRL-----\n"
