"""Builds the audit stream from [audit] and connects it to the store (composition root).

Store-backed decisions (issuance, renewal, revocation, holds, challenges created and
consumed, pending requests, admin authentication failures) reach the stream through
``Store.on_audit`` after their transaction commits, via ``events.from_record``: the
same function `certgate audit export` uses, so live and exported events are identical.
Events that are not rows of the store (RADIUS results, refused challenges, config
loaded) are emitted by their shells through ``Audit.emit``.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from certgate.audit import events
from certgate.audit.emitter import Audit, counter_for
from certgate.audit.file_sink import CLOSE_DEADLINE_SECONDS, FileSink
from certgate.settings import Settings
from store import Store, StoreUnavailable

log = logging.getLogger("certgate.audit")

#: The store action under which RADIUS results are kept with store_authentications.
AUTH_ACTION = "radius-authentication"
#: Store actions whose event is streamed when the decision is made, not after the write.
LIVE_ACTIONS = (AUTH_ACTION, "admin-authentication")


class StoreSink:
    """[audit] store_authentications: RADIUS results also written to the audit table, from
    a bounded queue by a background task (the RADIUS path never waits for the store)."""

    def __init__(self, store: Store, *, queue_size: int) -> None:
        self.store = store
        self.queue_size = queue_size
        self._queue: collections.deque[Mapping[str, Any]] = collections.deque()
        self._report = counter_for("store")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def emit(self, event: Mapping[str, Any]) -> None:
        if event.get("event", {}).get("action") != AUTH_ACTION:
            return  # the other events are rows of the store already
        if len(self._queue) >= self.queue_size:
            self._report("dropped")
            return
        self._queue.append(event)
        self._wake.set()

    def reopen(self) -> None:
        pass

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-store")

    async def _run(self) -> None:
        while not (self._closing and not self._queue):
            await self._wake.wait()
            self._wake.clear()
            await self.drain()

    async def drain(self) -> None:
        while self._queue:
            ev = self._queue.popleft()
            try:
                await self.store.audit("radius", AUTH_ACTION,
                                       group=ev.get("certgate", {}).get("group"),
                                       details={"event": ev})
            except Exception:  # noqa: BLE001 - StoreUnavailable or worse: counted, never fatal
                self._report("error")
                continue
            self._report("written")

    async def aclose(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(asyncio.shield(self._task), CLOSE_DEADLINE_SECONDS)
        except TimeoutError:
            self._task.cancel()
            log.warning("audit store sink: %d event(s) not written at shutdown", len(self._queue))


def build_sinks(settings: Settings, store: Store | None) -> list[Any]:
    a = settings.audit
    sinks: list[Any] = []
    if a.file is not None:
        sinks.append(FileSink(a.file, queue_size=a.queue_size, on_result=counter_for("file")))
    if a.syslog is not None:
        try:
            from certgate.audit.syslog import SyslogSink  # the syslog transport's own module
        except ImportError as exc:
            from certgate.errors import OperatorError

            raise OperatorError(f"[audit] syslog: this certgate has no syslog transport "
                                f"({exc}); remove [audit] syslog or use [audit] file",
                                exit_code=2) from None

        sinks.append(SyslogSink(a.syslog, ca_file=str(a.syslog_ca) if a.syslog_ca else None,
                                facility=a.syslog_facility, sd_id=a.syslog_sd_id, queue_size=a.queue_size,
                                hostname=settings.server.node_name,
                                on_drop=counter_for("syslog")))
    if a.store_authentications and store is not None:
        sinks.append(StoreSink(store, queue_size=a.queue_size))
    return sinks


def build_audit(settings: Settings, store: Store) -> Audit:
    """The process's Audit, listening to the store's committed audit rows."""
    store.audit_context = {}  # the server acts for its callers: they are named in the actor
    audit = Audit(build_sinks(settings, store), node=settings.server.node_name)
    if audit.enabled:
        node = audit.node

        def on_row(row: dict[str, Any]) -> None:
            if row["action"] not in LIVE_ACTIONS:  # those were streamed live already
                audit.emit_all(events.from_record(row, node))

        store.on_audit = on_row
    return audit


def config_loaded(settings: Settings, now: Any) -> dict[str, Any]:
    try:
        digest = hashlib.sha256(settings.path.read_bytes()).hexdigest()
    except OSError:
        digest = "unreadable"
    return events.config_loaded(now=now, path=str(settings.path), sha256=digest,
                                groups=[g.name for g in settings.groups],
                                node=settings.server.node_name)


# -- hooks the shells call -----------------------------------------------------------------


def radius_observer(audit: Audit):  # noqa: ANN201 - radius.results.OnResult | None
    """RadiusServer's on_result: one authentication event per result (None: no sink)."""
    if not audit.enabled:
        return None
    import datetime as dt

    node = audit.node

    def observe(r: Any) -> None:
        audit.emit(events.authentication(
            now=dt.datetime.fromtimestamp(r.at, dt.UTC), accepted=r.accepted, reason=r.reason,
            client=r.client, group=r.group, tls_version=r.tls_version,
            calling_station=r.calling_station, identity=r.identity or r.outer_identity,
            serial=r.serial, resumed=r.resumed, round_trips=r.round_trips,
            duration_ms=r.duration_ms, detail=r.detail, node=node, transport=r.transport))

    return observe


