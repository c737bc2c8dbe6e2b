"""SCEP over HTTP: /scep/<group>[/anything] (GET, POST) and the challenge admin API.

The operation comes from the query; a GET PKIOperation's `message` is read from the raw
query string (clients leave '+' and '/' unescaped, use URL-safe base64, insert %0A
newlines or drop the padding). Unknown group -> 404; undecodable -> 400 with a short
reason; every parsed request gets a signed CertRep, never an HTTP 500.

The crypto of a PKIOperation (parse/verify/decrypt, certificate signing, CertRep) runs in
`[scep] workers` spawned processes (`enrollment.scep_crypto.ProcessCrypto`) that load the
PKI from the settings file themselves and run at nice 10: the event loop (RADIUS) keeps
its GIL and, on a busy machine, its CPU. `workers = 0` runs it in threads of this process.
A worker that dies is replaced; the request it was serving gets a FAILURE, or HTTP 503
when it could not be read or answered.

Each group admits at most `[scep] max_concurrent` PKIOperations at once (`[groups.<g>.scep]
max_concurrent` overrides it); more wait up to `queue_timeout`, at most `max_queued` of them,
and the rest are shed before any work with 503 + Retry-After (`certgate.scep_admission`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import logging
import os
import re
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from certgate.admin import AdminApi
from certgate.audit.wiring import scep_refused
from certgate.errors import OperatorError
from certgate.issuance_check import IssuanceChecker
from certgate.mdm_client import MdmClient
from certgate.runtime import Runtime
from certgate.scep_admission import GroupGate, Shed
from certgate.settings import GroupSettings, Settings, load_settings
from enrollment.challenge_store import create_dynamic, parse_ttl
from enrollment.challenges import StaticSecret
from enrollment.issuance_check import parse_device_id_source
from enrollment.metrics import SCEP_DURATION, SCEP_REQUESTS
from enrollment.scep_crypto import CryptoRunner, CryptoUnavailable, GroupCrypto, ProcessCrypto, ThreadCrypto
from enrollment.scep_enroll import ServiceConfig, revoke_due
from enrollment.scep_service import PKI_MESSAGE, ScepConfigError, ScepService, check_service_config
from enrollment.scep_types import UndecodableRequest
from store import ChallengeUnavailable, ScepStore

log = logging.getLogger("certgate.scep")

EXECUTOR_WORKERS = 2  # threads for the static-secret / blob checks (and crypto if workers = 0)
RETRY_AFTER_SECONDS = 5
OPERATIONS = ("GetCACaps", "GetCACert", "PKIOperation", "GetNextCACert")


def decode_get_message(raw_query: str) -> bytes:
    """The base64 `message` of a GET PKIOperation, tolerating what clients send."""
    for part in raw_query.split("&"):
        name, sep, value = part.partition("=")
        if sep and urllib.parse.unquote(name) == "message":
            text = urllib.parse.unquote(value)  # not unquote_plus: '+' is base64
            text = re.sub(r"\s+", "", text).replace("-", "+").replace("_", "/").rstrip("=")
            try:
                return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise UndecodableRequest("message is not base64") from None
    raise UndecodableRequest("PKIOperation by GET needs a message parameter")


def _operation(raw_query: str) -> str | None:
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        if urllib.parse.unquote_plus(name) == "operation":
            return urllib.parse.unquote_plus(value)
    return None


def _without_query(url: str) -> str:
    """A URL for the log: scheme, host and path (a query may carry a key)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _static_secrets(g: GroupSettings) -> tuple[StaticSecret, ...]:
    if not g.static_secret or "static" not in g.challenge_modes:
        return ()
    log.warning("group %s: static SCEP challenge enabled (legacy: one shared secret for every "
                "device); prefer dynamic challenges or MDM blobs", g.name)
    if g.static_secret.startswith("pbkdf2-sha256$"):
        return (StaticSecret.from_encoded(g.static_secret),)
    return (StaticSecret.from_secret(g.static_secret),)


