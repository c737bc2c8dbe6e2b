"""The HTTP shell of a group's MDM issuance check (the decision: enrollment/issuance_check.py).

POST the signed query, read at most MAX_ANSWER_BYTES within ``issuance_webhook_timeout``,
hand status and bytes to `decide`; count the result, log it, and audit a refusal. Never
raises for the MDM's faults: a timeout or a refused connection is a decision too (fail
closed unless the group says otherwise).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
from prometheus_client import Counter

from certgate.mdm_client import MdmClient, read_bounded
from certgate.settings.mdm import IssuanceCheckSettings
from enrollment.issuance_check import (
    MAX_ANSWER_BYTES,
    DeviceIdSource,
    IssuanceDecision,
    IssuanceQuery,
    IssuanceReason,
    decide,
    failure,
    no_device_id,
    request_body,
)
from revocation import webhook

log = logging.getLogger("certgate.scep")

ISSUANCE_CHECKS = Counter("certgate_scep_issuance_checks_total",
                          "MDM issuance checks before a SCEP certificate, by result",
                          ["group", "result"])

class IssuanceChecker:
    """`Enroller`'s issuance_check for one group."""

    def __init__(self, group: str, cfg: IssuanceCheckSettings, source: DeviceIdSource,
                 client: MdmClient, *, audit: Callable[[], Any] | None = None) -> None:
        self.group = group
        self.cfg = cfg
        self.source = source
        self.client = client
        self.audit = audit  # -> the process's Audit (or None), looked up per refusal

    async def __call__(self, query: IssuanceQuery) -> IssuanceDecision:
        if query.device_id is None:
            decision = no_device_id(self.source)
        else:
            decision = await self._ask(query)
        ISSUANCE_CHECKS.labels(group=self.group, result=decision.result).inc()
        if decision.allowed and decision.reason is None:
            log.info("scep issuance check result=%s group=%s device_id=%s transaction=%s",
                     decision.result, self.group, query.device_id, query.transaction_id)
        elif decision.allowed:
            log.warning("scep issuance check result=%s group=%s device_id=%s transaction=%s "
                        "error=%s detail=%s: MDM error, issued anyway "
                        "(issuance_webhook_fail_open)", decision.result, self.group,
                        query.device_id, query.transaction_id, decision.reason, decision.detail)
        else:
            log.warning("scep issuance check result=%s group=%s device_id=%s transaction=%s "
                        "reason=%s detail=%s: not issued", decision.result, self.group,
                        query.device_id, query.transaction_id, decision.reason, decision.detail)
            self._audit_refusal(query, decision)
        return decision

    async def _ask(self, query: IssuanceQuery) -> IssuanceDecision:
        request_id = secrets.token_hex(16)
        body = request_body(query, request_id)
        headers = {"Content-Type": "application/json",
                   webhook.HEADER: webhook.sign(self.cfg.secret, body, dt.datetime.now(dt.UTC))}
        if self.cfg.token:
            headers["Authorization"] = f"Bearer {self.cfg.token}"
        fail_open = self.cfg.fail_open
        try:
            async with asyncio.timeout(self.cfg.timeout):
                async with self.client.session().post(self.cfg.url, data=body, headers=headers,
                                                      allow_redirects=False) as response:
                    answer, truncated = await read_bounded(response, MAX_ANSWER_BYTES)
                    status = response.status
        except TimeoutError:
            return failure(IssuanceReason.TIMEOUT, f"no answer within {self.cfg.timeout:g} s",
                           fail_open=fail_open)
        except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError) as exc:
            return failure(IssuanceReason.UNAVAILABLE, f"{type(exc).__name__}: {exc}"[:300],
                           fail_open=fail_open)
        return decide(status, answer, request_id, fail_open=fail_open, truncated=truncated)

    def _audit_refusal(self, query: IssuanceQuery, decision: IssuanceDecision) -> None:
        audit = self.audit() if self.audit is not None else None
        if audit is None or not audit.enabled:
            return
        from certgate.audit import events

        assert decision.reason is not None
        audit.emit(events.issuance_check_refused(
            now=dt.datetime.now(dt.UTC), group=self.group, reason=decision.reason.value,
            result=decision.result, detail=decision.detail, kind=query.kind,
            device_id=query.device_id, subject=query.subject,
            key_fingerprint=query.key_fingerprint, transaction_id=query.transaction_id,
            node=audit.node))