#: Admin authentication failures persisted concurrently at most; past it (a flood of bad
#: tokens) they are still streamed and counted, not written to the store.
MAX_PENDING_ADMIN_WRITES = 8


class AdminDenied:
    """AdminApi's hook for a refused bearer token: streamed now, persisted in the background
    (the store row is skipped by on_row: the live event has gone out already)."""

    def __init__(self, audit: Audit, store: Store) -> None:
        self.audit, self.store = audit, store
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, source_ip: str | None, path: str, reason: str) -> None:
        import datetime as dt

        now = dt.datetime.now(dt.UTC)
        self.audit.emit(events.admin_auth_failure(now=now, reason=reason, source_ip=source_ip,
                                                  path=path, node=self.audit.node))
        if len(self._pending) >= MAX_PENDING_ADMIN_WRITES:
            return
        task = asyncio.get_running_loop().create_task(self._persist(now, source_ip, path, reason))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _persist(self, now: Any, source_ip: str | None, path: str, reason: str) -> None:
        try:
            await self.store.audit("api:unauthenticated", "admin-authentication", now=now,
                                   details={"reason": reason, "source_ip": source_ip,
                                            "path": path})
        except StoreUnavailable as exc:
            log.warning("admin authentication failure not persisted: %s", exc.detail)


def scep_refused(runtime: Any, group: str, reason: str | None, source_ip: str | None) -> None:
    """A SCEP request answered FAILURE: challenge-refused when the challenge was the cause,
    enrollment-refused otherwise (renewal refused, key policy...)."""
    audit = runtime.services.get("audit")
    if audit is None or not audit.enabled:
        return
    import datetime as dt

    from enrollment.challenges import ChallengeReason
    from enrollment.issuance_check import CHECKER_REASONS

    if reason in CHECKER_REASONS:
        return  # certgate/issuance_check.py emitted issuance-check-refused, with the details
    challenge = reason in {r.value for r in ChallengeReason} or reason == "missing_challenge"
    ev = events.challenge_refused(now=dt.datetime.now(dt.UTC), group=group,
                                  reason=reason or "unknown", detail="", transaction_id=None,
                                  source_ip=source_ip, node=audit.node)
    if not challenge:
        ev["event"]["action"] = "enrollment-refused"
    audit.emit(ev)


def attach_direct(settings: Settings, store: Store) -> None:
    """CLI processes (certs issue, revoke, challenge create, requests approve...): their
    audit rows appended to [audit] file as they commit, synchronously (a short-lived
    process has no writer task; O_APPEND keeps lines whole next to the server's writes),
    and sent to [audit] syslog by a sink started on the first row and flushed when the
    store closes (bounded by the sink's close deadline). `certgate serve` replaces this
    listener with its own (build_audit)."""
    import getpass

    try:
        store.audit_context = {"os_user": getpass.getuser()}
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        store.audit_context = {"os_user": f"uid:{os.getuid()}"}
    a = settings.audit
    if a.file is None and a.syslog is None:
        return
    file_sink = FileSink(a.file, queue_size=a.queue_size) if a.file is not None else None
    syslog = _cli_syslog(settings, store)
    node = settings.server.node_name

    def on_row(row: dict[str, Any]) -> None:
        if row["action"] in LIVE_ACTIONS:
            return
        for ev in events.from_record(row, node):
            if file_sink is not None:
                file_sink.emit(ev)
            if syslog is not None:
                syslog(ev)
        if file_sink is not None:
            file_sink.drain()

    store.on_audit = on_row


def _cli_syslog(settings: Settings, store: Store):  # noqa: ANN202 - Callable[[event], None] | None
    """[audit] syslog for a CLI process: emit(event), the sink started on first use (store
    rows are written inside the process's event loop) and flushed in store.close()."""
    a = settings.audit
    if a.syslog is None:
        return None
    from certgate.audit.syslog import SyslogSink

    sink = SyslogSink(a.syslog, ca_file=str(a.syslog_ca) if a.syslog_ca else None,
                      facility=a.syslog_facility, sd_id=a.syslog_sd_id, queue_size=a.queue_size,
                      hostname=settings.server.node_name)
    started: list[asyncio.Task] = []

    def emit(event: Mapping[str, Any]) -> None:
        if not started:
            started.append(asyncio.get_running_loop().create_task(sink.start()))
            store.before_close.append(flush)
        sink.emit(event)

    async def flush() -> None:
        await started[0]
        await sink.aclose()

    return emit
