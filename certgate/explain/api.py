"""`GET /api/v1/explain?serial=HEX` and `POST /api/v1/explain` (admin token).

The answer has the fields of `certgate explain --json`. Unlike the CLI, this runs inside
the server with the very callable its RADIUS server runs (radius_wiring.radius_policy): this
node's revocation index and inventory, failing closed past the outage grace, so it answers
even while the store is down (the inventory row is then reported as unavailable).

POST body: the device certificate (PEM, optionally followed by the chain it sends, or DER),
or JSON ``{"certificate": PEM, "chain": PEM}``. Both forms take ``?at=TIME`` (ISO 8601).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from certgate.explain import report
from certgate.runtime import Runtime
from certgate.web import read_at_most
from store import StoreUnavailable
from store.records import parse_serial

log = logging.getLogger("certgate.admin")

MAX_BODY = 64 * 1024  # a certificate chain is a few KiB


class BadField(Exception):
    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status


def _bad(exc: BadField) -> web.Response:
    return web.json_response({"error": str(exc), "field": exc.field}, status=exc.status,
                             dumps=lambda o: json.dumps(o, indent=2))


class ExplainApi:
    def __init__(self, runtime: Runtime, authorize: Callable[[web.Request], str]) -> None:
        self.runtime = runtime
        self._authorize = authorize  # AdminApi.authorize: 401 unless a configured token

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/explain", self.get)
        app.router.add_post("/api/v1/explain", self.post)

    async def get(self, request: web.Request) -> web.Response:
        self._authorize(request)
        try:
            now = self._query(request, allowed={"serial", "at"})
            text = request.query.get("serial")
            if text is None:
                raise BadField("serial", "required (GET /api/v1/explain?serial=HEX), or POST "
                               "the certificate")
            try:
                serial = parse_serial(text)
            except ValueError as exc:
                raise BadField("serial", str(exc)) from None
            record, inventory = await report.lookup(self.runtime.store, serial)
            if record is None:
                raise BadField("serial", f"no certificate with serial {text[:64]} in the "
                               "inventory", status=404)
            certs = self._certificates(record.pem.encode(), "serial")
        except BadField as exc:
            return _bad(exc)
        return self._answer(certs[0], certs[1:], record, inventory, now)

    async def post(self, request: web.Request) -> web.Response:
        self._authorize(request)
        try:
            now = self._query(request, allowed={"at"})
            body = await read_at_most(request, MAX_BODY + 1)
            if len(body) > MAX_BODY:
                raise BadField("body", f"larger than {MAX_BODY} bytes", status=413)
            if not body.strip():
                raise BadField("body", "empty: POST the device certificate (PEM or DER) or "
                               'JSON {"certificate": PEM, "chain": PEM}')
            certs, chain = self._parse_body(request.content_type, body)
        except BadField as exc:
            return _bad(exc)
        leaf = certs[0]
        try:
            record, inventory = await report.lookup(self.runtime.store, leaf.serial_number)
        except StoreUnavailable as exc:  # RADIUS decides from memory; so does this
            record, inventory = None, {"error": f"store unavailable: {exc.detail}"}
        return self._answer(leaf, [*certs[1:], *chain], record, inventory, now)

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _query(request: web.Request, allowed: set[str]) -> dt.datetime:
        unknown = set(request.query) - allowed
        if unknown:
            name = sorted(unknown)[0][:64]
            raise BadField(name, f"unknown parameter (expected {', '.join(sorted(allowed))})")
        at = request.query.get("at")
        if at is None:
            return dt.datetime.now(dt.UTC).replace(microsecond=0)
        try:
            value = dt.datetime.fromisoformat(at.strip())
        except ValueError:
            raise BadField("at", f"{at[:64]!r} is not an ISO 8601 time "
                           "(e.g. 2026-01-31T12:00:00Z)") from None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    def _parse_body(self, content_type: str, body: bytes) -> tuple[list, list]:
        if content_type != "application/json":
            return self._certificates(body, "body"), []
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadField("body", "not JSON (send a PEM body, or JSON with certificate and "
                           "chain)") from None
        if not isinstance(data, dict):
            raise BadField("body", 'must be a JSON object {"certificate": PEM, "chain": PEM}')
        unknown = set(data) - {"certificate", "chain"}
        if unknown:
            raise BadField(sorted(unknown)[0][:64], "unknown field (expected certificate, "
                           "chain)")
        cert = data.get("certificate")
        if not isinstance(cert, str) or not cert.strip():
            raise BadField("certificate", "required: the device certificate as PEM text")
        chain = data.get("chain")
        if chain is not None and not isinstance(chain, str):
            raise BadField("chain", "must be PEM text")
        return (self._certificates(cert.encode(), "certificate"),
                self._certificates(chain.encode(), "chain") if chain else [])

    @staticmethod
    def _certificates(data: bytes, field: str) -> list:
        from radius.verdict import parse_certificates

        try:
            return parse_certificates(data)
        except ValueError as exc:
            raise BadField(field, str(exc)) from None

    def _answer(self, leaf: Any, presented: list, record: Any, inventory: dict | None,
                now: dt.datetime) -> web.Response:
        from certgate.radius_wiring import radius_policy
        from radius.verdict import evaluate

        runtime = self.runtime
        verdict = evaluate(leaf, presented, root=runtime.pki.root,
                           intermediates=[g.intermediate for g in runtime.groups],
                           decide=radius_policy(runtime), now=now)
        answer = report.build(verdict, leaf, now=now, inventory=inventory, record=record,
                              source="node")
        return web.json_response(answer, dumps=lambda o: json.dumps(o, indent=2))
