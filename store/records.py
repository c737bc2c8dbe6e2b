"""The records the store takes and gives back: certificates (the inventory, also the
revocation table), challenges, SCEP requests, accounting sessions and the change feed.

Plain frozen dataclasses; no SQL and no driver here, so every package may import them."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

ACTIVE = "active"
REVOKED = "revoked"
STATUSES = (ACTIVE, REVOKED)


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def parse_serial(text: str) -> int:
    """Accept hex with or without 0x, colons or spaces (as openssl prints it)."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "").replace(" ", "")
    if not cleaned or any(c not in "0123456789abcdef" for c in cleaned):
        raise ValueError(f"not a hexadecimal serial number: {text[:64]!r}")
    cleaned = cleaned.lstrip("0") or "0"
    if len(cleaned) > 40:  # RFC 5280 §4.1.2.2: at most 20 octets
        raise ValueError(f"serial number longer than 20 octets (40 hex digits): {text[:64]!r}…")
    return int(cleaned, 16)


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = []
    for n in ext:
        if isinstance(n, x509.DNSName):
            out.append(f"dns:{n.value}")
        elif isinstance(n, x509.RFC822Name):
            out.append(f"email:{n.value}")
        elif isinstance(n, x509.UniformResourceIdentifier):
            out.append(f"uri:{n.value}")
        elif isinstance(n, x509.IPAddress):
            out.append(f"ip:{n.value}")
        elif isinstance(n, x509.OtherName):
            out.append(f"othername:{n.type_id.dotted_string}")
    return out


@dataclass(frozen=True)
class CertRecord:
    serial: int
    group: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    pem: str
    profile: str = "device"  # device | ra | server
    sans: tuple[str, ...] = ()
    device_id: str | None = None
    status: str = ACTIVE
    revoked_at: dt.datetime | None = None
    reason: str | None = None
    superseded_by: int | None = None
    issued_at: dt.datetime | None = None
    source: str = "cli"
    spki_sha256: str | None = None
    transaction_id: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def serial_hex(self) -> str:
        return serial_hex(self.serial)

    @classmethod
    def from_certificate(
        cls,
        cert: x509.Certificate,
        group: str,
        *,
        profile: str = "device",
        device_id: str | None = None,
        source: str = "cli",
        issued_at: dt.datetime | None = None,
        transaction_id: str | None = None,
    ) -> CertRecord:
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(
            serial=cert.serial_number,
            group=group,
            subject=cert.subject.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            profile=profile,
            sans=tuple(_sans(cert)),
            device_id=device_id,
            issued_at=issued_at,
            source=source,
            spki_sha256=hashlib.sha256(spki).hexdigest(),
            transaction_id=transaction_id,
        )

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.pem.encode())

    def to_json(self) -> dict:
        def ts(v: dt.datetime | None) -> str | None:
            return v.isoformat().replace("+00:00", "Z") if v else None

        return {
            "serial": self.serial_hex,
            "group": self.group,
            "profile": self.profile,
            "subject": self.subject,
            "sans": list(self.sans),
            "device_id": self.device_id,
            "not_before": ts(self.not_before),
            "not_after": ts(self.not_after),
            "status": self.status,
            "revoked_at": ts(self.revoked_at),
            "reason": self.reason,
            "superseded_by": serial_hex(self.superseded_by) if self.superseded_by else None,
            "issued_at": ts(self.issued_at),
            "source": self.source,
        }


@dataclass(frozen=True)
class Issued:
    """A signed certificate (DER) and its inventory record, both made off the event loop."""

    der: bytes
    record: CertRecord


@dataclass(frozen=True)
class RevokeOutcome:
    record: CertRecord
    changed: bool  # False when it was already revoked with this reason


@dataclass(frozen=True)
class ChallengeRow:
    jti: str
    kind: str
    group: str
    token_hash: str | None
    binding: dict[str, Any]
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None
    used_txid: str | None
    used_spki: str | None
    issued_serial: int | None


@dataclass(frozen=True)
class ChallengeUse:
    """Consume challenge `jti` in the same transaction that records the certificate."""

    jti: str
    transaction_id: str
    spki_sha256: str


PENDING, APPROVED, REJECTED, ISSUED = "pending", "approved", "rejected", "issued"
REQUEST_STATUSES = (PENDING, APPROVED, REJECTED, ISSUED)


@dataclass(frozen=True)
class ScepRequest:
    """A SCEP request waiting for (or past) manual approval."""

    id: int
    group: str
    transaction_id: str
    subject: str
    spki_sha256: str
    csr_der: bytes
    status: str
    created_at: dt.datetime
    decided_at: dt.datetime | None
    decided_by: str | None
    issued_serial: int | None
    challenge_jti: str | None
    device_id: str | None
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        def ts(v: dt.datetime | None) -> str | None:
            return v.isoformat().replace("+00:00", "Z") if v else None

        return {
            "id": self.id,
            "group": self.group,
            "transaction_id": self.transaction_id,
            "subject": self.subject,
            "spki_sha256": self.spki_sha256,
            "status": self.status,
            "created_at": ts(self.created_at),
            "decided_at": ts(self.decided_at),
            "decided_by": self.decided_by,
            "issued_serial": serial_hex(self.issued_serial) if self.issued_serial else None,
            "device_id": self.device_id,
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change feed: the state of a certificate after change `seq`.

    Every issuance, revocation and hold release stamps the certificate with the next value of
    one store-wide sequence, in the committing transaction; readers apply changes in sequence
    order and remember the highest one they applied (state, not deltas: replaying is harmless).
    """

    seq: int
    group: str
    serial: int
    status: str
    reason: str | None
    profile: str = "device"
    not_after: dt.datetime | None = None


@dataclass(frozen=True)
class IndexSnapshot:
    """What a node loads at start, per group: the feed position, every revoked serial, those
    of them on certificateHold, and every unexpired device certificate the inventory holds
    that is not revoked (a revoked one is in `revoked`)."""

    seq: int
    revoked: dict[str, set[int]]
    issued: dict[str, set[int]]
    held: dict[str, set[int]] = field(default_factory=dict)  # revoked on certificateHold
