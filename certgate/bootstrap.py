"""Offline operations behind the CLI: init the PKI, import intermediates, issue to files."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certgate.errors import ConfigError, OperatorError
from certgate.settings import Settings
from certgate.storage import open_configured
from pki.hierarchy import GroupCa, Hierarchy, InitReport, Issuer
from pki.issuance import sign_device
from pki.profiles import new_serial
from store import SerialConflict, Store
from store.records import CertRecord, Issued


def utc_now() -> dt.datetime:
    """Whole-second UTC now: the one clock of the CLI's offline operations."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


async def init_pki(s: Settings, import_root: tuple[Path, Path | None] | None) -> InitReport:
    store = await open_configured(s)
    try:
        report = Hierarchy(s.pki).init(s.groups, utc_now(), import_root)
        for profile, cert in report.issued:
            kind, _, group = profile.partition(":")
            record = CertRecord.from_certificate(cert, group or "-", profile=kind, source="init",
                                                 issued_at=utc_now())
            with contextlib.suppress(SerialConflict):  # re-run after a partial init
                await store.record_certificate(record, "cli:init")
        for item in report.created:
            await store.audit("cli:init", "pki-create", details={"item": item})
    finally:
        await store.close()
    return report


async def import_intermediate(s: Settings, group: str, cert: Path, key: Path) -> x509.Certificate:
    imported = Hierarchy(s.pki).import_intermediate(group, cert, key)
    store = await open_configured(s)
    try:
        await store.audit("cli:ca-import", "pki-import", group=group,
                          details={"subject": imported.subject.rfc4514_string()})
    finally:
        await store.close()
    return imported


async def issue_device_certificate(
    store: Store, group: GroupCa | Issuer, public_key, subject: x509.Name,  # noqa: ANN001
    sans: list[x509.GeneralName], *, public_url: str, days: int, now: dt.datetime, actor: str,
    source: str, device_id: str | None = None, profile: str = "device",
) -> x509.Certificate:
    """Sign (off the event loop), then record; a new serial on a clash. The certificate is
    only returned once the store committed it. ``profile``: "device" or "nas" (RadSec)."""
    loop = asyncio.get_running_loop()
    signed: dict[int, x509.Certificate] = {}

    async def sign(serial: int) -> Issued:
        cert = await loop.run_in_executor(None, sign_device, public_key, subject, sans, group,
                                          public_url, serial, now, days, profile)
        signed[serial] = cert
        record = CertRecord.from_certificate(cert, group.name, profile=profile,
                                             device_id=device_id, source=source, issued_at=now)
        return Issued(cert.public_bytes(Encoding.DER), record)

    issued = await store.record_signed(sign, new_serial, actor=actor, now=now)
    return signed[issued.record.serial]


async def issue_to_files(
    s: Settings, group_name: str, cn: str, out: Path, days: int | None, p12: bool,
    sans: list[str], device_id: str | None, key_type: str,
) -> int:
    """Server-side key generation for one device: writes NAME.key, NAME.crt, NAME.chain.pem
    (+ NAME.p12); loads only the group's intermediate key. Bulk: certgate.issuing.batch."""
    from certgate.issuing.batch import BatchIssuer, FileClash
    from certgate.issuing.requests import FieldError, make_request

    try:
        request = make_request(cn=cn, group=group_name, sans=sans, device_id=device_id,
                               days=days, key_type=key_type, groups=[g.name for g in s.groups],
                               default_key_type=key_type, where=f"--cn {cn}")
    except FieldError as exc:
        raise ConfigError(f"--{exc.column.replace('_', '-')}: {exc.message}") from None
    batch = BatchIssuer(s, out, p12=p12, now=utc_now)
    batch.load_issuers({group_name})
    async with batch:
        try:
            cert = await batch.issue(request)
        except FileClash as exc:
            raise OperatorError(str(exc)) from None
    return cert.serial_number
