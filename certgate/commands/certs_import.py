"""`certgate certs import --group G FILE...`: take certificates the group's intermediate issued
earlier (another SCEP server's, or after restoring keys) into the inventory, so RADIUS with
`require_inventory` accepts them. PEM (one or many per file) or DER.

Each certificate is recorded through the store's issuance insert (audited, on the change
feed, so a running server accepts it within a second) as an active device certificate with
source "import". Refused, reported on stderr, exit 1: certificates the intermediate did not
sign (the signature is verified), CA certificates, files that are not certificates, a serial
the inventory holds for another certificate. Skipped (exit 0): certificates already in the
inventory (a re-run is harmless) and expired ones. The previous server's revocations are not
known here: revoke those with `certgate revoke` after the import.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from certgate.commands import subcommands

MAX_FILE_BYTES = 16 * 1024 * 1024


def add_parsers(sub: argparse._SubParsersAction, add, settings_of) -> None:  # noqa: ANN001
    certs = subcommands(sub, "certs")
    sp = add("import", lambda args: run(settings_of(args), args, sp),
             "register certificates a group's intermediate issued earlier (PEM or DER) in the "
             "inventory", certs)
    sp.add_argument("--group", required=True, help="the group whose intermediate issued them")
    sp.add_argument("files", nargs="+", metavar="FILE", help="PEM (one or many) or DER files")


def _read(path: Path) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES // 2**20} MiB")
    return data


def run(s, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:  # noqa: ANN001
    import asyncio

    from certgate.bootstrap import utc_now
    from certgate.errors import OperatorError
    from pki.hierarchy import Hierarchy, read_certificate
    from pki.imported import expired, parse_certificates, refusal

    groups = [g.name for g in s.groups]
    if args.group not in groups:
        parser.error(f"--group: unknown group {args.group!r} (groups: {', '.join(groups)})")
    ca_path = Hierarchy(s.pki).group_dir(args.group) / "ca.crt"
    if not ca_path.exists():
        raise OperatorError(f"group {args.group} has no intermediate CA yet ({ca_path}): run "
                            "`certgate init` or `certgate ca import`")
    intermediate = read_certificate(ca_path)
    now = utc_now()
    candidates = []  # (label, certificate)
    refused: list[str] = []
    skipped: list[str] = []

    def refuse(label: str, why: str) -> None:
        refused.append(f"{label}: {why}")
        print(f"certgate: {label}: refused: {why}", file=sys.stderr)

    for name in args.files:
        try:
            certs = parse_certificates(_read(Path(name)))
        except OSError as exc:
            refuse(name, f"cannot read it ({exc.strerror or exc})")
            continue
        except ValueError as exc:
            refuse(name, str(exc))
            continue
        for index, cert in enumerate(certs, 1):
            label = f"{name} #{index} (serial {cert.serial_number:x}, "
            label += f"{cert.subject.rfc4514_string()!r})"
            why = refusal(cert, args.group, intermediate)
            if why is not None:
                refuse(label, why)
            elif expired(cert, now):
                skipped.append(f"{label}: expired on {cert.not_valid_after_utc.isoformat()}")
            else:
                candidates.append((label, cert))
    imported = asyncio.run(_record(s, args.group, candidates, now, refuse, skipped))
    for message in skipped:
        print(f"certgate: {message}: skipped", file=sys.stderr)
    print(f"imported {imported}, skipped {len(skipped)}, refused {len(refused)} "
          f"(group {args.group})", file=sys.stderr)
    return 1 if refused else 0


async def _record(s, group: str, candidates: list, now, refuse, skipped: list) -> int:  # noqa: ANN001
    from certgate.errors import OperatorError
    from certgate.storage import open_configured
    from store import SerialConflict, StoreUnavailable
    from store.records import CertRecord

    imported = 0
    store = await open_configured(s)
    try:
        for label, cert in candidates:
            record = CertRecord.from_certificate(cert, group, source="import", issued_at=now)
            try:
                await store.record_certificate(record, "cli:certs-import", now=now)
            except SerialConflict:
                held = await store.get(cert.serial_number)
                if held is not None and held.pem.strip() == record.pem.strip():
                    skipped.append(f"{label}: already in the inventory ({held.status})")
                else:
                    other = f"{held.subject!r} in group {held.group}" if held else "another"
                    refuse(label, f"serial {record.serial_hex} is already in the inventory for "
                           f"another certificate ({other})")
                continue
            except StoreUnavailable as exc:
                raise OperatorError(f"{exc}: {imported} imported before it failed; re-run "
                                    "the import (what is recorded is skipped)") from None
            imported += 1
            print(f"{record.serial_hex}\t{record.subject}", flush=True)
    finally:
        await store.close()
    return imported
