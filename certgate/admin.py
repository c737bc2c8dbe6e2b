"""Admin API under /api/v1 (bearer tokens, constant-time compare) and the MDM webhook."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging

from aiohttp import web
from prometheus_client import Counter

from certgate.revocations import RevocationService
from certgate.runtime import Runtime
from certgate.web import STORE_RETRY_AFTER, read_at_most
from revocation import webhook
from revocation.reasons import canonical_name, parse_reason
from store import DeviceEventStore, SessionStore, StoreUnavailable
from store.records import ACTIVE, REVOKED, parse_serial

log = logging.getLogger("certgate.admin")

MAX_COMMENT = 1024
MAX_DEVICE_ID = 256
WEBHOOK_REQUESTS = Counter("certgate_webhook_requests_total", "MDM webhook calls", ["result"])
ADMIN_DENIED = Counter("certgate_admin_denied_total", "Admin API calls refused", ["reason"])


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, indent=2))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _retry_later(message: str) -> web.Response:
    response = _error(503, message)
    response.headers["Retry-After"] = STORE_RETRY_AFTER
    return response


class AdminApi:
    def __init__(self, runtime: Runtime, revocations: RevocationService) -> None:
        self.runtime = runtime
        self.revocations = revocations
        self._tokens = [t.encode() for t in runtime.settings.admin.tokens]

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v1/certificates", self.list_certificates)
        r.add_get("/api/v1/certificates/{serial}", self.show_certificate)
        r.add_post("/api/v1/certificates/{serial}/revoke", self.revoke)
        r.add_post("/api/v1/certificates/{serial}/release-hold", self.release_hold)
        r.add_get("/api/v1/sessions", self.sessions)
        r.add_post("/api/v1/webhooks/device-removed", self.device_removed)
        from certgate.compliance import ComplianceWebhooks  # device-noncompliant / -compliant

        ComplianceWebhooks(self.runtime, self.revocations, self).routes(app)
        from certgate.explain.api import ExplainApi  # GET|POST /api/v1/explain

        ExplainApi(self.runtime, self.authorize).routes(app)

    def _audit_denied(self, request: web.Request, reason: str) -> None:
        hook = self.runtime.services.get("admin_denied")  # certgate.audit.wiring.AdminDenied
        if hook is not None:
            hook(request.remote, request.path, reason)

    def authorize(self, request: web.Request) -> str:
        """The caller's identity for the audit trail; 401 unless a configured token matches."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            ADMIN_DENIED.labels(reason="missing_token").inc()
            self._audit_denied(request, "missing_token")
            raise web.HTTPUnauthorized(text='{"error": "bearer token required"}\n',
                                       content_type="application/json",
                                       headers={"WWW-Authenticate": "Bearer"})
        presented = token.encode()  # exactly: no stripping, no case folding
        matched = -1
        for i, candidate in enumerate(self._tokens):
            if hmac.compare_digest(presented, candidate):
                matched = i
        if matched < 0:
            ADMIN_DENIED.labels(reason="bad_token").inc()
            self._audit_denied(request, "bad_token")
            raise web.HTTPUnauthorized(text='{"error": "invalid token"}\n',
                                       content_type="application/json",
                                       headers={"WWW-Authenticate": "Bearer"})
        return f"api:token#{matched}"

    @staticmethod
    def _serial(request: web.Request) -> int:
        try:
            return parse_serial(request.match_info["serial"])
        except ValueError as exc:
            raise web.HTTPBadRequest(text=json.dumps({"error": str(exc)}),
                                     content_type="application/json") from None

    async def _body(self, request: web.Request) -> dict:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}',
                                     content_type="application/json") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}',
                                     content_type="application/json")
        return data

    async def list_certificates(self, request: web.Request) -> web.Response:
        self.authorize(request)
        q = request.query
        status = q.get("status")
        if status not in (None, ACTIVE, REVOKED):
            return _error(400, "status must be active or revoked")
        unknown = set(q) - {"group", "status", "device_id"}
        if unknown:
            return _error(400, f"unknown parameter(s) {sorted(unknown)}: expected group, status, "
                          "device_id")
        group = q.get("group")
        if group is not None and self.runtime.groups.by_name(group) is None:
            return _error(400, f"group: no group named {group[:64]!r}")
        if len(q.get("device_id") or "") > MAX_DEVICE_ID:
            return _error(400, f"device_id longer than {MAX_DEVICE_ID} characters")
        records = await self.runtime.store.find(group=q.get("group"), status=status,
                                                device_id=q.get("device_id"))
        return _json([r.to_json() for r in records])

    async def show_certificate(self, request: web.Request) -> web.Response:
        self.authorize(request)
        record = await self.runtime.store.get(self._serial(request))
        if record is None:
            return _error(404, "no such certificate")
        return _json(record.to_json())

    async def revoke(self, request: web.Request) -> web.Response:
        actor = self.authorize(request)
        serial = self._serial(request)
        body = await self._body(request)
        unknown = set(body) - {"reason", "comment"}
        if unknown:
            return _error(400, f"unknown field(s) {sorted(unknown)}: expected reason, comment")
        comment = body.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
            return _error(400, f"comment must be a string of at most {MAX_COMMENT} characters")
        if not isinstance(body.get("reason", ""), str):
            return _error(400, "reason must be a string, e.g. keyCompromise")
        try:
            reason = canonical_name(parse_reason(body.get("reason", "unspecified"),
                                                 allow_remove_from_crl=True))
        except ValueError as exc:
            return _error(400, f"reason: {exc}")
        if reason == "removeFromCRL":  # RFC 5280 §5.3.1: the release of a certificateHold
            return await self._release(serial, actor)
        try:
            outcome = await self.revocations.revoke(serial, reason, actor,
                                                    details={"comment": comment})
        except StoreUnavailable as exc:
            log.warning("revocation not acknowledged serial=%x actor=%s: %s", serial, actor, exc)
            return _retry_later("revocation could not be committed; nothing changed, retry")
        except Exception:
            log.exception("revocation failed serial=%x actor=%s; not acknowledged", serial, actor)
            return _retry_later("revocation could not be committed; nothing changed, retry")
        if outcome is None:
            return _error(404, "no such certificate")
        return _json({**outcome.record.to_json(), "changed": outcome.changed})

    async def release_hold(self, request: web.Request) -> web.Response:
        actor = self.authorize(request)
        return await self._release(self._serial(request), actor)

    async def _release(self, serial: int, actor: str) -> web.Response:
        try:
            record = await self.revocations.release_hold(serial, actor)
        except StoreUnavailable as exc:
            log.warning("release of hold not acknowledged serial=%x actor=%s: %s", serial, actor, exc)
            return _retry_later("release could not be committed; nothing changed, retry")
        except Exception:
            log.exception("release of hold failed serial=%x actor=%s; not acknowledged", serial, actor)
            return _retry_later("release could not be committed; nothing changed, retry")
        if record is None:
            return _error(409, "certificate is not on certificateHold")
        return _json(record.to_json())

    async def sessions(self, request: web.Request) -> web.Response:
        self.authorize(request)
        return _json(await SessionStore(self.runtime.store).active_sessions())

    async def verified_event(self, request: web.Request,
                             expected: str) -> webhook.WebhookEvent | web.Response:
        """The MDM webhook's event, authenticated (HMAC, timestamp) and of the kind the URL
        names; else the response to send (404 not configured, 401, 400)."""
        secret = self.runtime.settings.admin.webhook_secret
        if not secret:
            return _error(404, "webhook not configured ([admin] webhook_secret)")
        body = await read_at_most(request, webhook.MAX_BODY_SIZE + 1)
        try:
            event = webhook.verify(
                secret, request.headers.get(webhook.HEADER), body, dt.datetime.now(dt.UTC),
                tolerance=dt.timedelta(
                    seconds=self.runtime.settings.admin.webhook_tolerance_seconds),
            )
        except webhook.WebhookRejected as exc:
            WEBHOOK_REQUESTS.labels(result=str(exc.reason)).inc()
            self._audit_denied(request, f"webhook_{exc.reason}")
            log.warning("webhook refused reason=%s: %s", exc.reason, exc)
            return _error(exc.reason.http_status, str(exc.reason))
        if event.event != expected:
            WEBHOOK_REQUESTS.labels(result=str(webhook.RejectReason.MALFORMED)).inc()
            return _error(400, f"event: {event.event!r} posted to the {expected} webhook; "
                          f"POST it to /api/v1/webhooks/{event.event}")
        return event

    async def device_removed(self, request: web.Request) -> web.Response:
        event = await self.verified_event(request, webhook.DEVICE_REMOVED)
        if isinstance(event, web.Response):
            return event
        # recorded so that an older compliance event delivered late is stale
        await DeviceEventStore(self.runtime.store).record(
            event.device_id, event.event, event.event_id, event.event_time)
        records = await self.runtime.store.find(device_id=event.device_id, status=ACTIVE)
        revoked = []
        for record in records:
            outcome = await self.revocations.revoke(
                record.serial, "cessationOfOperation", "webhook:device-removed",
                details={"event_id": event.event_id, "device_id": event.device_id},
            )
            if outcome is not None and outcome.changed:
                revoked.append(outcome.record.serial_hex)
        WEBHOOK_REQUESTS.labels(result="ok").inc()
        log.info("webhook device-removed device_id=%s event_id=%s revoked=%d", event.device_id,
                 event.event_id, len(revoked))
        return _json({"device_id": event.device_id, "revoked": revoked})
