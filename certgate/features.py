"""Feature wiring (RADIUS, SCEP, revocation endpoints, admin API) mounted onto the runtime."""

from __future__ import annotations

import logging

from aiohttp import web

from certgate.admin import AdminApi
from certgate.radius_wiring import start_radius, stop_radius
from certgate.revocation_http import RevocationHttp
from certgate.revocations import CrlPublisher, RevocationService
from certgate.runtime import Runtime

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


async def start(runtime: Runtime) -> None:
    """Start what is not HTTP (RADIUS) and publish the first CRLs."""
    await runtime.services["crls"].refresh_due()
    await start_radius(runtime)


async def stop(runtime: Runtime) -> None:
    """Stop in reverse order."""
    await stop_radius(runtime)
