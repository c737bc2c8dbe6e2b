"""Accounting sessions in the store, and Disconnect-Request when their certificate is revoked."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from prometheus_client import Counter

from certgate.runtime import Runtime
from certgate.settings import RadiusClientSettings
from radius.accounting import AccountingRecord, StatusType
from radius.coa import Session, send_disconnect
from store import SessionStore
from store.records import CertRecord

log = logging.getLogger("certgate.sessions")

MAX_CONCURRENT_DISCONNECTS = 32

COA_REQUESTS = Counter(
    "certgate_coa_requests_total", "Disconnect/CoA requests sent to NASes",
    ["client", "kind", "result"],
)


class SessionTracker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.sessions = SessionStore(runtime.store)
        self.node = runtime.node_name  # the node that holds a session sends its Disconnect
        self.clients: dict[str, RadiusClientSettings] = {
            c.name: c for c in runtime.settings.radius.clients
        }

    async def record(self, client: str, rec: AccountingRecord) -> None:
        """Accounting sink: durable before the Accounting-Response is sent."""
        store = self.sessions
        if rec.status_type in (StatusType.ACCOUNTING_ON, StatusType.ACCOUNTING_OFF):
            await store.stop_sessions_of(client, rec.nas_ip, rec.nas_identifier)
            return
        if not rec.session_id:
            return
        group, serial = rec.certificate or (None, None)
        await store.upsert_session(
            client, rec.session_id, nas_ip=rec.nas_ip, nas_identifier=rec.nas_identifier,
            calling_station_id=rec.calling_station_id, user_name=rec.user_name, serial=serial,
            group=group, now=dt.datetime.now(dt.UTC),
            stopped=rec.status_type == StatusType.STOP, node=self.node,
        )

    async def disconnect_revoked(self, cert: CertRecord) -> None:
        """Revocation hook: kick every active session authenticated by this certificate.

        Sessions are disconnected concurrently (a bounded number at a time): each NAS may
        take up to ~7 s of retransmissions to answer or time out."""
        if not self.runtime.settings.revocation.disconnect_on_revoke:
            return
        sessions = await self.sessions.active_sessions(cert.serial, node=self.node)
        limit = asyncio.Semaphore(MAX_CONCURRENT_DISCONNECTS)

        async def one(s: dict) -> None:
            async with limit:
                await self._disconnect_session(cert, s)

        await asyncio.gather(*(one(s) for s in sessions))

    async def _disconnect_session(self, cert: CertRecord, s: dict) -> None:
        client = self.clients.get(s["client"])
        if client is None or client.coa_port is None:
            log.warning("no coa_port configured, cannot disconnect session=%s client=%s",
                        s["acct_session_id"], s["client"])
            COA_REQUESTS.labels(client=s["client"], kind="disconnect", result="no_coa_port").inc()
            return
        host = s["nas_ip"] or str(client.address.network_address)
        try:
            result = await send_disconnect(
                host, client.coa_port, client.secret.encode(),
                Session(nas_ip_address=s["nas_ip"], nas_identifier=s["nas_identifier"],
                        calling_station_id=s["calling_station_id"],
                        acct_session_id=s["acct_session_id"]),
            )
            outcome = result.result
        except Exception:
            log.exception("Disconnect-Request failed client=%s", s["client"])
            outcome = "error"
        COA_REQUESTS.labels(client=s["client"], kind="disconnect", result=outcome).inc()
        await self.sessions.record_disconnect(s["client"], s["acct_session_id"], outcome)
        await self.runtime.store.audit(
            "coa", "disconnect", cert.serial, cert.group,
            {"client": s["client"], "session": s["acct_session_id"], "result": outcome},
        )
        log.info("Disconnect-Request serial=%s session=%s client=%s result=%s", cert.serial_hex,
                 s["acct_session_id"], s["client"], outcome)
