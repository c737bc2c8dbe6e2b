"""HTTP for relying parties: CRLs per group and the OCSP responder."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging

from aiohttp import web
from cryptography.x509 import ocsp as x509_ocsp
from prometheus_client import Counter

from certgate.revocations import CrlPublisher
from certgate.runtime import Runtime
from certgate.web import read_at_most
from revocation import ocsp
from store import StoreUnavailable
from store.records import REVOKED, CertRecord

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
        rv = runtime.settings.revocation
        self.validity = dt.timedelta(minutes=rv.ocsp_validity_minutes)
        # Pre-signed no-nonce responses (revocation/ocsp.py ResponseCache): the status is
        # still read per request, only the signature is reused. bench/README.md "OCSP".
        reuse = min(dt.timedelta(seconds=rv.ocsp_reuse_seconds), self.validity / 2)
        self.cache = ocsp.ResponseCache(reuse) if reuse > dt.timedelta(0) else None

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/crl/{name}", self.crl)
        app.router.add_get("/crl/{kind:delta|base}/{name}", self.crl)
        app.router.add_post("/ocsp", self.ocsp_post)
        app.router.add_post("/ocsp/{group}", self.ocsp_post)
        app.router.add_get("/ocsp/{group}/{request:.+}", self.ocsp_get)

    async def crl(self, request: web.Request) -> web.Response:
        """/crl/<group>.crl: complete; /crl/delta/<group>.crl: the delta (Freshest CRL);
        /crl/base/<group>.crl: the base the delta names (certgate/crls.py)."""
        name = request.match_info["name"]
        kind = request.match_info.get("kind", "full")
        group, _, fmt = name.rpartition(".")
        if fmt not in ("crl", "pem") or self.runtime.groups.by_name(group) is None:
            raise web.HTTPNotFound(text="unknown CRL: use /crl/<group>.crl or .pem, "
                                        "/crl/delta/<group>.crl, /crl/base/<group>.crl\n")
        try:
            if kind == "delta":
                published = await self.crls.get_delta(group)
            elif kind == "base":
                published = await self.crls.get_base(group)
            else:
                published = await self.crls.get(group)
        except Exception:
            log.exception("CRL for %s could not be produced", group)
            return web.Response(status=503, text="CRL temporarily unavailable, retry\n",
                                headers={"Retry-After": "5"})
        CRL_REQUESTS.labels(group=group, format=fmt if kind == "full" else f"{kind}-{fmt}").inc()
        headers = {
            "Expires": published.next_update.strftime("%a, %d %b %Y %H:%M:%S GMT"),
            # the delta changes with every revocation: a cache must not hold it
            "Cache-Control": "no-cache" if kind == "delta" else "public, max-age=60",
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
        serial = ocsp.requested_serial(der)  # None: undecodable or several CertIDs
        lookup: ocsp.StatusLookup
        try:
            record = await self.runtime.store.get(serial) if serial is not None else None
            lookup = functools.partial(_from_record, record)
        except StoreUnavailable:
            try:
                lookup = await self._from_memory(serial)
            except Exception:
                log.exception("OCSP answer from memory failed")
                return self._try_later()
        except Exception:
            log.exception("OCSP store lookup failed")
            return self._try_later()
        try:
            result = ocsp.answer(der, lookup, self.signers, now, validity=self.validity,
                                 cache=self.cache)
        except _NotKnownHere as exc:
            return self._try_later(exc.group)
        OCSP_REQUESTS.labels(group=result.group or "unknown", outcome=str(result.outcome)).inc()
        headers = {}
        if result.next_update is not None:
            headers["Cache-Control"] = "max-age=60, public, no-transform, must-revalidate"
        return web.Response(body=result.der, content_type=ocsp.CONTENT_TYPE, headers=headers)

    @staticmethod
    def _try_later(group: str = "unknown") -> web.Response:
        OCSP_REQUESTS.labels(group=group, outcome="try_later").inc()
        return web.Response(body=ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.TRY_LATER),
                            content_type=ocsp.CONTENT_TYPE)

    async def _from_memory(self, serial: int | None) -> ocsp.StatusLookup:
        """The store is down: answer from what this node knows, as RADIUS does. Revoked
        (time and reason from the last published CRL) stays revoked; issued and not revoked
        is good until `outage_grace` has passed (outage_mode closed); anything else is
        tryLater, never a guess."""
        feed = self.runtime.services.get("feed")
        closed = feed is not None and feed.closed()
        known: dict[str, ocsp.CertStatus] = {}
        if serial is not None:
            for group in self.runtime.groups.names():
                if self.runtime.revoked.is_revoked(group, serial):
                    crl = self.crls.current.get(group)
                    entry = (await asyncio.get_running_loop().run_in_executor(
                        None, crl.entry, serial)) if crl is not None else None
                    if entry is not None:
                        known[group] = ocsp.Revoked(*entry)
                elif self.runtime.issued.is_issued(group, serial) and not closed:
                    known[group] = ocsp.GOOD

        def lookup(group: str, s: int) -> ocsp.CertStatus:
            status = known.get(group) if s == serial else None
            if status is None:
                raise _NotKnownHere(group)
            return status

        return lookup

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


class _NotKnownHere(Exception):
    """Store down and this node cannot answer for the certificate: tryLater."""

    def __init__(self, group: str) -> None:
        super().__init__(group)
        self.group = group


def _from_record(record: CertRecord | None, group: str, serial: int) -> ocsp.CertStatus:
    if record is None or record.serial != serial or record.group != group \
            or record.profile != "device":
        return ocsp.UNKNOWN
    if record.status == REVOKED:
        return ocsp.Revoked(record.revoked_at, record.reason)
    return ocsp.GOOD
