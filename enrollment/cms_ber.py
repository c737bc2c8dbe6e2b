"""Minimal BER TLV helpers for the places asn1crypto is too strict.

asn1crypto 1.5 parses indefinite lengths, but rejects a *definite-length
constructed* OCTET STRING (what Go's pkcs7 writes for EnvelopedData's
encryptedContent, micromdm scepclient) with "method should have been
primitive". The codec reads those fields as raw TLVs and merges them here.
``to_indefinite_ber`` produces Apple-style BER for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "BerError",
    "Tlv",
    "normalize",
    "read_tlv",
    "string_value",
    "to_indefinite_ber",
    "unwrap_explicit",
]

_MAX_DEPTH = 64


class BerError(ValueError):
    """Truncated or invalid BER."""


@dataclass(frozen=True)
class Tlv:
    tag: bytes  # identifier octets
    constructed: bool
    start: int
    content_start: int
    content_end: int  # excludes an end-of-contents marker
    end: int
    indefinite: bool

    @property
    def universal_tag(self) -> int | None:
        first = self.tag[0]
        return first & 0x1F if first & 0xC0 == 0 and len(self.tag) == 1 else None


def read_tlv(data: bytes, pos: int = 0, depth: int = 0) -> Tlv:
    """Decode one TLV starting at ``pos`` (indefinite lengths resolved)."""
    if depth > _MAX_DEPTH:
        raise BerError("nesting too deep")
    n = len(data)
    if pos >= n:
        raise BerError("truncated identifier")
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= n:
                raise BerError("truncated tag number")
            pos += 1
            if not data[pos - 1] & 0x80:
                break
    tag = data[start:pos]
    constructed = bool(first & 0x20)
    if pos >= n:
        raise BerError("truncated length")
    length_byte = data[pos]
    pos += 1
    if length_byte == 0x80:
        if not constructed:
            raise BerError("indefinite length on a primitive")
        child = pos
        while True:
            if child + 2 > n:
                raise BerError("missing end-of-contents")
            if data[child] == 0 and data[child + 1] == 0:
                return Tlv(tag, True, start, pos, child, child + 2, True)
            child = read_tlv(data, child, depth + 1).end
    if length_byte & 0x80:
        count = length_byte & 0x7F
        if count > 8 or pos + count > n:
            raise BerError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        length = length_byte
    if pos + length > n:
        raise BerError("truncated contents")
    return Tlv(tag, constructed, start, pos, pos + length, pos + length, False)


def _children(data: bytes, tlv: Tlv, depth: int) -> list[Tlv]:
    out = []
    pos = tlv.content_start
    while pos < tlv.content_end:
        child = read_tlv(data, pos, depth + 1)
        out.append(child)
        pos = child.end
    return out


def _string_octets(data: bytes, tlv: Tlv, depth: int) -> bytes:
    if not tlv.constructed:
        return data[tlv.content_start : tlv.content_end]
    if depth > _MAX_DEPTH:
        raise BerError("nesting too deep")
    return b"".join(_string_octets(data, c, depth + 1) for c in _children(data, tlv, depth))


def string_value(encoded: bytes) -> bytes:
    """Octets of a (possibly constructed, any tag) string TLV."""
    tlv = read_tlv(encoded)
    return _string_octets(encoded, tlv, 0)


def unwrap_explicit(encoded: bytes) -> bytes:
    """The single TLV inside an EXPLICIT tag."""
    outer = read_tlv(encoded)
    if not outer.constructed:
        raise BerError("explicit tag must be constructed")
    inner = read_tlv(encoded, outer.content_start, 1)
    return encoded[inner.start : inner.end]


# Universal string types whose constructed (chunked) form is unambiguous.
_UNIVERSAL_STRINGS = frozenset({4, 12, 18, 19, 20, 22, 26, 27, 28, 30})


def normalize(data: bytes) -> bytes:
    """BER -> DER lengths: indefinite lengths become definite, constructed
    universal strings become primitive. Context-specific constructed values
    are kept constructed (explicit vs implicit is unknowable here). Returns
    ``data`` itself when nothing changes (the DER fast path).

    asn1crypto 1.5 loses the end-of-contents of an indefinite-length value
    inside a CHOICE (e.g. SignerIdentifier) and then fails; this avoids that.
    """
    top = read_tlv(data)
    out = _normalize(data, top, 0)
    if len(out) == top.end and data[: top.end] == out:
        return data
    return out + data[top.end :]


def _normalize(data: bytes, tlv: Tlv, depth: int) -> bytes:
    if not tlv.constructed:
        return data[tlv.start : tlv.end]
    if tlv.universal_tag in _UNIVERSAL_STRINGS:
        octets = _string_octets(data, tlv, depth)
        return bytes([tlv.tag[0] & ~0x20]) + _encode_length(len(octets)) + octets
    kids = _children(data, tlv, depth)
    if not tlv.indefinite and all(not k.constructed for k in kids):
        return data[tlv.start : tlv.end]
    inner = b"".join(_normalize(data, k, depth + 1) for k in kids)
    return tlv.tag + _encode_length(len(inner)) + inner


def _encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def to_indefinite_ber(
    der: bytes,
    *,
    chunk_size: int = 100,
    keep: Callable[[bytes, Tlv], bool] | None = None,
) -> bytes:
    """Re-encode DER as BER the way Apple clients do (for tests).

    Every constructed value gets an indefinite length, and every OCTET STRING
    (universal 4, or context-specific primitive) longer than ``chunk_size`` is
    split into a constructed, indefinite-length string of chunks. Values for
    which ``keep(data, tlv)`` is true are copied verbatim (default: anything
    shaped like a signed object, SEQUENCE{..., AlgorithmIdentifier, BIT STRING},
    i.e. certificates and CSRs, whose signatures cover their DER).
    """
    keep = keep or _is_signed_object

    def walk(tlv: Tlv, depth: int) -> bytes:
        if keep(der, tlv):
            return der[tlv.start : tlv.end]
        first = tlv.tag[0]
        if tlv.constructed:
            inner = b"".join(walk(c, depth + 1) for c in _children(der, tlv, depth))
            return tlv.tag + b"\x80" + inner + b"\x00\x00"
        value = der[tlv.content_start : tlv.content_end]
        is_string = tlv.universal_tag == 4 or (first & 0xC0 == 0x80 and len(tlv.tag) == 1)
        if is_string and len(value) > chunk_size:
            chunks = b"".join(
                b"\x04" + _encode_length(len(value[i : i + chunk_size])) + value[i : i + chunk_size]
                for i in range(0, len(value), chunk_size)
            )
            return bytes([first | 0x20]) + tlv.tag[1:] + b"\x80" + chunks + b"\x00\x00"
        return der[tlv.start : tlv.end]

    return walk(read_tlv(der), 0)


def _is_signed_object(data: bytes, tlv: Tlv) -> bool:
    if tlv.tag != b"\x30":
        return False
    try:
        kids = _children(data, tlv, 0)
    except BerError:
        return False
    return len(kids) == 3 and kids[0].tag == b"\x30" and kids[1].tag == b"\x30" and kids[2].tag == b"\x03"
