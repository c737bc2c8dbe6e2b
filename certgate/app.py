"""Composition root: settings -> store -> PKI -> revocation index -> HTTP + RADIUS -> signals."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import signal

from aiohttp import web

from certgate import metrics
from certgate.audit.emitter import Audit
from certgate.audit.wiring import AdminDenied, build_audit
from certgate.audit.wiring import config_loaded as audit_config_loaded
from certgate.change_feed import ChangeFeed
from certgate.errors import OPERATOR_ERRORS, OperatorError
from certgate.http_guard import AcceptFailures, GuardedSite
from certgate.logs import setup_logging
from certgate.runtime import Runtime
from certgate.settings import Settings
from certgate.storage import open_configured
from certgate.web import build_app
from certgate.worker import DRAIN_SECONDS, WorkerContext, worker_index
from pki.hierarchy import Hierarchy
from revocation.snapshot import RevocationIndex
from store import Store, StoreUnavailable

log = logging.getLogger("certgate")

METRICS_REFRESH_SECONDS = 15.0


async def refresh_store_gauges(runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC)
    try:
        counts = await runtime.store.status_counts()
        expiring = {w: await runtime.store.expiring_counts(now, d)
                    for w, d in metrics.EXPIRY_WINDOWS.items()}
    except StoreUnavailable as exc:
        log.warning("store query for metrics failed: %s", exc.detail)
        return
    for g in runtime.groups.names():
        for status in ("active", "revoked"):
            metrics.CERTIFICATES.labels(group=g, status=status).set(counts.get((g, status), 0))
        for w in metrics.EXPIRY_WINDOWS:
            metrics.EXPIRING.labels(group=g, within=w).set(expiring[w].get(g, 0))


def set_pki_gauges(runtime: Runtime) -> None:
    metrics.CA_EXPIRY.labels(ca="root").set(runtime.pki.root.not_valid_after_utc.timestamp())
    for name, group in runtime.pki.groups.items():
        metrics.CA_EXPIRY.labels(ca=name).set(group.certificate.not_valid_after_utc.timestamp())
    metrics.SERVER_CERT_EXPIRY.set(
        runtime.pki.server_certificate.not_valid_after_utc.timestamp()
    )


def set_revocation_gauges(runtime: Runtime) -> None:
    for g in runtime.groups.names():
        metrics.REVOCATION_ENTRIES.labels(group=g).set(runtime.revoked.count_for(g))
    metrics.REVOCATION_LAST_UPDATE.set(dt.datetime.now(dt.UTC).timestamp())


async def _periodic(interval: float, fn, name: str) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            result = fn()
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("periodic task %s failed", name)


async def build_runtime(settings: Settings) -> Runtime:
    pki = Hierarchy(settings.pki).load(settings.groups)
    groups = pki.group_table(settings.groups)
    store = await open_configured(settings)
    index = RevocationIndex()
    runtime = Runtime(settings=settings, store=store, pki=pki, groups=groups, revoked=index)
    return runtime


def watch_store_health(store: Store, node: str) -> None:
    metrics.STORE_BACKEND.labels(backend=store.backend, node=node).set(1)
    for op in ("feed", "record_certificate", "revoke", "get", "find"):
        metrics.STORE_ERRORS.labels(op=op)  # exported at 0 from the start
    metrics.STORE_UP.set(1)
    store.health.on_error = lambda op: (metrics.STORE_ERRORS.labels(op=op).inc(),
                                        metrics.STORE_UP.set(0))
    store.health.on_ok = lambda: metrics.STORE_UP.set(1)


def build_feed(runtime: Runtime) -> ChangeFeed:
    st = runtime.settings.storage
    feed = ChangeFeed(runtime.store, runtime.revoked, runtime.issued,
                      outage_grace=st.outage_grace,
                      outage_mode=st.outage_mode)
    feed.on_health = lambda up: metrics.STORE_UP.set(1 if up else 0)
    runtime.services["feed"] = feed
    return feed


async def start_audit(runtime: Runtime) -> Audit:
    """[audit] sinks started and listening to the store; the config-loaded event emitted."""
    settings = runtime.settings
    try:
        audit = build_audit(settings, runtime.store)  # a bad syslog_ca, no transport module
    except BaseException:
        await runtime.store.close()  # else its worker thread keeps the process alive
        raise
    try:
        await audit.start()
    except OSError as exc:
        await runtime.store.close()
        raise OperatorError(f"cannot open the audit file {settings.audit.file} ([audit] file): "
                            f"{exc.strerror}; fix the path or its directory's permissions",
                            exit_code=2) from None
    runtime.services["audit"] = audit
    if audit.enabled:
        runtime.services["admin_denied"] = AdminDenied(audit, runtime.store)
    audit.emit(audit_config_loaded(settings, dt.datetime.now(dt.UTC)))
    return audit


def on_sighup(runtime: Runtime) -> None:
    """SIGHUP: reopen the audit file (logrotate), reload what the config may change live
    (groups' RADIUS reply attributes, certgate.reload), then any other reopen hooks."""
    log.info("SIGHUP: reopening the audit and log destinations, reloading the config")
    audit = runtime.services.get("audit")
    if audit is not None:
        audit.reopen()
    from certgate.reload import on_reload

    try:
        on_reload(runtime)
    except Exception:
        log.exception("config reload failed; the running settings stay")
    for hook in runtime.services.get("on_sighup", []):
        hook()


async def serve(settings: Settings) -> int:
    setup_logging(settings.server.log_format, settings.server.log_level, worker_index())
    for warning in settings.warnings:  # risky or deprecated settings that still work
        log.warning("config %s: %s", settings.path, warning)
    metrics.set_build_info()
    runtime = await build_runtime(settings)
    worker = WorkerContext.from_env()  # [server] workers > 1: started by certgate/workers.py
    runtime.services["worker"] = worker
    stop = asyncio.Event()
    runtime.services["stop"] = stop
    watch_store_health(runtime.store, runtime.node_name)
    audit = await start_audit(runtime)
    feed = build_feed(runtime)
    try:
        await feed.load()
    except StoreUnavailable as exc:
        await runtime.store.close()
        raise OperatorError(f"cannot load the inventory from the store "
                            f"{runtime.store.description}: {exc.detail}") from None
    log.info("node %s on %s store %s: %d revoked, %d other unexpired device certificate(s), "
             "change %d",
             runtime.node_name, runtime.store.backend, runtime.store.description,
             len(runtime.revoked), len(runtime.issued), feed.position)
    set_pki_gauges(runtime)
    set_revocation_gauges(runtime)
    await refresh_store_gauges(runtime)

    app = build_app(runtime, settings.http.max_body_bytes)
    from certgate import features

    await features.mount(runtime, app)

    http = settings.http
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           keepalive_timeout=http.idle_timeout)
    await runner.setup()
    site = GuardedSite(runner, http.listen.host, http.listen.port,
                       max_connections=http.max_connections,
                       max_per_client=http.max_connections_per_client,
                       sock=worker.http if worker is not None else None)

    async def start_http() -> None:
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            await runtime.store.close()
            raise OperatorError(f"cannot listen on {settings.http.listen} ([http] listen): "
                                f"{exc.strerror}") from None
        asyncio.get_running_loop().set_exception_handler(
            AcceptFailures(lambda: [site.guard] if site.guard is not None else []))
        log.info("http listening on %s (public_url %s)", settings.http.listen,
                 settings.http.public_url)

    if worker is None:
        await start_http()
    # else: a worker accepts on the shared socket only once ready (below), so a worker that
    # is (re)starting never answers /readyz 503 or a request while the others are serving

    def on_changes(changes: list) -> None:
        set_revocation_gauges(runtime)
        metrics.STORE_FEED_POSITION.set(feed.position)
        for hook in runtime.services.get("on_revocation_change", []):
            hook(changes)

    feed.hooks.append(on_changes)
    from certgate import telemetry

    telemetry.install(runtime, feed)  # known series at 0; inventory gauges follow the feed
    tasks = [
        asyncio.create_task(feed.run(), name="change-feed"),
        asyncio.create_task(_periodic(METRICS_REFRESH_SECONDS,
                                      lambda: refresh_store_gauges(runtime), "store-gauges")),
    ]
    for interval, fn, name in runtime.services.get("periodic", []):
        tasks.append(asyncio.create_task(_periodic(interval, fn, name)))
    try:
        await features.start(runtime)
    except OPERATOR_ERRORS:
        for t in tasks:
            t.cancel()
        await runner.cleanup()
        await runtime.store.close()
        raise

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: on_sighup(runtime))
    # Everything loaded so far (PKI, a revocation index of maybe a million entries) lives as
    # long as the process: keep it out of the cyclic GC's scans, which would pause RADIUS.
    gc.freeze()
    if worker is not None:
        await start_http()
    runtime.ready = True
    log.info("certgate ready: groups %s", ", ".join(runtime.groups.names()))
    if worker is not None:
        worker.ready()
    await stop.wait()

    log.info("shutting down")
    runtime.ready = False
    radius = runtime.services.get("radius")
    if worker is not None and radius is not None:  # the supervisor routes no new ones now
        log.info("worker %d: draining %d conversation(s) in progress", worker.index,
                 len(radius.conversations))
        left = await radius.drain(DRAIN_SECONDS)
        log.info("worker %d drained: %d conversation(s) left", worker.index, left)
    await features.stop(runtime)
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
    await runner.cleanup()
    await audit.aclose()
    await runtime.store.close()
    log.info("stopped")
    return 0
