"""EAP packet header codec (RFC 3748 §4, §5).

Pure. Only what an EAP-TLS-only authenticator needs: Request/Response/Success/Failure
headers, Identity, Nak, and the TLS type (13).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

HEADER_LENGTH = 4


class EapCode(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(IntEnum):
    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    TLS = 13


class MalformedEap(Exception):
    """The peer sent an EAP packet that does not parse (peer fault)."""


@dataclass(frozen=True, slots=True)
class EapPacket:
    code: int
    identifier: int
    type: int | None  # None for Success/Failure
    data: bytes  # bytes after the type octet

    @property
    def is_response(self) -> bool:
        return self.code == EapCode.RESPONSE


def parse(data: bytes) -> EapPacket:
    """Parse one EAP packet; the EAP Length must equal the joined EAP-Message length."""
    if len(data) < HEADER_LENGTH:
        raise MalformedEap(f"EAP packet of {len(data)} bytes")
    code, identifier, length = struct.unpack_from("!BBH", data)
    if length != len(data):
        raise MalformedEap(f"EAP Length {length} != {len(data)} received")
    if code in (EapCode.SUCCESS, EapCode.FAILURE):
        if length != HEADER_LENGTH:
            raise MalformedEap("Success/Failure with data")
        return EapPacket(code, identifier, None, b"")
    if code not in (EapCode.REQUEST, EapCode.RESPONSE):
        raise MalformedEap(f"EAP code {code}")
    if length < HEADER_LENGTH + 1:
        raise MalformedEap("Request/Response without a type")
    return EapPacket(code, identifier, data[4], bytes(data[5:]))


def build(code: EapCode, identifier: int, eap_type: int | None = None, data: bytes = b"") -> bytes:
    if not 0 <= identifier <= 0xFF:
        raise ValueError(f"EAP identifier {identifier}")
    if eap_type is None:
        if data:
            raise ValueError("data without a type")
        return struct.pack("!BBH", code, identifier, HEADER_LENGTH)
    return struct.pack("!BBHB", code, identifier, HEADER_LENGTH + 1 + len(data), eap_type) + data


def request(identifier: int, eap_type: int, data: bytes = b"") -> bytes:
    return build(EapCode.REQUEST, identifier, eap_type, data)


def response(identifier: int, eap_type: int, data: bytes = b"") -> bytes:
    return build(EapCode.RESPONSE, identifier, eap_type, data)


def success(identifier: int) -> bytes:
    """RFC 3748 §4.2: Success/Failure carry the Identifier of the Response they answer."""
    return build(EapCode.SUCCESS, identifier)


def failure(identifier: int) -> bytes:
    return build(EapCode.FAILURE, identifier)


def next_identifier(identifier: int) -> int:
    """A new Identifier for each new Request (RFC 3748 §4.1)."""
    return (identifier + 1) & 0xFF
