"""Feature wiring (RADIUS, SCEP, revocation endpoints, admin API) mounted onto the runtime."""

from __future__ import annotations

from aiohttp import web

from certgate.runtime import Runtime


async def mount(runtime: Runtime, app: web.Application) -> None:
    """Add HTTP routes of each feature."""


async def start(runtime: Runtime) -> None:
    """Start listeners that are not HTTP (RADIUS)."""


async def stop(runtime: Runtime) -> None:
    """Stop them, in reverse order."""
