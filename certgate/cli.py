"""The `certgate` command line. Exit codes: 0 ok, 2 usage/config error, 1 runtime failure."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from certgate.errors import OPERATOR_ERRORS, ConfigError, OperatorError
from certgate.settings import Settings, load_settings

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: exit 2, one line
        self.print_usage(sys.stderr)
        print(f"certgate: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _settings(args: argparse.Namespace) -> Settings:
    path = args.config or os.environ.get("CERTGATE_CONFIG")
    if not path:
        raise ConfigError("no configuration: pass --config FILE or set CERTGATE_CONFIG")
    return load_settings(path)


def _duration(text: str) -> dt.timedelta:
    from enrollment.challenge_store import parse_ttl  # one duration grammar for all commands

    try:
        return parse_ttl(text, maximum=dt.timedelta(days=36500), field="duration")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (e.g. 30d, 12h, 90m)") from None


def _listen(text: str) -> str:
    from certgate.demo import parse_listen

    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _run(coro_fn: Callable[[], Coroutine[Any, Any, int]]) -> int:
    return asyncio.run(coro_fn())


# -- commands ------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    s = _settings(args)
    print(f"{s.path}: ok ({len(s.groups)} group(s): {', '.join(g.name for g in s.groups)}; "
          f"{len(s.radius.clients)} RADIUS client(s))")
    for warning in s.warnings:  # risky or deprecated settings that still work: not a failure
        print(f"certgate: warning: {warning}", file=sys.stderr)
    problems: list[str] = []
    if not args.no_state:
        from certgate.bootstrap import utc_now
        from pki.state import check_state

        problems = check_state(s.pki, s.groups, utc_now())
        if s.radsec is not None:
            from certgate.settings.radsec import client_ca_problem

            problem = client_ca_problem(s.radsec.client_ca)
            if problem:
                problems.append(f"[radsec] client_ca: {problem}")
        if problems:
            print(f"certgate: {len(problems)} problem(s) with the PKI files of {s.path} "
                  "(--no-state skips these checks):", file=sys.stderr)
            for line in problems:
                print(f"  - {line}", file=sys.stderr)
        else:
            print(f"{s.pki.dir}: ok (root, server certificate for {s.pki.server_name}, "
                  f"{len(s.groups)} intermediate(s) and SCEP RA(s), key files 0600)")
    code = EXIT_OK
    if args.connect:
        from certgate.cli_storage import check_connection

        code = _run(lambda: check_connection(s))
    return EXIT_USAGE if problems else code


def cmd_init(args: argparse.Namespace) -> int:
    from certgate.bootstrap import init_pki

    s = _settings(args)
    imported = None
    if args.import_root:
        imported = (Path(args.import_root), Path(args.import_root_key) if args.import_root_key
                    else None)
    report = _run(lambda: init_pki(s, imported))
    for item in report.created:
        print(f"created {item}")
    for item in report.kept:
        print(f"kept    {item}")
    return EXIT_OK


def cmd_groups(args: argparse.Namespace) -> int:
    from pki.hierarchy import Hierarchy

    s = _settings(args)
    certs = Hierarchy(s.pki).load_certificates_only(s.groups)
    rows = []
    for g in s.groups:
        cert = certs.get(g.name)
        if cert is None:
            rows.append({"group": g.name, "subject": None, "key_id": None, "not_after": None,
                         "vlan": g.vlan, "status": "missing: run certgate init"})
            continue
        from pki.groups import Group

        rows.append({
            "group": g.name,
            "subject": cert.subject.rfc4514_string(),
            "key_id": Group(g.name, cert).key_id.hex(),
            "not_after": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
            "vlan": g.vlan,
            "status": "ok",
        })
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['group']:<16} {r['status'] if r['subject'] is None else r['subject']}"
                  f"  key_id={r['key_id']}  expires={r['not_after']}  vlan={r['vlan']}")
    return EXIT_OK


def cmd_ca_root(args: argparse.Namespace) -> int:
    from pki.hierarchy import Hierarchy

    s = _settings(args)
    path = Hierarchy(s.pki).root_cert_path
    if not path.exists():
        raise OperatorError(f"no root certificate at {path}: run `certgate init` first")
    sys.stdout.write(path.read_text())
    return EXIT_OK


def cmd_ca_import(args: argparse.Namespace) -> int:
    from certgate.bootstrap import import_intermediate

    s = _settings(args)
    if s.group(args.group) is None:
        raise ConfigError(f"unknown group {args.group!r}: add [groups.{args.group}] to the config")
    cert = _run(lambda: import_intermediate(s, args.group, Path(args.cert), Path(args.key)))
    print(f"imported {cert.subject.rfc4514_string()} for group {args.group}")
    return EXIT_OK


def cmd_certs_list(args: argparse.Namespace) -> int:
    s = _settings(args)

    async def go() -> int:
        store = await _open_store(s)
        try:
            from certgate.bootstrap import utc_now

            expiring = utc_now() + args.expiring if args.expiring else None
            records = await store.find(group=args.group, status=args.status,
                                       expiring_before=expiring,
                                       profile=None if args.all else "device")
        finally:
            await store.close()
        if args.json:
            print(json.dumps([r.to_json() for r in records], indent=2))
        else:
            for r in records:
                print(f"{r.serial_hex:<34} {r.group:<12} {r.status:<8} "
                      f"{r.not_after.date().isoformat()}  {r.subject}"
                      + (f"  ({r.reason})" if r.reason else ""))
        return EXIT_OK

    return _run(go)


def cmd_certs_show(args: argparse.Namespace) -> int:
    from store.records import parse_serial

    s = _settings(args)
    serial = _parse_serial_arg(parse_serial, args.serial)

    async def go() -> int:
        store = await _open_store(s)
        try:
            record = await store.get(serial)
            history = await store.audit_log(serial) if record else []
        finally:
            await store.close()
        if record is None:
            raise OperatorError(f"no certificate with serial {args.serial} in the inventory")
        out = record.to_json()
        out["audit"] = history
        if args.pem:
            sys.stdout.write(record.pem)
        else:
            print(json.dumps(out, indent=2))
        return EXIT_OK

    return _run(go)


def _parse_serial_arg(parse, text: str) -> int:
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def cmd_release(args: argparse.Namespace) -> int:
    args.release_hold, args.reason, args.device_id, args.subject, args.group, args.yes = (
        True, "removeFromCRL", None, None, None, False)
    return cmd_revoke(args)


def cmd_revoke(args: argparse.Namespace) -> int:
    from certgate.revoke_cli import run_revoke

    s = _settings(args)
    return _run(lambda: run_revoke(s, args))


def cmd_serve(args: argparse.Namespace) -> int:
    s = _settings(args)
    if s.server.workers > 1 and "CERTGATE_WORKER" not in os.environ:
        from certgate.workers import supervise  # before anything imports prometheus_client

        return supervise(s)
    from certgate.app import serve

    return asyncio.run(serve(s))


def cmd_demo(args: argparse.Namespace) -> int:
    from certgate.demo import run_demo

    return run_demo(Path(args.dir), serve=not args.no_serve, radius_listen=args.radius_listen,
                    http_listen=args.http_listen, acct_listen=args.acct_listen)


async def _open_store(s: Settings):
    from certgate.storage import open_configured

    return await open_configured(s)


# -- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="certgate", description="Network-access PKI: SCEP, per-group CAs, "
                "revocation, RADIUS EAP-TLS, metrics")
    p.add_argument("--config", help="config file (default: $CERTGATE_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str, parent=sub):
        sp = parent.add_parser(name, help=help, description=help)
        sp.add_argument("--config", default=argparse.SUPPRESS, help="config file")
        sp.set_defaults(fn=fn)
        return sp

    sp = add("init", cmd_init, "create the root, one intermediate per group, server and RA certs "
             "(only what is missing)")
    sp.add_argument("--import-root", metavar="CERT", help="bring your own root certificate")
    sp.add_argument("--import-root-key", metavar="KEY", help="its private key (optional)")
    add("serve", cmd_serve, "run RADIUS, SCEP, CRL/OCSP, admin API and /metrics")
    sp = add("check-config", cmd_check_config, "validate the config file and exit")
    sp.add_argument("--connect", action="store_true",
                    help="also open the configured store (without migrating it) and report its "
                    "backend, location and schema version")
    sp.add_argument("--no-state", action="store_true",
                    help="check only the file itself, not the PKI it refers to (root, server "
                    "certificate and server_name, each group's intermediate and SCEP RA, key "
                    "file modes and owner)")
    sp = add("groups", cmd_groups, "list groups with their intermediate CA")
    sp.add_argument("--json", action="store_true")

    ca = sub.add_parser("ca", help="CA certificates").add_subparsers(
        dest="ca_command", required=True, parser_class=_Parser)
    add("root", cmd_ca_root, "print the root certificate (PEM)", ca)
    sp = add("import", cmd_ca_import, "import an existing intermediate for a group", ca)
    sp.add_argument("--group", required=True)
    sp.add_argument("--cert", required=True)
    sp.add_argument("--key", required=True)

    certs = sub.add_parser("certs", help="certificate inventory").add_subparsers(
        dest="certs_command", required=True, parser_class=_Parser)
    # certs issue, certs import: certgate/commands/certs_*.py
    sp = add("list", cmd_certs_list, "list certificates", certs)
    sp.add_argument("--group")
    sp.add_argument("--status", choices=["active", "revoked"])
    sp.add_argument("--expiring", type=_duration, metavar="DURATION",
                    help="only active certificates expiring within DURATION (e.g. 30d)")
    sp.add_argument("--all", action="store_true", help="include RA and server certificates")
    sp.add_argument("--json", action="store_true")
    sp = add("show", cmd_certs_show, "show one certificate and its audit trail", certs)
    sp.add_argument("serial")
    sp.add_argument("--pem", action="store_true")

    sp = add("revoke", cmd_revoke, "revoke certificates (durable before acknowledged)")
    sel = sp.add_mutually_exclusive_group(required=True)
    sel.add_argument("--serial")
    sel.add_argument("--device-id")
    sel.add_argument("--subject", metavar="CN")
    sel.add_argument("--group")
    sp.add_argument("--reason", required=True, help="RFC 5280 reason, e.g. keyCompromise")
    sp.add_argument("--yes", action="store_true", help="do not ask before bulk revocations")
    sp.add_argument("--release-hold", action="store_true",
                    help="release a certificateHold instead (with --serial; also "
                    "--reason removeFromCRL)")
    sp = add("release", cmd_release, "release a certificateHold (removeFromCRL): the device "
             "is admitted again and its quarantined sessions get a CoA back")
    sp.add_argument("--serial", required=True)

    from certgate.cli_enroll import add_parsers as add_enrollment_parsers

    add_enrollment_parsers(sub, add, _settings)  # challenge create|mint-blob, requests ...

    from certgate.cli_storage import add_parsers as add_storage_parsers

    add_storage_parsers(sub, add, _settings)  # storage migrate|copy

    from certgate.commands import add_parsers as add_command_parsers

    add_command_parsers(sub, add, _settings)  # one module per command in certgate/commands/

    from certgate.demo import DEFAULT_HTTP, DEFAULT_RADIUS

    sp = add("demo", cmd_demo, "write a demo config (groups staff, guests; generated secrets "
             "stored in DIR/certgate.toml, the RADIUS secret and admin token also printed once), "
             "create the PKI, and serve")
    sp.add_argument("--dir", default="demo", help="where the config and the PKI go (default: "
                    "demo); an existing DIR/certgate.toml is used as it is")
    sp.add_argument("--no-serve", action="store_true",
                    help="only write the config and create the PKI, then exit (e.g. to inspect "
                    "or edit the config, or to run `certgate serve` under a supervisor)")
    sp.add_argument("--radius-listen", metavar="HOST:PORT", default=DEFAULT_RADIUS,
                    type=_listen, help=f"RADIUS authentication address written into a new "
                    f"config (default: {DEFAULT_RADIUS})")
    sp.add_argument("--acct-listen", metavar="HOST:PORT", type=_listen,
                    help="RADIUS accounting address (default: the --radius-listen port + 1)")
    sp.add_argument("--http-listen", metavar="HOST:PORT", default=DEFAULT_HTTP, type=_listen,
                    help=f"HTTP address (SCEP, CRL, OCSP, admin API, /metrics) written into a "
                    f"new config (default: {DEFAULT_HTTP})")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as exc:
        print(f"certgate: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OPERATOR_ERRORS as exc:
        print(f"certgate: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
