"""Issue a device certificate from a group intermediate and record it before returning it."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pki import profiles
from pki.hierarchy import GroupCa
from revocation.inventory import CertRecord
from revocation.store import ChallengeUse, SerialConflict, Store

MAX_SERIAL_ATTEMPTS = 5


@dataclass(frozen=True)
class Issued:
    """A signed certificate (DER) and its inventory record, both made off the event loop."""

    der: bytes
    record: CertRecord


async def record_signed(
    store: Store,
    sign: Callable[[int], Awaitable[Issued]],
    *,
    actor: str,
    now: dt.datetime,
    challenge: ChallengeUse | None = None,
    supersedes: int | None = None,
) -> Issued:
    """`sign(serial)` (off the loop), then record it (with challenge consumption) in one
    transaction; a new serial on a clash. Returns only once the store committed it."""
    for _ in range(MAX_SERIAL_ATTEMPTS):
        issued = await sign(profiles.new_serial())
        try:
            await store.record_certificate(
                issued.record, actor, challenge=challenge, supersedes=supersedes, now=now
            )
        except SerialConflict:
            continue
        return issued
    raise RuntimeError("could not allocate a unique serial number")


def sign_device(public_key, subject: x509.Name, sans: Sequence[x509.GeneralName],  # noqa: ANN001
                group: GroupCa, public_url: str, serial: int, now: dt.datetime, days: int,
                device_id: str | None, source: str, transaction_id: str | None
                ) -> tuple[x509.Certificate, Issued]:
    """Sign a device certificate and make its inventory record (CPU only: run off the loop)."""
    cert = profiles.device_certificate(public_key, subject, sans, group.name, public_url,
                                       group.certificate, group.key, serial, now, days)
    record = CertRecord.from_certificate(cert, group.name, device_id=device_id, source=source,
                                         issued_at=now, transaction_id=transaction_id)
    return cert, Issued(cert.public_bytes(Encoding.DER), record)


async def issue_device_certificate(
    store: Store,
    group: GroupCa,
    public_key,
    subject: x509.Name,
    sans: Sequence[x509.GeneralName],
    *,
    public_url: str,
    days: int,
    now: dt.datetime,
    actor: str,
    source: str,
    device_id: str | None = None,
    challenge: ChallengeUse | None = None,
    supersedes: int | None = None,
    transaction_id: str | None = None,
) -> x509.Certificate:
    """Sign, then record (with challenge consumption) in one transaction; retry on serial clash.

    The certificate is only returned once the store committed it.
    """
    loop = asyncio.get_running_loop()
    signed: dict[int, x509.Certificate] = {}

    async def sign(serial: int) -> Issued:
        # Signing (0.1 ms EC, ~1 ms RSA) and the record's encodings run off the event loop:
        # RADIUS latency stays flat.
        cert, issued = await loop.run_in_executor(
            None, sign_device, public_key, subject, sans, group, public_url, serial, now, days,
            device_id, source, transaction_id)
        signed[serial] = cert
        return issued

    issued = await record_signed(store, sign, actor=actor, now=now, challenge=challenge,
                                 supersedes=supersedes)
    return signed[issued.record.serial]
