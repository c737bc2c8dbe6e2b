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
from certgate.errors import OperatorError
from certgate.logs import setup_logging
from certgate.runtime import Runtime
from certgate.settings import Settings
from certgate.web import build_app
from pki.hierarchy import Hierarchy
from revocation.snapshot import RevocationIndex
from revocation.store import Store
from revocation.watcher import RevocationWatcher

log = logging.getLogger("certgate")

METRICS_REFRESH_SECONDS = 15.0


async def refresh_store_gauges(runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC)
    try:
        counts = await runtime.store.status_counts()
        expiring = {w: await runtime.store.expiring_counts(now, d)
                    for w, d in metrics.EXPIRY_WINDOWS.items()}
    except Exception:
        metrics.STORE_UP.set(0)
        log.exception("store query for metrics failed")
        return
    metrics.STORE_UP.set(1)
    for g in runtime.groups.names():
        for status in ("active", "revoked"):
            metrics.CERTIFICATES.labels(group=g, status=status).set(counts.get((g, status), 0))
        for w in metrics.EXPIRY_WINDOWS:
            metrics.EXPIRING.labels(group=g, within=w).set(expiring[w].get(g, 0))


def set_pki_gauges(runtime: Runtime) -> None:
    metrics.CA_EXPIRY.labels(ca="root").set(runtime.pki.root.not_valid_after_utc.timestamp())
    for name, group in runtime.pki.groups.items():
        metrics.CA_EXPIRY.labels(ca=name).set(group.certificate.not_valid_after_utc.timestamp())
    metrics.SERVER_CERT_EXPIRY.labels(ca="radius").set(
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
    store = await Store.open(settings.storage.path)
    index = RevocationIndex()
    runtime = Runtime(settings=settings, store=store, pki=pki, groups=groups, revoked=index)
    return runtime


async def serve(settings: Settings) -> int:
    setup_logging(settings.server.log_format, settings.server.log_level)
    metrics.set_build_info()
    runtime = await build_runtime(settings)
    watcher = RevocationWatcher(settings.storage.path, runtime.revoked)
    count = watcher.load_all()
    log.info("revocation index loaded: %d revoked certificate(s)", count)
    set_pki_gauges(runtime)
    set_revocation_gauges(runtime)
    await refresh_store_gauges(runtime)

    app = build_app(runtime, settings.http.max_body_bytes)
    from certgate import features

    await features.mount(runtime, app)

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.http.listen.host, settings.http.listen.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        await runtime.store.close()
        raise OperatorError(f"cannot listen on {settings.http.listen} ([http] listen): "
                            f"{exc.strerror}") from None
    log.info("http listening on %s (public_url %s)", settings.http.listen,
             settings.http.public_url)

    def poll_revocations() -> None:
        changes = watcher.poll()
        if changes:
            set_revocation_gauges(runtime)
            for hook in runtime.services.get("on_revocation_change", []):
                hook(changes)

    tasks = [
        asyncio.create_task(_periodic(settings.radius.revocation_poll_interval,
                                      poll_revocations, "revocation-watch")),
        asyncio.create_task(_periodic(METRICS_REFRESH_SECONDS,
                                      lambda: refresh_store_gauges(runtime), "store-gauges")),
    ]
    for interval, fn, name in runtime.services.get("periodic", []):
        tasks.append(asyncio.create_task(_periodic(interval, fn, name)))
    try:
        await features.start(runtime)
    except OperatorError:
        for t in tasks:
            t.cancel()
        await runner.cleanup()
        await runtime.store.close()
        raise

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Everything loaded so far (PKI, a revocation index of maybe a million entries) lives as
    # long as the process: keep it out of the cyclic GC's scans, which would pause RADIUS.
    gc.freeze()
    runtime.ready = True
    log.info("certgate ready: groups %s", ", ".join(runtime.groups.names()))
    await stop.wait()

    log.info("shutting down")
    runtime.ready = False
    await features.stop(runtime)
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
    await runner.cleanup()
    watcher.close()
    await runtime.store.close()
    log.info("stopped")
    return 0
