"""HTTP for relying parties: CRLs per group and the OCSP responder."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from aiohttp import web
from cryptography.x509 import ocsp as x509_ocsp
from prometheus_client import Counter

from certgate.revocations import CrlPublisher
from certgate.runtime import Runtime
from certgate.web import read_at_most
from revocation import ocsp
from store.records import REVOKED

log = logging.getLogger("certgate.ocsp")

OCSP_REQUESTS = Counter("certgate_ocsp_requests_total", "OCSP requests", ["group", "outcome"])
CRL_REQUESTS = Counter("certgate_crl_requests_total", "CRL downloads", ["group", "format"])
MAX_OCSP_BODY = 16 * 1024


class RevocationHttp:
    def __init__(self, runtime: Runtime, crls: CrlPublisher) -> None:
        self.runtime = runtime
        self.crls = crls
        self.signers = ocsp.SignerTable(
            {name: (ca.certificate, ca.key) for name, ca in runtime.pki.groups.items()}
        )
        self.validity = dt.timedelta(minutes=runtime.settings.revocation.ocsp_validity_minutes)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/crl/{name}", self.crl)
        app.router.add_post("/ocsp", self.ocsp_post)
        app.router.add_post("/ocsp/{group}", self.ocsp_post)
        app.router.add_get("/ocsp/{group}/{request:.+}", self.ocsp_get)

    async def crl(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        group, _, fmt = name.rpartition(".")
        if fmt not in ("crl", "pem") or self.runtime.groups.by_name(group) is None:
            raise web.HTTPNotFound(text="unknown CRL: use /crl/<group>.crl or .pem\n")
        try:
            published = await self.crls.get(group)
        except Exception:
            log.exception("CRL for %s could not be produced", group)
            return web.Response(status=503, text="CRL temporarily unavailable, retry\n",
                                headers={"Retry-After": "5"})
        CRL_REQUESTS.labels(group=group, format=fmt).inc()
        headers = {
            "Expires": published.next_update.strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "Cache-Control": "public, max-age=60",
        }
        if fmt == "pem":
            pem = await asyncio.get_running_loop().run_in_executor(None, lambda: published.pem)
            return web.Response(body=pem, content_type="application/x-pem-file",
                                headers=headers)
        return web.Response(body=published.der, content_type="application/pkix-crl",
                            headers=headers)

    async def _answer(self, der: bytes) -> web.Response:
        now = dt.datetime.now(dt.UTC)
        # The pure core is synchronous: pre-fetch the one CertID's row from the store.
        try:
            serial = ocsp.requested_serial(der)  # None: undecodable or several CertIDs
            record = await self.runtime.store.get(serial) if serial is not None else None
        except Exception:
            log.exception("OCSP store lookup failed")
            return web.Response(body=ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.TRY_LATER),
                                content_type=ocsp.CONTENT_TYPE)

        def lookup(group: str, s: int):
            if record is None or record.serial != s or record.group != group \
                    or record.profile != "device":
                return ocsp.UNKNOWN
            if record.status == REVOKED:
                return ocsp.Revoked(record.revoked_at, record.reason)
            return ocsp.GOOD

        result = ocsp.answer(der, lookup, self.signers, now, validity=self.validity)
        OCSP_REQUESTS.labels(group=result.group or "unknown", outcome=str(result.outcome)).inc()
        headers = {}
        if result.next_update is not None:
            headers["Cache-Control"] = "max-age=60, public, no-transform, must-revalidate"
        return web.Response(body=result.der, content_type=ocsp.CONTENT_TYPE, headers=headers)

    async def ocsp_post(self, request: web.Request) -> web.Response:
        body = await read_at_most(request, MAX_OCSP_BODY + 1)
        if len(body) > MAX_OCSP_BODY:
            return web.Response(body=ocsp.unsuccessful(
                x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST), content_type=ocsp.CONTENT_TYPE)
        return await self._answer(body)

    async def ocsp_get(self, request: web.Request) -> web.Response:
        raw_path = request.raw_path.split("?", 1)[0]
        prefix = f"/ocsp/{request.match_info['group']}/"
        try:
            der = ocsp.decode_get(raw_path[len(prefix):])
        except ocsp.MalformedRequest:
            return web.Response(body=ocsp.unsuccessful(
                x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST), content_type=ocsp.CONTENT_TYPE)
        return await self._answer(der)