@functools.cache
def _mdm_keys(paths: tuple[Path, ...]) -> tuple:
    """The MDM blob-signing public keys, read once per process (shared by every group)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return tuple(load_pem_public_key(p.read_bytes()) for p in paths)


def service_config(s: Settings, g: GroupSettings, pki: object) -> ServiceConfig:
    """One group's ServiceConfig; `pki` is the loaded PKI (challenge secret, blob key)."""
    mdm_keys = _mdm_keys(tuple(s.scep.mdm_blob_keys))
    return ServiceConfig(
        group=g.name,
        public_url=s.http.public_url,
        validity_days=g.validity_days,
        key_types=g.key_types,
        challenge_modes=g.challenge_modes,
        static_secrets=_static_secrets(g),
        ciphers=g.scep_ciphers,
        digests=g.scep_digests,
        ca_is_ra=g.ca_is_ra,
        include_root=g.include_root,
        manual_approval=g.manual_approval,
        renewal_window=dt.timedelta(days=g.renewal_window_days),
        superseded_grace=dt.timedelta(hours=g.superseded_grace_hours),
        signing_time_skew=dt.timedelta(seconds=s.scep.signing_time_skew_seconds),
        challenge_secret=getattr(pki, "challenge_secret", None),
        blob_keys=(pki.blob_key,) if getattr(pki, "blob_key", None) is not None else (),
        mdm_keys=mdm_keys,  # type: ignore[arg-type]
        device_id_from=parse_device_id_source(g.device_id_from),
    )


def load_group_crypto(config_path: str) -> dict[str, GroupCrypto]:
    """In a SCEP worker process: every group's GroupCrypto, from the settings file."""
    from pki.hierarchy import Hierarchy

    s = load_settings(config_path)
    pki = Hierarchy(s.pki).load(s.groups)
    groups = pki.group_table(s.groups)
    return {g.name: GroupCrypto(crypto_config(s, g), pki.groups[g.name], groups) for g in s.groups}


def crypto_config(s: Settings, g: GroupSettings) -> ServiceConfig:
    """What GroupCrypto reads of a group's ServiceConfig (no secrets, nothing to log)."""
    return ServiceConfig(
        group=g.name, public_url=s.http.public_url, ciphers=g.scep_ciphers,
        digests=g.scep_digests, ca_is_ra=g.ca_is_ra,
        signing_time_skew=dt.timedelta(seconds=s.scep.signing_time_skew_seconds))


