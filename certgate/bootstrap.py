"""Offline operations behind the CLI: init the PKI, import intermediates, issue to files."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from certgate.errors import ConfigError, OperatorError
from certgate.settings import Settings
from certgate.storage import open_configured
from pki.hierarchy import GroupCa, Hierarchy, InitReport
from pki.issuance import sign_device
from pki.keys import generate_key
from pki.profiles import name, new_serial
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
    store: Store, group: GroupCa, public_key, subject: x509.Name,  # noqa: ANN001
    sans: list[x509.GeneralName], *, public_url: str, days: int, now: dt.datetime, actor: str,
    source: str, device_id: str | None = None,
) -> x509.Certificate:
    """Sign (off the event loop), then record; a new serial on a clash. The certificate is
    only returned once the store committed it."""
    loop = asyncio.get_running_loop()
    signed: dict[int, x509.Certificate] = {}

    async def sign(serial: int) -> Issued:
        cert = await loop.run_in_executor(None, sign_device, public_key, subject, sans, group,
                                          public_url, serial, now, days)
        signed[serial] = cert
        record = CertRecord.from_certificate(cert, group.name, device_id=device_id,
                                             source=source, issued_at=now)
        return Issued(cert.public_bytes(Encoding.DER), record)

    issued = await store.record_signed(sign, new_serial, actor=actor, now=now)
    return signed[issued.record.serial]


def parse_san(text: str) -> x509.GeneralName:
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise ConfigError(f"--san {text!r}: expected dns:NAME, email:ADDR or uri:URI")
    kind = kind.lower()
    if kind == "dns":
        return x509.DNSName(value)
    if kind == "email":
        return x509.RFC822Name(value)
    if kind == "uri":
        return x509.UniformResourceIdentifier(value)
    raise ConfigError(f"--san {text!r}: unknown kind {kind!r} (dns, email, uri)")


def _write_private(path: Path, data: bytes) -> None:
    if path.exists():
        raise OperatorError(f"{path} exists: refusing to overwrite a private key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


async def issue_to_files(
    s: Settings, group_name: str, cn: str, out: Path, days: int | None, p12: bool,
    sans: list[str], device_id: str | None, key_type: str,
) -> int:
    """Server-side key generation: writes NAME.key, NAME.crt, NAME.chain.pem (+ NAME.p12)."""
    group_settings = s.group(group_name)
    assert group_settings is not None
    if "/" in cn or cn.startswith("."):
        raise ConfigError(f"--cn {cn!r} cannot be used as a file name")
    general_names = [parse_san(x) for x in sans]
    pki = Hierarchy(s.pki).load(s.groups)
    group = pki.groups[group_name]
    out.mkdir(parents=True, exist_ok=True)
    key = generate_key(key_type)
    store = await open_configured(s)
    try:
        cert = await issue_device_certificate(
            store, group, key.public_key(), name(cn), general_names,
            public_url=s.http.public_url, days=days or group_settings.validity_days, now=utc_now(),
            actor="cli:certs-issue", source="cli", device_id=device_id,
        )
    finally:
        await store.close()
    pem = serialization.Encoding.PEM
    _write_private(out / f"{cn}.key", key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (out / f"{cn}.crt").write_bytes(cert.public_bytes(pem))
    (out / f"{cn}.chain.pem").write_bytes(cert.public_bytes(pem) + group.certificate.public_bytes(pem))
    if p12:
        data = pkcs12.serialize_key_and_certificates(
            cn.encode(), key, cert, [group.certificate, pki.root], serialization.NoEncryption()
        )
        _write_private(out / f"{cn}.p12", data)
    return cert.serial_number
