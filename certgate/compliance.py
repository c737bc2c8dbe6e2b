"""MDM compliance webhooks: ``device-noncompliant`` puts every certificate of the device on
hold (its sessions move to the group's quarantine by CoA, ``certgate.sessions``),
``device-compliant`` releases the holds those webhooks placed (and the sessions move back).

Same HMAC scheme as ``device-removed`` (``revocation.webhook``). Idempotent and ordered: each
event is first recorded as the device's newest (``store.device_events``); an event older
than the newest is answered 200 with ``"applied": false`` and changes nothing, the same
``event_id`` again re-applies the newest state (a retry after a crash half-way is safe).
The state applied is always the *newest* event's, re-read after applying, so two webhooks
racing (on one node or two) end in the newest event's state.

A compliant event releases only holds placed by the non-compliant webhook: a hold an
operator placed (admin API, CLI) stays until an operator releases it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from certgate.revocations import RevocationService
from certgate.runtime import Runtime
from revocation import webhook
from store import DeviceEvent, DeviceEventStore, StoreUnavailable
from store.records import ACTIVE, REVOKED

if TYPE_CHECKING:
    from certgate.admin import AdminApi

log = logging.getLogger("certgate.compliance")

HOLD = "certificateHold"
HOLD_ACTOR = f"webhook:{webhook.DEVICE_NONCOMPLIANT}"
RELEASE_ACTOR = f"webhook:{webhook.DEVICE_COMPLIANT}"
CONVERGE_ROUNDS = 3


class ComplianceWebhooks:
    def __init__(self, runtime: Runtime, revocations: RevocationService, admin: AdminApi) -> None:
        self.runtime = runtime
        self.revocations = revocations
        self.admin = admin
        self.events = DeviceEventStore(runtime.store)
        self._lock = asyncio.Lock()  # one device state change at a time on this node

    def routes(self, app: web.Application) -> None:
        app.router.add_post(f"/api/v1/webhooks/{webhook.DEVICE_NONCOMPLIANT}",
                            self.noncompliant)
        app.router.add_post(f"/api/v1/webhooks/{webhook.DEVICE_COMPLIANT}", self.compliant)

    async def noncompliant(self, request: web.Request) -> web.Response:
        return await self._handle(request, webhook.DEVICE_NONCOMPLIANT)

    async def compliant(self, request: web.Request) -> web.Response:
        return await self._handle(request, webhook.DEVICE_COMPLIANT)

    async def _handle(self, request: web.Request, kind: str) -> web.Response:
        from certgate.admin import WEBHOOK_REQUESTS, _json, _retry_later

        event = await self.admin.verified_event(request, kind)
        if isinstance(event, web.Response):
            return event
        try:
            outcome, newest = await self.events.record(
                event.device_id, event.event, event.event_id, event.event_time)
            body: dict[str, object] = {"device_id": event.device_id, "event": event.event,
                                       "event_id": event.event_id, "outcome": outcome}
            if outcome == "stale":
                body.update(applied=False, newest={"event": newest.event,
                                                   "event_id": newest.event_id,
                                                   "occurred_at": _utc(newest)})
                log.info("webhook %s device_id=%r event_id=%r is older than %s (%s): ignored",
                         kind, event.device_id, event.event_id, newest.event_id, newest.event)
            else:
                async with self._lock:
                    held, released = await self._converge(event.device_id)
                body.update(applied=True, held=held, released=released)
                log.info("webhook %s device_id=%r event_id=%r outcome=%s held=%d released=%d",
                         kind, event.device_id, event.event_id, outcome, len(held),
                         len(released))
        except StoreUnavailable as exc:
            log.warning("webhook %s not applied device_id=%r: %s", kind, event.device_id, exc)
            return _retry_later("store unavailable; nothing acknowledged, retry")
        WEBHOOK_REQUESTS.labels(result="ok").inc()
        return _json(body)

    async def _converge(self, device_id: str) -> tuple[list[str], list[str]]:
        """Apply the newest event's state until it is still the newest after applying."""
        held: list[str] = []
        released: list[str] = []
        newest = await self.events.newest(device_id)
        for _ in range(CONVERGE_ROUNDS):
            if newest is None:
                break
            if newest.event == webhook.DEVICE_NONCOMPLIANT:
                held += await self._hold(newest)
            elif newest.event == webhook.DEVICE_COMPLIANT:
                released += await self._release(newest)
            again = await self.events.newest(device_id)
            if again is None or again.event_id == newest.event_id:
                break
            newest = again
        return held, released

    async def _hold(self, event: DeviceEvent) -> list[str]:
        done: list[str] = []
        for record in await self.runtime.store.find(device_id=event.device_id, status=ACTIVE):
            if record.profile != "device":
                continue
            outcome = await self.revocations.revoke(
                record.serial, HOLD, HOLD_ACTOR,
                details={"event_id": event.event_id, "device_id": event.device_id})
            if outcome is not None and outcome.changed:
                done.append(outcome.record.serial_hex)
        return done

    async def _release(self, event: DeviceEvent) -> list[str]:
        done: list[str] = []
        for record in await self.runtime.store.find(device_id=event.device_id, status=REVOKED):
            if record.reason != HOLD or not await self._held_by_webhook(record.serial):
                continue
            if await self.revocations.release_hold(record.serial, RELEASE_ACTOR) is not None:
                done.append(record.serial_hex)
        return done

    async def _held_by_webhook(self, serial: int) -> bool:
        """The hold in force was placed by the non-compliant webhook (its audit row)."""
        for entry in await self.runtime.store.audit_log(serial, limit=50):
            if entry["action"] == "revoke":
                return entry["actor"] == HOLD_ACTOR
        return False


def _utc(event: DeviceEvent) -> str:
    return event.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
