"""`certgate explain CERT.pem | --serial HEX [--chain FILE] [--at TIME] [--json]`.

What RADIUS would answer this certificate and why: radius.verdict (the TLS side's chain
verification, then the RADIUS server's own decision callable) with the revocation and
inventory state read from the store now. Exit 0 accept, 1 reject, 2 usage (an unreadable or
undecodable file, a serial the inventory does not hold), 3 no verdict: a store that cannot be
opened or read (a message on stderr; a script must not take it for a reject).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path

from certgate.errors import OperatorError
from store import StoreUnavailable

EXIT_ACCEPT, EXIT_REJECT, EXIT_USAGE, EXIT_NO_VERDICT = 0, 1, 2, 3


def add_parsers(sub, add, settings_of) -> None:  # noqa: ANN001
    sp = add("explain", lambda args: run(settings_of(args), args),
             "what RADIUS would answer a certificate, and why (exit 0 accept, 1 reject, "
             "2 bad input, 3 no verdict: the store cannot be read)")
    sp.add_argument("cert", nargs="?", metavar="CERT.pem",
                    help="the device certificate (PEM, first one; more certificates after it "
                    "are the chain the device sends; or one DER certificate)")
    sp.add_argument("--serial", metavar="HEX", help="a certificate of the inventory instead")
    sp.add_argument("--chain", metavar="FILE", help="intermediates the device sends (PEM)")
    sp.add_argument("--at", type=parse_time, metavar="TIME",
                    help="judge validity at TIME (ISO 8601, UTC unless an offset is given); "
                    "revocation and inventory as they are now")
    sp.add_argument("--json", action="store_true", help="the same fields as GET /api/v1/explain")


def parse_time(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:64]!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _usage(message: str) -> OperatorError:
    return OperatorError(f"explain: {message}", exit_code=EXIT_USAGE)


def read_certificates(path: Path, what: str) -> list:
    from radius.verdict import parse_certificates

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _usage(f"{what} {path}: cannot read: {exc.strerror or exc}") from None
    try:
        return parse_certificates(data)
    except ValueError as exc:
        raise _usage(f"{what} {path}: {exc}") from None


def trust_material(s) -> tuple:  # noqa: ANN001
    """Root, group intermediates and the GroupTable: certificates only, no key is read."""
    from certgate.explain import report  # lazily: every CLI call imports this module
    from pki.hierarchy import Hierarchy, read_certificate

    hierarchy = Hierarchy(s.pki)
    root = read_certificate(hierarchy.root_cert_path)
    intermediates = hierarchy.load_certificates_only(s.groups)
    missing = [g.name for g in s.groups if g.name not in intermediates]
    if missing:
        raise OperatorError(f"group(s) {', '.join(missing)} have no intermediate CA yet: run "
                            "`certgate init` (RADIUS would not start either)")
    return root, intermediates, report.group_table(intermediates, s.groups)


def run(s, args: argparse.Namespace) -> int:  # noqa: ANN001
    if (args.cert is None) == (args.serial is None):
        raise _usage("give CERT.pem or --serial HEX (one of them)")
    from certgate.explain import report
    serial = None
    if args.serial is not None:
        from store.records import parse_serial

        try:
            serial = parse_serial(args.serial)
        except ValueError as exc:
            raise _usage(f"--serial: {exc}") from None
    certs = read_certificates(Path(args.cert), "CERT.pem") if args.cert else []
    chain = read_certificates(Path(args.chain), "--chain") if args.chain else []
    root, intermediates, groups = trust_material(s)
    now = args.at or dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        answer = asyncio.run(_explain(s, certs, chain, serial, args.serial, root, intermediates,
                                      groups, now))
    except StoreUnavailable as exc:
        raise OperatorError(f"explain: cannot read the store, no verdict: {exc.detail}",
                            exit_code=EXIT_NO_VERDICT) from None
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        sys.stdout.write(report.render(answer))
    return EXIT_ACCEPT if answer["verdict"] == "accept" else EXIT_REJECT


async def _explain(s, certs, chain, serial, serial_text, root, intermediates, groups, now):  # noqa: ANN001, ANN202
    from certgate.explain import report
    from certgate.storage import open_configured
    from radius.verdict import evaluate, parse_certificates, policy

    try:
        store = await open_configured(s)
    except OperatorError as exc:
        raise OperatorError(f"explain: no verdict: {exc}", exit_code=EXIT_NO_VERDICT) from None
    try:
        if serial is not None:
            record, inventory = await report.lookup(store, serial)
            if record is None:
                raise _usage(f"--serial: no certificate with serial {serial_text} in the "
                             "inventory")
            certs = parse_certificates(record.pem.encode())
        leaf, presented = certs[0], [*certs[1:], *chain]
        if serial is None:
            record, inventory = await report.lookup(store, leaf.serial_number)
    finally:
        await store.close()
    revoked, issued = report.record_lookups(record, now)
    decide = policy(groups, revoked, issued if s.radius.require_inventory else None)
    verdict = evaluate(leaf, presented, root=root, intermediates=list(intermediates.values()),
                       decide=decide, now=now)
    return report.build(verdict, leaf, now=now, inventory=inventory, record=record,
                        source="store")
