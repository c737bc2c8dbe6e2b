"""Feature wiring (RADIUS, SCEP, revocation endpoints, admin API) mounted onto the runtime."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from certgate.admin import AdminApi
from certgate.radius_wiring import start_radius, stop_radius
from certgate.reconcile import Reconciler
from certgate.revocation_http import RevocationHttp
from certgate.revocations import CrlPublisher, RevocationService
from certgate.runtime import Runtime
from store import StoreUnavailable

log = logging.getLogger("certgate")


async def mount(runtime: Runtime, app: web.Application) -> None:
    """Build services and add their HTTP routes."""
    crls = CrlPublisher(runtime)
    revocations = RevocationService(runtime, crls)
    runtime.services["crls"] = crls
    runtime.services["revocations"] = revocations
    RevocationHttp(runtime, crls).routes(app)
    admin = AdminApi(runtime, revocations)
    admin.routes(app)
    from certgate.scep_http import ScepHttp  # SCEP endpoints + challenge API

    scep = ScepHttp(runtime, admin)
    scep.routes(app)
    runtime.services["scep"] = scep
    runtime.services.setdefault("periodic", []).extend(scep.periodic())
    runtime.services.setdefault("on_revocation_change", []).append(revocations.on_store_changes)
    runtime.services.setdefault("periodic", []).append((60.0, crls.refresh_due, "crl-refresh"))
    if runtime.settings.mdm.reconcile_url is not None:
        reconciler = Reconciler(runtime, revocations)
        runtime.services["reconciler"] = reconciler


async def start(runtime: Runtime) -> None:
    """Start RADIUS; publish the first CRLs in the background (a CRL of a million entries takes
    seconds to sign and must not hold up authentication; /crl waits for it if asked first)."""
    await start_radius(runtime)
    crls = runtime.services["crls"]

    async def publish_first_crls() -> None:
        try:
            await crls.refresh_due()
        except Exception:
            log.exception("initial CRL publication failed; retried by the periodic refresh")

    runtime.services["initial_crls"] = asyncio.get_running_loop().create_task(publish_first_crls())
    tracker = runtime.services.get("sessions")
    if tracker is not None:
        async def disconnect_missed() -> None:
            try:
                await tracker.disconnect_missed()
            except StoreUnavailable as exc:  # tried again at the next start
                log.warning("Disconnects missed while down not sent: store unavailable (%s)",
                            exc.detail)
            except Exception:
                log.exception("Disconnects missed while down were not sent")

        runtime.services["missed_disconnects"] = asyncio.get_running_loop().create_task(
            disconnect_missed())
    reconciler = runtime.services.get("reconciler")
    worker = runtime.services.get("worker")
    if reconciler is not None and (worker is None or worker.primary):
        reconciler.start()  # [mdm] reconcile_interval passes; workers > 1: on worker 0 only


async def stop(runtime: Runtime) -> None:
    """Stop in reverse order."""
    for name in ("initial_crls", "missed_disconnects"):
        task = runtime.services.pop(name, None)
        if task is not None and not task.done():
            task.cancel()
    await stop_radius(runtime)
    crls = runtime.services.get("crls")
    if crls is not None:
        await crls.close()  # background CRL workers
    scep = runtime.services.get("scep")
    if scep is not None:
        await scep.close()  # the SCEP crypto worker processes
    reconciler = runtime.services.get("reconciler")
    if reconciler is not None:
        await reconciler.close()
