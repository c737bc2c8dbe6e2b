"""MDM reconciliation, the shell: fetch the MDM's device list, plan (revocation/reconcile.py),
revoke through the normal revocation path, count, log, brake.

`certgate serve` runs a pass every ``[mdm] reconcile_interval`` seconds (`Reconciler`), its
revocations through `RevocationService` (store + audit, index, CRL, Disconnect), actor
``reconcile``. `certgate reconcile` runs one pass from the CLI (`run_pass`): a dry run that
prints the plan, or with ``--confirm`` the revocations past the brake, written to the store
(actor ``reconcile:cli``) where the running servers pick them up from the change feed
(Disconnect, CRL) like any CLI revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from prometheus_client import Counter, Gauge

from certgate.mdm_client import MdmClient, read_bounded
from certgate.settings.mdm import MdmSettings
from revocation.reconcile import (
    REASON,
    Candidate,
    Collector,
    FetchFailed,
    Plan,
    parse_page,
    plan,
)
from store import Store, StoreUnavailable
from store.records import ACTIVE, REVOKED, CertRecord

log = logging.getLogger("certgate.reconcile")

RUNS = Counter("certgate_mdm_reconcile_runs_total", "MDM reconciliation passes by result "
               "(ok, braked, fetch_failed, store_error)", ["result"])
RUN_RESULTS = ("ok", "braked", "fetch_failed", "store_error")
BRAKE = Gauge("certgate_mdm_reconcile_brake_engaged", "1 while the last reconciliation pass "
              "was held by the brake for this group ([mdm] max_revoke_fraction)", ["group"],
              multiprocess_mode="mostrecent")
PLANNED = Gauge("certgate_mdm_reconcile_planned_revocations", "Certificates the last "
                "reconciliation pass found without a device in the MDM", ["group"],
                multiprocess_mode="mostrecent")
LAST_SUCCESS = Gauge("certgate_mdm_reconcile_last_success_timestamp_seconds",
                     "When a reconciliation pass last read the complete device list",
                     multiprocess_mode="max")

#: Seconds from `certgate serve` start to its first pass (at most one reconcile_interval).
FIRST_PASS_DELAY = 60.0

RevokeFn = Callable[[Candidate, Plan], Awaitable[bool]]  # True: revoked now (False: already)


async def fetch_enrolled(mdm: MdmSettings, client: MdmClient) -> frozenset[str]:
    """Every device id the MDM lists; FetchFailed if any page fails (nothing partial)."""
    assert mdm.reconcile_url is not None and mdm.reconcile_token is not None
    collector = Collector(max_pages=mdm.max_pages)
    cursor: str | None = None
    headers = {"Authorization": f"Bearer {mdm.reconcile_token}"}
    while True:
        url = yarl.URL(mdm.reconcile_url)
        if cursor is not None:
            url = url.update_query(cursor=cursor)
        try:
            async with asyncio.timeout(mdm.reconcile_timeout):
                async with client.session().get(url, headers=headers,
                                                 allow_redirects=False) as response:
                    body, truncated = await read_bounded(response, mdm.max_page_bytes)
                    status = response.status
        except TimeoutError:
            raise FetchFailed("timeout", f"page {collector.pages + 1}: no answer within "
                              f"{mdm.reconcile_timeout:g} s") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise FetchFailed("unavailable", f"page {collector.pages + 1}: "
                              f"{type(exc).__name__}: {exc}"[:300]) from None
        page = parse_page(status, body, truncated=truncated, max_bytes=mdm.max_page_bytes)
        cursor = collector.add(page)
        if cursor is None:
            return collector.result()


def candidate(record: CertRecord) -> Candidate:
    return Candidate(serial=record.serial, group=record.group, device_id=record.device_id,
                     subject=record.subject,
                     held=record.status == REVOKED and record.reason == "certificateHold",
                     not_after=record.not_after, issued_at=record.issued_at)


async def candidates(store: Store, groups: tuple[str, ...]) -> list[Candidate]:
    out: list[Candidate] = []
    for g in groups:
        for status in (ACTIVE, REVOKED):
            for r in await store.find(group=g, status=status):
                if r.status == ACTIVE or r.reason == "certificateHold":
                    out.append(candidate(r))
    return out


@dataclass
class PassResult:
    plan: Plan | None = None
    revoked: list[Candidate] = field(default_factory=list)
    failed: list[Candidate] = field(default_factory=list)  # store errors while revoking
    applied: bool = False  # False: braked (or a dry run)
    error: str | None = None  # fetch_failed / store_error detail

    @property
    def result(self) -> str:
        if self.error is not None:
            return self.error.split(":", 1)[0]
        if self.plan is not None and self.plan.braked and not self.applied:
            return "braked"
        return "ok"


async def run_pass(mdm: MdmSettings, store: Store, client: MdmClient, revoke: RevokeFn, *,
                   apply: bool = True, confirmed: bool = False) -> PassResult:
    """One pass: fetch (complete or nothing), plan, and unless `apply` is false revoke what
    the plan allows (everything when `confirmed`, nothing while the brake holds)."""
    out = PassResult()
    started = dt.datetime.now(dt.UTC)
    try:
        enrolled = await fetch_enrolled(mdm, client)
    except FetchFailed as exc:
        out.error = f"fetch_failed: {exc}"
        return out
    try:
        found = await candidates(store, mdm.reconcile_groups)
    except StoreUnavailable as exc:
        out.error = f"store_error: {exc.detail}"
        return out
    out.plan = plan(enrolled, found, mdm.reconcile_groups, mdm.max_revoke_fraction,
                    now=dt.datetime.now(dt.UTC),
                    cutoff=started - dt.timedelta(seconds=mdm.reconcile_min_age))
    if not apply:
        return out
    todo = out.plan.to_apply(confirmed=confirmed)
    out.applied = bool(todo) or not out.plan.braked
    for i, c in enumerate(todo):
        try:
            if await revoke(c, out.plan):
                out.revoked.append(c)
        except StoreUnavailable as exc:  # the rest would wait out the same outage one by one
            out.failed.extend(todo[i:])
            out.error = f"store_error: {exc.detail}"
            break
    return out


def revocation_details(c: Candidate, plan_: Plan, *, confirmed: bool) -> dict[str, Any]:
    return {"device_id": c.device_id, "reconcile": "device not in the MDM's list",
            "mdm_devices": plan_.enrolled, **({"confirmed": True} if confirmed else {})}


class Reconciler:
    """The periodic pass of `certgate serve`."""

    def __init__(self, runtime: Any, revocations: Any) -> None:
        self.runtime = runtime
        self.revocations = revocations  # certgate.revocations.RevocationService
        self.mdm: MdmSettings = runtime.settings.mdm
        self.client = MdmClient(self.mdm.ca_file)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._braked: set[str] = set()  # groups whose brake is engaged (audited on engaging)
        for result in RUN_RESULTS:
            RUNS.labels(result=result)
        for g in self.mdm.reconcile_groups:
            BRAKE.labels(group=g).set(0)
            PLANNED.labels(group=g).set(0)

    def start(self) -> None:
        """The passes of `certgate serve`: the first FIRST_PASS_DELAY seconds after start (or
        one interval, if shorter), so a node restarted more often than reconcile_interval
        still reconciles; then every reconcile_interval."""
        if self.mdm.reconcile_url is None or self.mdm.reconcile_interval <= 0:
            return
        self._task = asyncio.get_running_loop().create_task(self._passes(), name="mdm-reconcile")

    async def _passes(self) -> None:
        delay = min(FIRST_PASS_DELAY, self.mdm.reconcile_interval)
        while True:
            await asyncio.sleep(delay)
            delay = self.mdm.reconcile_interval
            try:
                await self.run_once()
            except Exception:
                log.exception("mdm reconcile pass failed; retried at the next interval")

    async def _revoke(self, c: Candidate, plan_: Plan) -> bool:
        outcome = await self.revocations.revoke(c.serial, REASON, "reconcile",
                                                details=revocation_details(c, plan_,
                                                                           confirmed=False))
        return outcome is not None and outcome.changed

    async def run_once(self) -> PassResult:
        async with self._lock:  # a slow MDM never stacks passes
            began = time.monotonic()
            result = await run_pass(self.mdm, self.runtime.store, self.client, self._revoke)
            RUNS.labels(result=result.result).inc()
            self._report(result, time.monotonic() - began)
            return result

    def _report(self, result: PassResult, seconds: float) -> None:
        p = result.plan
        if p is None:
            log.warning("mdm reconcile result=%s: nothing revoked (%s)", result.result,
                        result.error)
            return
        LAST_SUCCESS.set(time.time())
        for g in p.groups:
            BRAKE.labels(group=g.group).set(1 if g.braked else 0)
            PLANNED.labels(group=g.group).set(len(g.revoke))
        engaged = {g.group for g in p.groups if g.braked} if not result.applied else set()
        self._audit_brake(p, engaged - self._braked)
        self._braked = engaged
        if p.braked and not result.applied:
            for g in p.groups:
                if g.braked:
                    log.error("mdm reconcile result=braked group=%s considered=%d missing=%d "
                              "fraction=%.3f max_revoke_fraction=%g: nothing revoked in any "
                              "group; check the MDM's device list, then `certgate reconcile` "
                              "(dry run) and `certgate reconcile --confirm`", g.group,
                              g.considered, len(g.revoke), g.fraction, p.max_fraction)
            return
        log.info("mdm reconcile result=%s devices=%d revoked=%d failed=%d seconds=%.1f",
                 result.result, p.enrolled, len(result.revoked), len(result.failed), seconds)

    def _audit_brake(self, p: Any, groups: set[str]) -> None:
        """One `reconcile-braked` event when a group's brake engages (not one per pass)."""
        audit = self.runtime.services.get("audit")
        if not groups or audit is None or not audit.enabled:
            return
        from certgate.audit import events

        now = dt.datetime.now(dt.UTC)
        for g in p.groups:
            if g.group in groups:
                audit.emit(events.reconcile_braked(
                    now=now, group=g.group, considered=g.considered, missing=len(g.revoke),
                    fraction=g.fraction, max_fraction=p.max_fraction, mdm_devices=p.enrolled,
                    node=audit.node))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.client.close()
