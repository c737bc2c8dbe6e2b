"""Accounting sessions in the store, and Dynamic Authorization (RFC 5176) when their
certificate's standing changes: Disconnect on revocation, CoA into the group's quarantine on a
hold, CoA back on release, CoA with new attributes when a reload changes a group's VLAN or
Filter-Id. What to send is decided by ``radius.dynamic_auth`` (pure); this is the shell that
sends it, counts it, and audits it."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable

from prometheus_client import Counter

from certgate.runtime import Runtime
from certgate.settings import RadiusClientSettings
from radius import dynamic_auth as da
from radius.accounting import AccountingRecord, StatusType
from radius.coa import CoaResult, Session, send_coa, send_disconnect
from store import SessionStore
from store.records import CertRecord, serial_hex

log = logging.getLogger("certgate.sessions")

MAX_CONCURRENT_REQUESTS = 32
MAX_CONCURRENT_DISCONNECTS = MAX_CONCURRENT_REQUESTS  # the name before CoA

COA_REQUESTS = Counter(
    "certgate_coa_requests_total", "Disconnect/CoA requests sent to NASes, by final result",
    ["client", "kind", "result"],
)
COA_RETRANSMISSIONS = Counter(
    "certgate_coa_retransmissions_total", "Disconnect/CoA datagrams sent again (no answer yet)",
    ["client", "kind"],
)
COA_FALLBACKS = Counter(
    "certgate_coa_fallbacks_total", "CoA-Requests NAKed or unanswered, followed by a "
    "Disconnect-Request", ["client"],
)


class SessionTracker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.sessions = SessionStore(runtime.store)
        self.node = runtime.node_name  # the node that holds a session sends its requests
        radius = runtime.settings.radius
        self.clients: dict[str, RadiusClientSettings] = {c.name: c for c in radius.clients}
        self.source: str | None = getattr(radius, "coa_source_address", None)
        self.timeout: float = getattr(radius, "coa_timeout", 1.0)
        self.attempts: int = getattr(radius, "coa_attempts", 3)
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)
        self.sends_coa = True  # False on workers other than 0 (certgate/worker.py)

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

    # -- the revocation service's hooks ---------------------------------------------------

    async def disconnect_revoked(self, cert: CertRecord) -> None:
        """Final revocation: kick every active session authenticated by this certificate.

        Sessions are handled concurrently (a bounded number at a time): each NAS may take up
        to ~7 s of retransmissions to answer or time out."""
        await self._certificate(cert, da.Change.REVOKE)

    async def quarantine_held(self, cert: CertRecord) -> None:
        """certificateHold: its sessions move to the group's quarantine (or are disconnected
        in a group without one)."""
        await self._certificate(cert, da.Change.HOLD)

    async def restore_released(self, cert: CertRecord) -> None:
        """Hold released: its sessions move back to the group's own attributes."""
        await self._certificate(cert, da.Change.RELEASE)

    async def disconnect_missed(self) -> int:
        """Once at start (on the process that sends CoA): Disconnect every live session of a
        certificate revoked while nothing of this node was sending them (the server down and
        the CLI revoking, or worker 0 restarting). Sessions already sent a Disconnect, on
        hold, or stopped are left alone. Returns how many sessions were tried."""
        if not self.sends_coa or not self.runtime.settings.revocation.disconnect_on_revoke:
            return 0
        sessions = await self.sessions.missed_disconnects(self.node)
        if sessions:
            log.info("%d live session(s) of certificates revoked while no Disconnect could be "
                     "sent: disconnecting them now", len(sessions))
        await self._all((s, da.Change.REVOKE, s["group"], s["serial"], False)
                        for s in sessions if s["group"])
        return len(sessions)

    async def reauthorize_groups(self, groups: Iterable[str]) -> None:
        """A reload changed these groups' VLAN / Filter-Id / quarantine: every active session
        of theirs held by this node gets the attributes it should have now."""
        if not self.sends_coa:
            return
        sessions: list[dict] = []
        for group in groups:
            sessions += await self.sessions.active_sessions(node=self.node, group=group)
        revoked = self.runtime.revoked
        work = []
        for s in sessions:
            serial = int(s["serial"], 16) if s["serial"] else None
            if not s["group"] or serial is None:
                continue
            held = revoked.is_held(s["group"], serial)
            if revoked.is_revoked(s["group"], serial) and not held:
                continue  # revoked for good: disconnected then, nothing to re-authorize
            work.append((s, da.Change.REAUTHORIZE, s["group"], s["serial"], held))
        await self._all(work)

    async def _certificate(self, cert: CertRecord, change: da.Change) -> None:
        if not self.sends_coa:
            return
        sessions = await self.sessions.active_sessions(cert.serial, node=self.node)
        await self._all((s, change, cert.group, cert.serial_hex, False) for s in sessions)

    async def _all(self, work: Iterable[tuple[dict, da.Change, str, str | None, bool]]) -> None:
        async def one(item: tuple[dict, da.Change, str, str | None, bool]) -> None:
            async with self._limit:
                await self._session(*item)

        await asyncio.gather(*(one(item) for item in work))

    # -- one session ------------------------------------------------------------------------

    async def _session(self, s: dict, change: da.Change, group: str, serial: str | None,
                       held: bool) -> None:
        table = self.runtime.groups.by_name(group) if hasattr(self.runtime, "groups") else None
        reply = table.reply if table is not None else None
        step = da.first_step(change, reply, held=held) if reply is not None else da.DISCONNECT
        disconnect = self.runtime.settings.revocation.disconnect_on_revoke
        while step is not None:
            if step.kind == "disconnect" and not disconnect:
                log.info("Disconnect-Request not sent ([revocation] disconnect_on_revoke = "
                         "false) serial=%s session=%s change=%s", serial, s["acct_session_id"],
                         change)
                return
            outcome = await self._send(s, step)
            if step.fallback:
                COA_FALLBACKS.labels(client=s["client"]).inc()
            await self._record(s, change, group, serial, step, outcome)
            step = da.next_step(step, outcome)

    async def _send(self, s: dict, step: da.Step) -> str:
        client = self.clients.get(s["client"])
        if client is None or client.coa_port is None:
            log.warning("no coa_port configured, cannot send a %s for session=%r client=%s",
                        step.kind, s["acct_session_id"], s["client"])
            COA_REQUESTS.labels(client=s["client"], kind=step.kind, result="no_coa_port").inc()
            return "no_coa_port"
        host = s["nas_ip"] or str(client.address.network_address)
        session = Session(nas_ip_address=s["nas_ip"], nas_identifier=s["nas_identifier"],
                          calling_station_id=s["calling_station_id"],
                          acct_session_id=s["acct_session_id"])
        common = {"timeout": self.timeout, "retries": self.attempts, "source": self.source}
        try:
            if step.kind == "coa":
                result = await send_coa(host, client.coa_port, client.secret.encode(), session,
                                        step.attributes, **common)
            else:
                result = await send_disconnect(host, client.coa_port, client.secret.encode(),
                                               session, **common)
            outcome = result.result
        except Exception:
            log.exception("%s-Request failed client=%s", step.kind, s["client"])
            result, outcome = CoaResult("timeout"), "error"
        COA_REQUESTS.labels(client=s["client"], kind=step.kind, result=outcome).inc()
        if result.attempts > 1:
            COA_RETRANSMISSIONS.labels(client=s["client"], kind=step.kind).inc(result.attempts - 1)
        if outcome == "nak":
            log.info("%s NAK from client=%s session=%r Error-Cause=%s", step.kind, s["client"],
                     s["acct_session_id"], result.error_cause)
        return outcome

    async def _record(self, s: dict, change: da.Change, group: str, serial: str | None,
                      step: da.Step, outcome: str) -> None:
        kind = "coa" if step.kind == "coa" else "disconnect"
        if kind == "disconnect":
            await self.sessions.record_disconnect(s["client"], s["acct_session_id"], outcome)
        details = {"client": s["client"], "session": s["acct_session_id"], "result": outcome,
                   "change": str(change)}
        if step.fallback:
            details["fallback"] = True
        if kind == "coa":
            details["attributes"] = _describe(step.attributes)
        await self.runtime.store.audit(
            "coa", kind, int(serial, 16) if serial else None, group, details)
        log.info("%s-Request serial=%s session=%r client=%s change=%s result=%s%s",
                 "CoA" if kind == "coa" else "Disconnect", serial, s["acct_session_id"],
                 s["client"], change, outcome, " (fallback)" if step.fallback else "")


def _describe(attrs: tuple[tuple[int, bytes], ...]) -> dict[str, str]:
    from radius.reply import describe

    return {str(a["name"]): str(a["value"]) for a in describe(list(attrs))}


__all__ = ["COA_FALLBACKS", "COA_REQUESTS", "COA_RETRANSMISSIONS", "SessionTracker",
           "serial_hex"]
