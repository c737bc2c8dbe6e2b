"""`certgate certs issue`: server-side key generation for one device (`--cn NAME`), several
(`--cn` repeated) or a file of them (`--from devices.csv`, see certgate.issuing.requests).

One process, one store connection, only the intermediates the devices' groups need. Each
certificate is recorded in the inventory before its files are written and its serial printed.
Bulk runs print `SERIAL<TAB>CN<TAB>GROUP` per certificate on stdout, each failure on stderr
as it happens, a progress line when stdout is a terminal, and a summary at the end; exit 0
when every device was issued, 1 otherwise, 2 for a usage error (nothing issued).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from certgate.cli_types import bounded_int
from certgate.commands import subcommands

MAX_CSV_BYTES = 64 * 1024 * 1024
KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072")  # = certgate.issuing.requests


def add_parsers(sub: argparse._SubParsersAction, add, settings_of) -> None:  # noqa: ANN001
    certs = subcommands(sub, "certs")
    sp = add("issue", lambda args: run(settings_of(args), args, sp),
             "generate keys and issue device certificates (one, several, or from a CSV file)",
             certs)
    sp.add_argument("--group", help="the devices' group (a CSV row's group column wins)")
    sp.add_argument("--cn", action="append", metavar="NAME",
                    help="device common name, also the file name (repeatable)")
    sp.add_argument("--from", dest="from_file", metavar="CSV",
                    help="devices from a CSV file: header row, columns cn (required), group, "
                    "san, device_id, days, key_type")
    sp.add_argument("--out", required=True, help="output directory")
    sp.add_argument("--days", type=bounded_int(1, 3650),
                    help="validity, 1..3650 (default: the group's validity_days)")
    sp.add_argument("--p12", action="store_true", help="also write NAME.p12 (no password)")
    sp.add_argument("--san", action="append",
                    help="dns:NAME, email:ADDR, uri:URI (repeatable; with a single --cn)")
    sp.add_argument("--device-id", help="with a single --cn")
    sp.add_argument("--key-type", default="ec-p256", choices=KEY_TYPES,
                    help="device key (default ec-p256; RSA generation costs the CPU here)")
    sp.add_argument("--profile", default="device", choices=("device", "nas"),
                    help="device (EAP-TLS, the default) or nas: the certificate a NAS or "
                    "RADIUS proxy presents to [radsec] (clientAuth + serverAuth, CN as DNS "
                    "SAN; never admitted as a device)")


def run(s, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:  # noqa: ANN001
    from certgate.issuing.requests import (
        CsvFormatError,
        DeviceRequest,
        FieldError,
        make_request,
        read_devices,
    )

    if bool(args.cn) == bool(args.from_file):
        parser.error("give --cn NAME (repeatable) or --from devices.csv (one of them)")
    groups = [g.name for g in s.groups]
    if args.group is not None and args.group not in groups:
        parser.error(f"--group: unknown group {args.group!r} (groups: {', '.join(groups)})")
    if args.cn:
        if args.group is None:
            parser.error("--group is required with --cn")
        if len(args.cn) > 1 and (args.san or args.device_id):
            parser.error("--san and --device-id apply to a single --cn; for several devices "
                         "use --from with san and device_id columns")
        rows = []
        for cn in args.cn:
            try:
                request = make_request(cn=cn, group=args.group, sans=args.san or [],
                                       device_id=args.device_id, days=args.days,
                                       key_type=args.key_type, groups=groups,
                                       default_key_type=args.key_type, where=f"--cn {cn}")
            except FieldError as exc:
                parser.error(f"--{exc.column.replace('_', '-')}: {exc.message}")
            if any(r.cn == request.cn for r in rows):
                parser.error(f"--cn {request.cn!r} given twice")
            rows.append(replace(request, profile=args.profile))
        if len(rows) == 1:
            return _issue_one(s, args, rows[0])
    else:
        path = Path(args.from_file)
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_CSV_BYTES + 1)
        except OSError as exc:
            parser.error(f"--from {path}: {exc.strerror or exc}")
        if len(data) > MAX_CSV_BYTES:
            parser.error(f"--from {path}: larger than {MAX_CSV_BYTES // 2**20} MiB; split it")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            parser.error(f"--from {path}: line {line}: not UTF-8 (save the file as UTF-8)")
        try:
            rows = read_devices(text, groups=groups, default_group=args.group,
                                default_days=args.days, default_key_type=args.key_type)
        except CsvFormatError as exc:
            parser.error(f"--from {path}: {exc}")
        if not rows:
            parser.error(f"--from {path}: no devices after the header")
        if args.profile != "device":  # rows are requests, or RowErrors reported in order
            rows = [replace(r, profile=args.profile) if isinstance(r, DeviceRequest) else r
                    for r in rows]
    return _issue_many(s, args, rows)


def _issue_one(s, args: argparse.Namespace, request) -> int:  # noqa: ANN001
    import asyncio

    from certgate.bootstrap import utc_now
    from certgate.errors import OperatorError
    from certgate.issuing.batch import BatchIssuer, FileClash

    async def go() -> int:
        batch = BatchIssuer(s, Path(args.out), p12=args.p12, now=utc_now)
        batch.load_issuers({request.group})
        async with batch:
            try:
                return (await batch.issue(request)).serial_number
            except FileClash as exc:
                raise OperatorError(str(exc)) from None

    print(format(asyncio.run(go()), "x"))
    return 0


class Progress:
    """One line, redrawn in place at most 10 times a second, only on a terminal; cleared
    before anything else is printed so results and errors scroll above it."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.done = self.issued = self.failed = 0
        self._shown = 0.0
        self._visible = False

    def clear(self) -> None:
        if self._visible:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()
            self._visible = False

    def say(self, text: str, *, err: bool = False) -> None:
        self.clear()
        print(text, file=sys.stderr if err else sys.stdout, flush=True)

    def step(self, current: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._shown < 0.1:
            return
        self._shown = now
        width = len(str(self.total))
        sys.stdout.write(f"\r\x1b[K[{self.done:>{width}}/{self.total}] issued {self.issued}, "
                         f"failed {self.failed}  {current[:40]}")
        sys.stdout.flush()
        self._visible = True


def _issue_many(s, args: argparse.Namespace, rows: list) -> int:  # noqa: ANN001
    import asyncio

    from certgate.bootstrap import utc_now
    from certgate.errors import OPERATOR_ERRORS
    from certgate.issuing.batch import BatchIssuer, FileClash
    from certgate.issuing.requests import RowError

    progress = Progress(len(rows), enabled=sys.stdout.isatty())
    failures: list[str] = []
    stopped: str | None = None

    def fail(message: str) -> None:
        failures.append(message)
        progress.failed += 1
        progress.say(f"certgate: {message} (not issued)", err=True)

    async def go() -> None:
        nonlocal stopped
        batch = BatchIssuer(s, Path(args.out), p12=args.p12, now=utc_now)
        batch.load_issuers({r.group for r in rows if not isinstance(r, RowError)})
        async with batch:
            for index, row in enumerate(rows):
                if isinstance(row, RowError):
                    fail(str(row))
                else:
                    progress.step(row.cn)
                    try:
                        cert = await batch.issue(row)
                    except FileClash as exc:
                        fail(f"{row.where}: {exc}")
                    except OPERATOR_ERRORS as exc:
                        left = len(rows) - index
                        stopped = f"stopped at {row.where}: {exc} ({left} not attempted)"
                        return
                    else:
                        progress.issued += 1
                        progress.say(f"{cert.serial_number:x}\t{row.cn}\t{row.group}")
                progress.done += 1
            progress.step("", force=True)

    try:
        asyncio.run(go())
    finally:
        progress.clear()
    total = len(rows)
    print(f"issued {progress.issued}, failed {len(failures)} of {total}"
          + (f"; {stopped}" if stopped else ""), file=sys.stderr)
    for message in failures[:50]:
        print(f"  {message}", file=sys.stderr)
    if len(failures) > 50:
        print(f"  ... and {len(failures) - 50} more (printed above as they happened)",
              file=sys.stderr)
    return 0 if not failures and not stopped else 1
