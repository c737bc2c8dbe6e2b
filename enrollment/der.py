"""A small DER writer for the CMS structures certgate builds on every SCEP reply.

asn1crypto builds the same bytes but costs ~1 ms per CertRep in object construction;
here the constant parts (algorithm identifiers, OIDs, a signer's issuerAndSerialNumber
and certificate set) are encoded once (by asn1crypto, so they are right by construction)
and cached, and the variable parts are concatenated. Output is byte-identical to the
asn1crypto builders (tests/unit/enrollment/codec/test_der.py).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from functools import lru_cache

from asn1crypto import algos, cms

from enrollment.cms_ber import read_tlv

SEQUENCE = 0x30
SET = 0x31
OCTET_STRING = 0x04
INTEGER = 0x02
PRINTABLE_STRING = 0x13
UTF8_STRING = 0x0C
UTC_TIME = 0x17


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + length(len(content)) + content


def seq(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(parts))


def set_of(parts: Iterable[bytes], tag: int = SET) -> bytes:
    """A SET OF in the given order (sort the parts first for DER SET OF semantics)."""
    return tlv(tag, b"".join(parts))


def octet_string(data: bytes) -> bytes:
    return tlv(OCTET_STRING, data)


def integer(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative INTEGER")
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def utc_time(value: datetime.datetime) -> bytes:
    """UTCTime YYMMDDHHMMSSZ of an aware datetime (years 1950-2049)."""
    utc = value.astimezone(datetime.UTC)
    if not 1950 <= utc.year <= 2049:
        raise ValueError("UTCTime only covers 1950-2049")
    return tlv(UTC_TIME, utc.strftime("%y%m%d%H%M%SZ").encode())


def explicit(number: int, content: bytes) -> bytes:
    """[number] EXPLICIT (constructed, context-specific) around one encoded value."""
    return tlv(0xA0 | number, content)


@lru_cache(maxsize=64)
def attribute_type(name: str) -> bytes:
    """A CMS attribute type OID (asn1crypto's name, SCEP ones registered by scep_types)."""
    return cms.CMSAttributeType(name).dump()


@lru_cache(maxsize=16)
def content_type(name: str) -> bytes:
    return cms.ContentType(name).dump()


@lru_cache(maxsize=16)
def digest_algorithm(name: str) -> bytes:
    return algos.DigestAlgorithm({"algorithm": name}).dump()


@lru_cache(maxsize=16)
def signed_digest_algorithm(name: str) -> bytes:
    return algos.SignedDigestAlgorithm({"algorithm": name}).dump()


@lru_cache(maxsize=16)
def encryption_algorithm_oid(name: str) -> bytes:
    return algos.EncryptionAlgorithmId(name).dump()


def attribute(name: str, value: bytes) -> bytes:
    """Attribute ::= SEQUENCE { type, values SET OF } with one encoded value."""
    return seq(attribute_type(name), tlv(SET, value))


def issuer_and_serial(cert_der: bytes) -> bytes:
    """IssuerAndSerialNumber of a DER certificate: its issuer Name as received (the bytes
    asn1crypto copies) and its serial as a minimal INTEGER (what asn1crypto re-encodes)."""
    cert = read_tlv(cert_der)
    tbs = read_tlv(cert_der, cert.content_start)
    field = read_tlv(cert_der, tbs.content_start)
    if cert_der[field.start] == 0xA0:  # [0] EXPLICIT version
        field = read_tlv(cert_der, field.end)
    if cert_der[field.start] != INTEGER:
        raise ValueError("certificate serialNumber is not an INTEGER")
    serial = int.from_bytes(cert_der[field.content_start:field.content_end], "big", signed=True)
    signature = read_tlv(cert_der, field.end)
    issuer = read_tlv(cert_der, signature.end)
    return seq(cert_der[issuer.start:issuer.end], integer(serial))
