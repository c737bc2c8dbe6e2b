"""Inventory records: one row per issued certificate, also the revocation table."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

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
        raise ValueError(f"not a hexadecimal serial number: {text!r}")
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