def crypto_workers(configured: int, server_workers: int = 1) -> int:
    """`[scep] workers` of one serving process, capped at its share of the CPUs: with
    `[server] workers = N` every worker process has its own crypto processes, so each gets
    at most ceil(CPUs / N) (at least 1) and the host does not run N x [scep] workers of
    them. 0 = in-thread."""
    cpus = os.cpu_count() or 1
    return min(configured, max(1, -(-cpus // max(1, server_workers))))


class ScepHttp:
    def __init__(self, runtime: Runtime, admin: AdminApi) -> None:
        self.runtime = runtime
        self.admin = admin
        self.executor = ThreadPoolExecutor(EXECUTOR_WORKERS, thread_name_prefix="scep")
        s = runtime.settings
        configs = {g.name: service_config(s, g, runtime.pki) for g in s.groups}
        for g in s.groups:  # before any worker is spawned
            try:
                check_service_config(configs[g.name], runtime.pki.groups[g.name])
            except ScepConfigError as exc:
                raise OperatorError(str(exc), exit_code=2) from None
        workers = crypto_workers(s.scep.workers, s.server.workers)
        self.crypto: CryptoRunner
        if workers:
            self.crypto = ProcessCrypto(workers, load_group_crypto, (str(s.path),))
            log.info("SCEP crypto in %d worker process(es)", workers)
        else:
            self.crypto = ThreadCrypto(self.executor, {
                g.name: GroupCrypto(configs[g.name], runtime.pki.groups[g.name], runtime.groups)
                for g in s.groups})
        if getattr(runtime.pki, "challenge_secret", None) is None:
            log.warning("no SCEP challenge secret in %s: dynamic challenges disabled; run "
                        "`certgate init` to create it", s.pki.dir)
        revocations = runtime.services.get("revocations")
        crls = runtime.services.get("crls")
        self.mdm = MdmClient(s.mdm.ca_file)
        self.services: dict[str, ScepService] = {}
        self.gates = {g.name: GroupGate(g.name, g.scep_max_concurrent or s.scep.max_concurrent,
                                        s.scep.max_queued, s.scep.queue_timeout)
                      for g in s.groups}
        for g in s.groups:
            checker = None
            if g.issuance_check is not None:
                checker = IssuanceChecker(g.name, g.issuance_check, configs[g.name].device_id_from,
                                          self.mdm, audit=lambda: runtime.services.get("audit"))
                log.info("group %s: certificates issued only when the MDM allows (%s, timeout "
                         "%g s, fail %s)", g.name, _without_query(g.issuance_check.url),
                         g.issuance_check.timeout, "open" if g.issuance_check.fail_open
                         else "closed")
            async def crl_source(name: str = g.name) -> bytes:
                return (await crls.get(name)).der

            self.services[g.name] = ScepService(
                configs[g.name], runtime.pki.groups[g.name], runtime.pki.root,
                runtime.groups, runtime.store, self.executor, crypto=self.crypto,
                crl_source=crl_source if crls is not None else None,
                revoke=revocations.revoke if revocations is not None else None,
                issuance_check=checker,
            )

    def routes(self, app: web.Application) -> None:
        r = app.router
        for path in ("/scep/{group}", "/scep/{group}/{tail:.*}"):
            r.add_get(path, self.handle)
            r.add_post(path, self.handle)
        r.add_post("/api/v1/groups/{group}/challenges", self.create_challenge)

    async def close(self) -> None:
        """Stop the crypto workers (at shutdown)."""
        await self.crypto.close()
        await self.mdm.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def periodic(self) -> list[tuple[float, object, str]]:
        return [(60.0, self.housekeeping, "scep-housekeeping")]

    async def housekeeping(self) -> None:
        now = dt.datetime.now(dt.UTC)
        revocations = self.runtime.services.get("revocations")
        if revocations is not None:
            await revoke_due(self.runtime.store, revocations.revoke, now)
        age = dt.timedelta(days=self.runtime.settings.scep.max_pending_age_days)
        expired = await ScepStore(self.runtime.store).expire_pending(now - age, now)
        if expired:
            log.info("%d pending SCEP request(s) expired without a decision", expired)
        swept = await self.runtime.store.sweep_challenges(now)
        if swept:
            log.info("%d expired, never used SCEP challenge(s) deleted", swept)

    # -- SCEP -----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        service = self.services.get(group)
        raw_query = request.query_string
        op = _operation(raw_query)
        op_label = op if op in OPERATIONS else "unknown"
        if service is None:
            SCEP_REQUESTS.labels(group="unknown", operation=op_label, message_type="none",
                                 result="not_found").inc()
            return web.Response(status=404, text=f"no SCEP endpoint for group {group!r}\n")
        started = time.perf_counter()
        mtype, result = "none", "success"  # "none": GetCACaps / GetCACert carry no message
        try:
            if op == "GetCACaps":
                return web.Response(text=service.caps(), content_type="text/plain")
            if op == "GetCACert":
                body, ctype = service.ca_certs()
                return web.Response(body=body, content_type=ctype)
            if op != "PKIOperation":
                result = "bad_request"
                return web.Response(status=400, text=f"unsupported operation {op!r}\n")
            mtype = "unknown"  # until the pkiMessage decodes
            try:
                message = await self._message(request, raw_query)
                async with self.gates[group].slot():
                    reply = await service.pki_operation(message)
            except Shed as exc:  # before any work: the challenge is still unused
                result = "shed"
                return web.Response(status=503, text="SCEP busy, retry later\n",
                                    headers={"Retry-After": str(exc.retry_after)})
            except UndecodableRequest as exc:
                result = "bad_request"
                log.info("scep result=%s group=%s reason=%s: undecodable PKIOperation",
                         "bad_request", group, exc.reason)
                return web.Response(status=400, text=f"bad SCEP request: {exc.reason}\n")
            except CryptoUnavailable as exc:
                result = "unavailable"
                log.error("scep result=%s group=%s: PKIOperation not answered: %s", "unavailable",
                          group, exc)
                return web.Response(status=503, text="SCEP temporarily unavailable, retry\n",
                                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            mtype, result = reply.message_type, reply.result
            if reply.result == "failure":
                scep_refused(self.runtime, group, reply.reason, request.remote)
            return web.Response(body=reply.body, content_type=PKI_MESSAGE)
        except web.HTTPException:
            result = "bad_request"
            raise
        except (RequestPayloadError, HttpProcessingError) as exc:  # mis-encoded body
            result = "bad_request"
            return web.Response(status=400, text="unreadable request body: "
                                f"{type(exc.__cause__ or exc).__name__}\n")
        except Exception:  # never a 500 page for a client mistake we did not foresee
            result = "error"
            log.exception("scep result=%s group=%s operation=%s: failed", "error", group, op)
            return web.Response(status=400, text="bad SCEP request\n")
        finally:
            SCEP_REQUESTS.labels(group=group, operation=op_label, message_type=mtype,
                                 result=result).inc()
            SCEP_DURATION.labels(operation=op_label).observe(time.perf_counter() - started)

    async def _message(self, request: web.Request, raw_query: str) -> bytes:
        if request.method == "POST":
            body = await request.read()  # capped by [http] max_body_bytes (client_max_size): 413
            if not body:
                raise UndecodableRequest("empty POST body")
            return body
        return decode_get_message(raw_query)

    # -- admin API: dynamic challenges ----------------------------------------------------

    async def create_challenge(self, request: web.Request) -> web.Response:
        actor = self.admin.authorize(request)
        group = request.match_info["group"]
        if group not in self.services:
            return web.json_response({"error": f"unknown group {group!r}"}, status=404)
        secret = getattr(self.runtime.pki, "challenge_secret", None)
        if secret is None:
            return web.json_response({"error": "no challenge secret: run certgate init"}, status=503)
        body = await self.admin._body(request)  # noqa: SLF001 - same JSON rules as the admin API
        unknown = set(body) - {"ttl", "subject", "sans", "device_id", "key_types"}
        if unknown:
            return web.json_response({"error": f"unknown field(s) {sorted(unknown)}"}, status=400)
        try:
            sans = body.get("sans") or []
            key_types = body.get("key_types") or []
            for name, value in (("sans", sans), ("key_types", key_types)):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{name} must be a list of strings")
            for name in ("subject", "device_id"):
                if body.get(name) is not None and not isinstance(body[name], str):
                    raise ValueError(f"{name} must be a string")
            created = await create_dynamic(
                self.runtime.store, secret, group, now=dt.datetime.now(dt.UTC).replace(microsecond=0),
                actor=actor, ttl=parse_ttl(body.get("ttl")), subject_cn=body.get("subject"),
                sans=sans, device_id=body.get("device_id"), key_types=key_types,
            )
        except (ValueError, re.error) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except ChallengeUnavailable:
            return web.json_response({"error": "jti collision, retry"}, status=503)
        log.info("challenge created challenge=%s group=%s actor=%s expires=%s", created.jti, group,
                 actor, created.expires_at.isoformat())
        return web.json_response(created.to_json(), status=201)
