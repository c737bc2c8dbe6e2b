"""Builds the RADIUS authentication and accounting servers from settings + runtime."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from cryptography import x509

from certgate.errors import OperatorError
from certgate.runtime import Runtime
from certgate.sessions import SessionTracker
from radius.accounting import AccountingServer
from radius.authorize import Decision, Deny, authorize
from radius.options import EapOptions, RadiusClient
from radius.reasons import Reason
from radius.server import RadiusServer
from radius.tls_context import TlsConfigError, build_server_context

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
                     c.coa_port)
        for c in runtime.settings.radius.clients
    ]


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

    groups, revoked = runtime.groups, runtime.revoked
    feed = runtime.services["feed"]
    issued = None
    if settings.require_inventory:
        issued = feed.is_issued
    else:
        log.warning("[radius] require_inventory = false: any certificate that verifies to a "
                    "group CA is accepted, including ones certgate never issued")

    def decide(leaf: x509.Certificate, chain: Sequence[x509.Certificate] | None, resumed: bool,
               now: dt.datetime) -> Decision:
        if feed.closed():
            return Deny(Reason.STORE_UNAVAILABLE, "store unreachable past [storage] outage_grace")
        return authorize(leaf, chain, resumed, groups, revoked, now, issued)

    clients = radius_clients(runtime)
    server = RadiusServer(clients, options, context, decide)
    try:
        await server.start(settings.listen.host, settings.listen.port)
    except OSError as exc:
        raise OperatorError(f"cannot bind RADIUS on {settings.listen} ([radius] listen): "
                            f"{exc.strerror}") from None
    runtime.services["radius"] = server

    tracker = SessionTracker(runtime)
    runtime.services["sessions"] = tracker
    runtime.services["revocations"].disconnect_hooks.append(tracker.disconnect_revoked)
    if settings.acct_listen is not None:
        acct = AccountingServer(server.clients.match, tracker.record)
        try:
            await acct.start(settings.acct_listen.host, settings.acct_listen.port)
        except OSError as exc:
            await server.stop()
            raise OperatorError(f"cannot bind RADIUS accounting on {settings.acct_listen} "
                                f"([radius] acct_listen): {exc.strerror}") from None
        runtime.services["accounting"] = acct


async def stop_radius(runtime: Runtime) -> None:
    for name in ("accounting", "radius"):
        service = runtime.services.pop(name, None)
        if service is not None:
            await service.stop()
