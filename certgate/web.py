"""The aiohttp application: health, readiness, metrics; feature routes are mounted by app.py."""

from __future__ import annotations

import hmac
import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from certgate.http_guard import refused_connections, request_timeout
from certgate.runtime import Runtime
from store import StoreUnavailable

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)


async def read_at_most(request: web.Request, limit: int) -> bytes:
    """The request body up to `limit` bytes (all of it when shorter). One
    `request.content.read(n)` returns only what has arrived so far, so read until EOF."""
    body = bytearray()
    while len(body) < limit:
        chunk = await request.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if not runtime.ready:
        return web.Response(status=503, text="starting\n")
    feed = runtime.services.get("feed")
    if feed is not None and not feed.up:
        return web.Response(status=503, text=f"store unavailable: {_printable(feed.down_reason)}\n",
                            headers={"Retry-After": "5"})
    try:
        await runtime.store.ping()
    except StoreUnavailable as exc:  # the store is the one dependency that can go away
        return web.Response(status=503, text=f"store unavailable: {_printable(exc.detail)}\n",
                            headers={"Retry-After": "5"})
    return web.Response(text="ready\n")


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


async def metrics(request: web.Request) -> web.Response:
    token = request.app[RUNTIME].settings.http.metrics_token
    if token is not None:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(),
                                                                  token.encode()):
            return web.Response(status=401, text="bearer token required ([http] metrics_token)\n",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body = generate_latest(_registry())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _registry():  # type: ignore[no-untyped-def]
    """The default registry, or with `[server] workers` > 1 one view over every worker's
    files (prometheus-client multiprocess mode, set up by certgate/workers.py)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    if os.environ.get("CERTGATE_WORKER"):  # the parent is the supervisor
        registry.register(ProcessTreeCollector(os.getppid()))
    else:  # the variable set by hand around a single process: its own process_*
        from prometheus_client import ProcessCollector

        ProcessCollector(registry=registry)
    return registry


class ProcessTreeCollector:
    """`process_*` of the whole certgate with `[server] workers` > 1: the supervisor (this
    worker's parent) and every process under it (workers, their SCEP crypto processes).
    CPU seconds, memory and open fds are summed over the live processes (a restarted
    worker's CPU leaves the sum: a counter reset, which rate() takes); start time and the
    fd limit are the supervisor's."""

    _FIRST = ("process_start_time_seconds", "process_max_fds")

    def __init__(self, root: int) -> None:
        self.root = root

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += children.get(pid, [])
        return out

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.process_collector import ProcessCollector

        families: dict[str, object] = {}
        for pid in self._tree():
            for fam in ProcessCollector(pid=lambda p=pid: p, registry=None).collect():
                have = families.get(fam.name)
                if have is None:
                    families[fam.name] = fam
                elif fam.name not in self._FIRST and fam.samples and have.samples:  # type: ignore[attr-defined]
                    s = have.samples[0]  # type: ignore[attr-defined]
                    have.samples[0] = s._replace(value=s.value + fam.samples[0].value)  # type: ignore[attr-defined]
        return list(families.values())


STORE_RETRY_AFTER = "5"


@web.middleware
async def store_outage(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """A store outage that reaches HTTP is a 503 the client can retry, never a 500 page."""
    try:
        return await handler(request)
    except StoreUnavailable as exc:
        return web.json_response(
            {"error": f"the store is unavailable ({exc.op}); nothing changed, retry"},
            status=503, headers={"Retry-After": STORE_RETRY_AFTER})


def build_app(runtime: Runtime, max_body_bytes: int) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes, middlewares=[
        refused_connections, request_timeout(runtime.settings.http.request_timeout),
        store_outage])
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
