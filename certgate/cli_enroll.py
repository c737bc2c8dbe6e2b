"""`certgate challenge create|mint-blob` and `certgate requests list|approve|reject`.

Registered by `certgate.cli.build_parser`; each command gets the parsed settings.
The challenge token is printed once on stdout and nowhere else (never logged).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from certgate.bootstrap import utc_now
from certgate.cli_types import bounded_int
from certgate.errors import ConfigError, OperatorError
from certgate.settings import Settings
from certgate.storage import open_configured
from pki.hierarchy import Hierarchy
from store import ScepStore
from store.records import PENDING, REQUEST_STATUSES

CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"


def _group(s: Settings, name: str) -> str:
    if s.group(name) is None:
        raise ConfigError(f"unknown group {name!r}: groups are {', '.join(g.name for g in s.groups)}")
    return name


def _ttl(text: str) -> dt.timedelta:
    try:
        from enrollment.challenge_store import parse_ttl

        return parse_ttl(text)
    except ValueError as exc:
        raise ConfigError(f"--ttl: {exc}") from None


def challenge_create(s: Settings, args: argparse.Namespace) -> int:
    group = _group(s, args.group)
    secret_path = Hierarchy(s.pki).challenge_secret_path
    try:
        secret = secret_path.read_bytes()
    except FileNotFoundError:
        raise OperatorError(f"{secret_path} is missing: run `certgate init`") from None

    async def go() -> int:
        from enrollment.challenge_store import create_dynamic

        store = await open_configured(s)
        try:
            created = await create_dynamic(
                store, secret, group, now=utc_now(), actor="cli:challenge-create",
                ttl=_ttl(args.ttl), subject_cn=args.subject, sans=args.san or [],
                device_id=args.device_id, key_types=args.key_type or [],
            )
        except (ValueError, re.error) as exc:
            raise ConfigError(str(exc)) from None
        finally:
            await store.close()
        if args.json:
            print(json.dumps(created.to_json(), indent=2))
        else:
            print(created.token)
            print(f"jti {created.jti}, group {group}, expires {created.expires_at.isoformat()}",
                  file=sys.stderr)
        return 0

    return asyncio.run(go())


def _load_ec_private(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), None)
    except OSError as exc:
        raise OperatorError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise OperatorError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise OperatorError(f"{path} must be a P-256 key")
    return key


def _load_ec_public(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise OperatorError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise OperatorError(f"{path} is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise OperatorError(f"{path} must be a P-256 public key")
    return key


def challenge_mint_blob(s: Settings, args: argparse.Namespace) -> int:
    """Reference MDM side (docs/challenge-blob.md): sign with --mdm-key, encrypt to certgate."""
    from enrollment.blob import BlobClaims, mint_blob  # ~0.1 s: not on every CLI call

    group = _group(s, args.group)
    mdm_key = _load_ec_private(Path(args.mdm_key))
    pub_path = Path(args.certgate_key) if args.certgate_key else s.pki.dir / "blob.pub.pem"
    certgate_key = _load_ec_public(pub_path)
    now = utc_now()
    claims = BlobClaims(
        group=group, sub=args.sub, nbf=now - dt.timedelta(minutes=1), exp=now + _ttl(args.ttl),
        sans=tuple(args.san or ()), eku=tuple(args.eku or ()), key=tuple(args.key or ("ec-p256",
                                                                                        "rsa-2048+")),
        validity_days=args.validity_days or (s.group(group).validity_days),  # type: ignore[union-attr]
        device_id=args.device_id,
    )
    try:
        blob = mint_blob(claims, mdm_key, certgate_key, now)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(blob)
    return 0


def requests_cmd(s: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        store = await open_configured(s)
        requests = ScepStore(store)
        try:
            if args.requests_command == "list":
                rows = await requests.list_requests(status=args.status, group=args.group)
                if args.json:
                    print(json.dumps([r.to_json() for r in rows], indent=2))
                for r in [] if args.json else rows:
                    print(f"{r.id:<6} {r.group:<12} {r.status:<9} "
                          f"{r.created_at.isoformat()}  {r.subject}  tx={r.transaction_id}")
                return 0
            approve = args.requests_command == "approve"
            decided = await requests.decide(args.id, approve, f"cli:requests-{args.requests_command}",
                                            utc_now(), comment=args.comment)
            if decided is None:
                found = await requests.get_request(args.id)
                state = f"is {found.status}" if found else "does not exist"
                raise OperatorError(f"request {args.id} {state}: only {PENDING} requests can be "
                                    "decided")
            print(f"request {decided.id} {decided.status}: {decided.subject}")
            return 0
        finally:
            await store.close()

    return asyncio.run(go())


def add_parsers(sub: argparse._SubParsersAction, add, settings_of) -> None:  # noqa: ANN001
    """Parser entries; `add(name, fn, help, parent)` and `settings_of(args)` come from cli.py."""

    def run(fn):  # noqa: ANN001, ANN202
        return lambda args: fn(settings_of(args), args)

    parser_class = sub._parser_class  # noqa: SLF001 - the CLI's exit-2 parser
    ch = sub.add_parser("challenge", help="SCEP challenges").add_subparsers(
        dest="challenge_command", required=True, parser_class=parser_class)
    sp = add("create", run(challenge_create), "create a one-time SCEP challenge (printed once)", ch)
    sp.add_argument("--group", required=True)
    sp.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 2d (max 7d)")
    sp.add_argument("--subject", metavar="CN", help="exact CN, or re:REGEX")
    sp.add_argument("--san", action="append", help="allowed SAN dns:NAME, email:.., uri:.. (repeat)")
    sp.add_argument("--device-id")
    sp.add_argument("--key-type", action="append", help="allowed key spec: ec-p256, rsa-2048+ ...")
    sp.add_argument("--json", action="store_true", help="print challenge, jti and expiry as JSON")
    sp = add("mint-blob", run(challenge_mint_blob),
             "mint a signed + encrypted challenge blob (reference MDM implementation)", ch)
    sp.add_argument("--group", required=True)
    sp.add_argument("--sub", required=True, help="exact subject CN of the CSR")
    sp.add_argument("--mdm-key", required=True, help="MDM signing key (P-256 PEM)")
    sp.add_argument("--certgate-key", help="certgate blob public key (default <pki dir>/blob.pub.pem)")
    sp.add_argument("--san", action="append", help="exact SAN set, e.g. dns:host (repeat)")
    sp.add_argument("--eku", action="append", help=f"exact requested EKU set (e.g. {CLIENT_AUTH})")
    sp.add_argument("--key", action="append", help="key spec(s) (default ec-p256, rsa-2048+)")
    sp.add_argument("--validity-days", type=int)
    sp.add_argument("--ttl", default="1h")
    sp.add_argument("--device-id")

    rq = sub.add_parser("requests", help="SCEP requests waiting for approval").add_subparsers(
        dest="requests_command", required=True, parser_class=parser_class)
    sp = add("list", run(requests_cmd), "list SCEP requests", rq)
    sp.add_argument("--status", choices=REQUEST_STATUSES)
    sp.add_argument("--group")
    sp.add_argument("--json", action="store_true")
    for name, text in (("approve", "approve a pending request (the next poll issues)"),
                       ("reject", "reject a pending request (the next poll gets FAILURE)")):
        sp = add(name, run(requests_cmd), text, rq)
        sp.add_argument("id", type=bounded_int(1, 2**63 - 1))
        sp.add_argument("--comment")
