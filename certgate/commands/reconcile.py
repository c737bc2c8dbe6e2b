"""`certgate reconcile [--confirm] [--json]`: one MDM reconciliation pass from the CLI.

Without --confirm a dry run: fetch the MDM's device list, print the plan (which
certificates would be revoked, per group, and whether the brake holds), revoke nothing.
With --confirm: the same pass, and every planned revocation applied, past the brake
(actor ``reconcile:cli``, reason cessationOfOperation); running servers pick them up from
the store's change feed (Disconnect, CRL) like any CLI revocation. Exit 0 done (or
nothing to do), 1 the list could not be read completely (nothing revoked) or a store
error, 2 no ``[mdm] reconcile_url``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from certgate.errors import OperatorError


def add_parsers(sub, add, settings_of) -> None:  # noqa: ANN001
    sp = add("reconcile", lambda args: asyncio.run(run(settings_of(args), args)),
             "one MDM reconciliation pass ([mdm] reconcile_url): print the plan (dry run), "
             "or with --confirm revoke the certificates of devices the MDM no longer lists, "
             "past the max_revoke_fraction brake")
    sp.add_argument("--confirm", action="store_true",
                    help="apply the plan (cessationOfOperation), even when the brake holds")
    sp.add_argument("--json", action="store_true", help="the plan and the result as JSON")


def _plan_json(result) -> dict:  # noqa: ANN001 - certgate.reconcile.PassResult
    p = result.plan
    return {
        "result": result.result,
        "error": result.error,
        "applied": result.applied,
        "mdm_devices": p.enrolled if p else None,
        "max_revoke_fraction": p.max_fraction if p else None,
        "groups": [{"group": g.group, "considered": g.considered, "braked": g.braked,
                    "fraction": round(g.fraction, 4),
                    "revoke": [{"serial": format(c.serial, "x"), "device_id": c.device_id,
                                "subject": c.subject, "held": c.held} for c in g.revoke]}
                   for g in (p.groups if p else ())],
        "revoked": [format(c.serial, "x") for c in result.revoked],
        "failed": [format(c.serial, "x") for c in result.failed],
    }


async def run(settings, args: argparse.Namespace) -> int:  # noqa: ANN001
    from certgate.mdm_client import MdmClient
    from certgate.reconcile import revocation_details, run_pass
    from certgate.storage import open_configured
    from revocation.reconcile import REASON

    mdm = settings.mdm
    if mdm.reconcile_url is None:
        raise OperatorError("reconcile: no [mdm] reconcile_url in the config (see "
                            "config/certgate.example.toml)", exit_code=2)
    store = await open_configured(settings)
    client = MdmClient(mdm.ca_file)

    async def revoke(c, plan_) -> bool:  # noqa: ANN001
        outcome = await store.revoke(c.serial, REASON, "reconcile:cli",
                                     details=revocation_details(c, plan_, confirmed=True))
        return outcome is not None and outcome.changed

    try:
        result = await run_pass(mdm, store, client, revoke, apply=args.confirm, confirmed=True)
    finally:
        await client.close()
        await store.close()
    if args.json:
        print(json.dumps(_plan_json(result), indent=2))
    else:
        _print(result, confirm=args.confirm)
    if result.plan is None or result.failed:
        if not args.json:
            print(f"certgate: reconcile: {result.error}; nothing revoked"
                  if result.plan is None else f"certgate: reconcile: {result.error}",
                  file=sys.stderr)
        return 1
    return 0


def _print(result, *, confirm: bool) -> None:  # noqa: ANN001
    p = result.plan
    if p is None:
        return
    print(f"MDM lists {p.enrolled} device(s); brake at more than {p.max_fraction:.1%} of a group")
    for g in p.groups:
        brake = " BRAKE" if g.braked else ""
        print(f"group {g.group}: {g.considered} certificate(s) with a device id, "
              f"{len(g.revoke)} without a device in the MDM ({g.fraction:.1%}){brake}")
        for c in g.revoke:
            print(f"  {format(c.serial, 'x'):<34} device_id={c.device_id} {c.subject}"
                  + (" (on hold)" if c.held else ""))
    planned = len(p.revocations)
    if not confirm:
        verb = "would revoke" if planned else "nothing to revoke"
        print(f"dry run: {verb}{f' {planned} certificate(s)' if planned else ''}; "
              + ("`certgate reconcile --confirm` applies it" if planned else "nothing changed")
              + (" (the brake holds: `certgate serve` revokes nothing until then)"
                 if p.braked else ""))
        return
    print(f"revoked {len(result.revoked)} certificate(s) ({planned - len(result.revoked)} "
          "already revoked)" if not result.failed else
          f"revoked {len(result.revoked)}, {len(result.failed)} not revoked (store error)")
