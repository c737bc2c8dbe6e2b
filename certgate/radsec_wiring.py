"""Builds the RadSec listener ([radsec]) from settings + runtime, next to the UDP one.

The TLS server is certgate's RADIUS server certificate (``[pki] server_name``, issued by the
root), so a NAS that already trusts certgate's root for EAP-TLS server validation trusts it
here too. The NAS side is verified against ``[radsec] client_ca``; when that bundle holds
certgate's own root, the group intermediates are added to the store as well, so a NAS
sending only its leaf (issued by ``certs issue --profile nas``) still verifies.
"""

from __future__ import annotations

import logging
import os
import secrets
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, Encoding, PrivateFormat

from certgate.errors import OperatorError
from certgate.runtime import Runtime
from certgate.settings.radsec import RadsecSettings, client_ca_problem
from certgate.settings.reader import read_referenced_file
from radius.accounting import SessionSink
from radius.options import RadiusClient
from radius.radsec import RadsecOptions, RadsecServer
from radius.radsec_peer import PeerVerdict, check_peer, nas_verdict
from radius.server import RadiusServer
from store import StoreUnavailable

log = logging.getLogger("certgate.radius")

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def client_ca_pem(runtime: Runtime, settings: RadsecSettings) -> str:
    """The verification store's PEM: the client_ca bundle, plus the group intermediates
    when certgate's root is in it (chain building for NASes that send only their leaf)."""
    problem = client_ca_problem(settings.client_ca)
    if problem:
        raise OperatorError(f"[radsec] client_ca: {problem}", exit_code=2)
    data = read_referenced_file(settings.client_ca)
    anchors = x509.load_pem_x509_certificates(data)
    root_der = runtime.pki.root.public_bytes(Encoding.DER)
    pem = "".join(c.public_bytes(Encoding.PEM).decode() for c in anchors)
    if any(c.public_bytes(Encoding.DER) == root_der for c in anchors):
        pem += "".join(g.intermediate.public_bytes(Encoding.PEM).decode() for g in runtime.groups)
    return pem


def build_radsec_context(runtime: Runtime, settings: RadsecSettings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[settings.tls_min_version]
    ctx.maximum_version = _VERSIONS[settings.tls_max_version]
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.load_verify_locations(cadata=client_ca_pem(runtime, settings))
    _load_server_identity(ctx, runtime)
    return ctx


def _load_server_identity(ctx: ssl.SSLContext, runtime: Runtime) -> None:
    """The ssl module loads keys from files only: the RADIUS server certificate, its chain
    and its key (encrypted with a one-time password) go through a private temporary file
    that is removed at once."""
    pki = runtime.pki
    password = secrets.token_bytes(32)
    key_pem = pki.server_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                           BestAvailableEncryption(password))
    chain = b"".join(c.public_bytes(Encoding.PEM)
                     for c in (pki.server_certificate, *pki.server_chain))
    with tempfile.TemporaryDirectory(prefix="certgate-radsec-") as tmp:
        path = Path(tmp) / "server.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(chain + key_pem)
        ctx.load_cert_chain(path, password=password)


async def start_radsec(runtime: Runtime, server: RadiusServer, clients: list[RadiusClient],
                       accounting: SessionSink) -> None:
    settings = runtime.settings.radsec
    if settings is None:
        return
    try:
        context = build_radsec_context(runtime, settings)
    except ssl.SSLError as exc:
        raise OperatorError(f"[radsec] TLS settings: {exc.reason or exc}", exit_code=2) from None
    feed = runtime.services["feed"]
    require_inventory = runtime.settings.radius.require_inventory

    async def peer_check(der: bytes | None, client: RadiusClient) -> PeerVerdict:
        verdict = check_peer(der, client, runtime.groups, runtime.revoked, feed.is_issued)
        if verdict.refusal is not None or verdict.group is None or not require_inventory:
            return verdict
        assert verdict.serial is not None
        try:  # once per connection, not per packet: the store is asked
            record = await runtime.store.get(verdict.serial)
        except StoreUnavailable as exc:  # an outage must not cut every NAS off: the
            # revocation index (in memory) has already been consulted
            log.warning("RadSec: cannot look up NAS certificate serial %x (%s); admitted on "
                        "the in-memory revocation index", verdict.serial, exc.detail)
            return verdict
        return nas_verdict(verdict, record.profile if record else None,
                           record.group if record else None)

    options = RadsecOptions(
        handshake_timeout=settings.handshake_timeout,
        idle_timeout=settings.idle_timeout,
        write_timeout=settings.write_timeout,
        max_connections=settings.max_connections,
        max_connections_per_address=settings.max_connections_per_address,
        max_in_flight=settings.max_in_flight,
    )
    radsec = RadsecServer(clients, server, lambda: context, peer_check, accounting, options)
    if not len(radsec.clients):
        log.warning("[radsec] listen is set but no [[radius.clients]] entry serves RadSec "
                    "(transports): every connection will be refused")
    try:
        await radsec.start(settings.listen.host, settings.listen.port)
    except OSError as exc:
        raise OperatorError(f"cannot listen for RadSec on {settings.listen} ([radsec] listen): "
                            f"{exc.strerror}") from None
    runtime.services["radsec"] = radsec
    # A revocation (or hold) of a NAS certificate ends its open connections too.
    runtime.services.setdefault("on_revocation_change", []).append(
        lambda _changes: radsec.close_revoked(runtime.revoked.is_revoked))
