"""`certgate revoke`: select certificates, confirm bulk operations, revoke durably."""

from __future__ import annotations

import argparse
import sys

from certgate.errors import ConfigError, OperatorError
from certgate.settings import Settings
from certgate.storage import open_configured
from revocation.reasons import canonical_name, parse_reason
from store.records import ACTIVE, REVOKED, parse_serial


async def run_revoke(s: Settings, args: argparse.Namespace) -> int:
    try:
        reason = canonical_name(parse_reason(args.reason, allow_remove_from_crl=True))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if reason == "removeFromCRL":  # RFC 5280: the release of a certificateHold
        if args.serial is None:
            raise ConfigError("--reason removeFromCRL releases one hold: give --serial")
        args.release_hold = True
    if args.group is not None and s.group(args.group) is None:
        raise ConfigError(f"unknown group {args.group!r}")
    store = await open_configured(s)
    try:
        if args.serial is not None:
            try:
                serial = parse_serial(args.serial)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            if args.release_hold:
                if not await store.release_hold(serial, "cli:revoke"):
                    raise OperatorError(f"{args.serial} is not on certificateHold")
                print(f"released hold on {format(serial, 'x')}")
                return 0
            record = await store.get(serial)
            if record is None:
                raise OperatorError(f"no certificate with serial {args.serial} in the inventory")
            targets = [record]
        else:
            targets = await store.find(device_id=args.device_id, subject_cn=args.subject,
                                       group=args.group, status=ACTIVE)
            if not targets:
                print("no active certificate matches", file=sys.stderr)
                return 1
        if len(targets) > 1 and not args.yes:
            if not sys.stdin.isatty():
                raise OperatorError(
                    f"{len(targets)} certificates match: re-run with --yes to revoke them all",
                    exit_code=2,
                )
            answer = input(f"revoke {len(targets)} certificates ({reason})? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("aborted", file=sys.stderr)
                return 1
        done = 0
        for i, record in enumerate(targets, 1):
            if record.status == REVOKED and record.reason != "certificateHold":
                print(f"{record.serial_hex} already revoked ({record.reason})")
                continue
            outcome = await store.revoke(record.serial, reason, "cli:revoke")
            if outcome is not None and outcome.changed:
                done += 1
                print(f"revoked {record.serial_hex} {record.subject} ({reason})")
            if len(targets) > 10 and i % 100 == 0:
                print(f"progress: {i}/{len(targets)}", file=sys.stderr)
        if len(targets) > 1:
            print(f"{done} certificate(s) revoked", file=sys.stderr)
        return 0
    finally:
        await store.close()
