"""`certgate audit export [--since T] [--until T] [--json]`: past audit events from the store.

The same events (certgate.audit.events.from_record) the live stream sends for the same
rows, so a SIEM can be backfilled and then fed live without a second parser. Text (one
line per event) by default; JSON lines with --json. Read in pages: constant memory on a
table of millions of rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys

from certgate.errors import OperatorError


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 (UTC unless an offset is given), or a date (midnight UTC)."""
    raw = text.strip()
    try:
        value = dt.datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith("Z") else raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:64]!r} is not an ISO 8601 time (e.g. 2026-01-31 or "
            "2026-01-31T12:00:00Z)") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def add_parsers(sub, add, settings_of) -> None:  # noqa: ANN001
    audit = sub.add_parser("audit", help="the audit trail (docs/audit-events.md)")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    sp = add("export", lambda args: asyncio.run(run(settings_of(args), args)),
             "print past audit events from the store (text, or JSON lines with --json)",
             audit_sub)
    sp.add_argument("--since", type=parse_time, metavar="TIME",
                    help="events at or after TIME (ISO 8601; UTC unless an offset is given)")
    sp.add_argument("--until", type=parse_time, metavar="TIME",
                    help="events before TIME")
    sp.add_argument("--json", action="store_true",
                    help="one JSON event per line, the live stream's schema")


async def run(settings, args: argparse.Namespace) -> int:  # noqa: ANN001
    from certgate.audit.events import from_record, text_line
    from certgate.storage import open_configured
    from store import StoreUnavailable

    if args.since and args.until and args.until <= args.since:
        raise OperatorError("audit export: --until must be later than --since", exit_code=2)
    store = await open_configured(settings, migrate=False)
    node = settings.server.node_name
    count = 0
    out = sys.stdout
    try:
        async for row in store.audit_between(args.since, args.until):
            for ev in from_record(row, node):
                out.write((json.dumps(ev, separators=(",", ":"), default=str) if args.json
                           else text_line(ev)) + "\n")
                count += 1
    except StoreUnavailable as exc:
        raise OperatorError(f"audit export: the store cannot be read: {exc.detail} "
                            f"(after {count} event(s))") from None
    except BrokenPipeError:  # `| head`
        return 0
    finally:
        await store.close()
    out.flush()
    print(f"{count} event(s)", file=sys.stderr)
    return 0
