"""Builds the RADIUS authentication and accounting servers from settings + runtime."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from certgate.audit.wiring import radius_observer
from certgate.errors import OperatorError
from certgate.radsec_wiring import start_radsec
from certgate.runtime import Runtime
from certgate.sessions import SessionTracker
from radius.accounting import AccountingServer
from radius.eap_tls import AuthorizeFn
from radius.options import EapOptions, RadiusClient
from radius.server import RadiusServer
from radius.tls_context import TlsConfigError, build_server_context
from radius.verdict import policy

log = logging.getLogger("certgate.radius")


def eap_options(runtime: Runtime) -> EapOptions:
    r = runtime.settings.radius
    return EapOptions(
        fragment_size=r.fragment_size,
        conversation_timeout=r.conversation_timeout,
        conversation_lifetime=r.conversation_lifetime,
        max_conversations=r.max_conversations,
        max_conversations_per_station=r.max_conversations_per_station,
        max_conversations_per_client=r.max_conversations_per_client,
        max_buffered_bytes=r.max_buffered_bytes,
        tls_min_version=r.tls_min_version,
        tls_max_version=r.tls_max_version,
        tls_groups=r.tls_groups,
        resumption=r.resumption,
    )


def radius_clients(runtime: Runtime) -> list[RadiusClient]:
    return [
        RadiusClient(c.name, c.address, c.secret.encode(), c.require_message_authenticator,
                     c.coa_port, c.transports, c.radsec_name)
        for c in runtime.settings.radius.clients
    ]


def radius_policy(runtime: Runtime) -> AuthorizeFn:
    """The decision RADIUS runs after chain verification: this node's revocation index and
    inventory (fed by the store), failing closed past the outage grace. `certgate explain`
    behind the admin API runs this same callable."""
    feed = runtime.services["feed"]
    issued = feed.is_issued if runtime.settings.radius.require_inventory else None
    return policy(runtime.groups, runtime.revoked, issued, feed.closed)


async def start_radius(runtime: Runtime) -> None:
    settings = runtime.settings.radius
    options = eap_options(runtime)
    try:
        context = build_server_context(
            certificate=runtime.pki.server_certificate,
            private_key=runtime.pki.server_key,
            chain=list(runtime.pki.server_chain),
            root=runtime.pki.root,
            intermediates=[g.intermediate for g in runtime.groups],
            options=options,
        )
    except TlsConfigError as exc:
        raise OperatorError(f"[radius] TLS settings: {exc}", exit_code=2) from None

    if not settings.require_inventory:
        log.warning("[radius] require_inventory = false: any certificate that verifies to a "
                    "group CA is accepted, including ones certgate never issued")
    decide = radius_policy(runtime)

    clients = radius_clients(runtime)
    audit = runtime.services.get("audit")
    udp_clients = [c for c in clients if "udp" in c.transports]
    worker = runtime.services.get("worker")  # certgate.worker.WorkerContext or None
    server = RadiusServer(udp_clients, options, context, decide,
                          on_result=radius_observer(audit) if audit is not None else None,
                          state_tag=worker.index if worker is not None else None)
    try:
        if worker is not None:
            await server.start_inherited(worker.auth)
        else:
            await server.start(settings.listen.host, settings.listen.port)
    except OSError as exc:
        raise OperatorError(f"cannot bind RADIUS on {settings.listen} ([radius] listen): "
                            f"{exc.strerror}") from None
    runtime.services["radius"] = server
    trim = _malloc_trim()
    if trim is not None:
        runtime.services["memory_trim"] = asyncio.get_running_loop().create_task(
            trim_after_floods(server, trim), name="memory-trim")

    tracker = SessionTracker(runtime)
    tracker.sends_coa = worker is None or worker.primary
    runtime.services["sessions"] = tracker
    revocations = runtime.services["revocations"]
    revocations.disconnect_hooks.append(tracker.disconnect_revoked)
    revocations.hold_hooks.append(tracker.quarantine_held)
    revocations.release_hooks.append(tracker.restore_released)
    acct = None
    if settings.acct_listen is not None:
        acct = AccountingServer(server.clients.match, tracker.record)
        try:
            if worker is not None and worker.acct is not None:
                acct.start_inherited(worker.acct)
            else:
                await acct.start(settings.acct_listen.host, settings.acct_listen.port)
        except OSError as exc:
            await server.stop()
            raise OperatorError(f"cannot bind RADIUS accounting on {settings.acct_listen} "
                                f"([radius] acct_listen): {exc.strerror}") from None
        runtime.services["accounting"] = acct
    if worker is not None:
        worker.attach(server, acct, on_lost=runtime.services["stop"].set)
        if not worker.primary:
            return  # RadSec: one listener, on worker 0
    try:
        await start_radsec(runtime, server, clients, tracker.record)
    except BaseException:
        await stop_radius(runtime)
        raise


#: How often the buffer budget's high-water mark is looked at, and how much of it must
#: have been given back before freed memory is handed to the OS.
TRIM_CHECK_SECONDS = 10.0
TRIM_AFTER_FREED_BYTES = 32 << 20


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None (another libc: nothing to do)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


async def trim_after_floods(server: RadiusServer, trim: Callable[[int], int]) -> None:
    """Hand the memory a flood's TLS buffers used back to the OS once they are released.

    glibc keeps freed heap pages: a 10,000-conversation flood took RSS from 62 to 120 MiB
    and it stayed at 118 MiB after every conversation had expired (a second flood reused
    it). malloc_trim(0) returns whole free pages (~20 ms for ~190 MiB freed, measured), in a
    worker thread so the event loop keeps answering.
    """
    budget = server.buffers
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(TRIM_CHECK_SECONDS)
        peak = budget.take_peak()
        if peak - budget.used >= TRIM_AFTER_FREED_BYTES:
            await loop.run_in_executor(None, trim, 0)
            log.info("returned freed memory to the OS: the EAP-TLS buffers fell from %d to %d MiB",
                     peak >> 20, budget.used >> 20)


async def stop_radius(runtime: Runtime) -> None:
    worker = runtime.services.get("worker")
    if worker is not None and "radius" in runtime.services:
        worker.detach()
    task = runtime.services.pop("memory_trim", None)
    if task is not None:
        task.cancel()
    for name in ("radsec", "accounting", "radius"):
        service = runtime.services.pop(name, None)
        if service is not None:
            await service.stop()
