"""Accounting sessions (RADIUS accounting -> store). Each row names the node that received
its accounting, so after a revocation only that node sends the Disconnect-Request."""

from __future__ import annotations

import datetime as dt
from typing import Any

from store.records import serial_hex
from store.store import Store, observed, ts

_SESSION_KEYS = ("client", "acct_session_id", "nas_ip", "nas_identifier", "calling_station_id",
                 "user_name", "serial", "group", "started_at", "updated_at", "node")


class SessionStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.driver = store.driver

    @observed("upsert_session")
    async def upsert_session(self, client: str, acct_session_id: str, *, nas_ip: str | None,
                             nas_identifier: str | None, calling_station_id: str | None,
                             user_name: str | None, serial: int | None, group: str | None,
                             now: dt.datetime, stopped: bool, node: str | None = None) -> None:
        async with self.driver.transaction("upsert_session") as tx:
            await tx.execute(
                "INSERT INTO sessions (client, acct_session_id, nas_ip, nas_identifier, "
                "calling_station_id, user_name, serial, group_name, started_at, updated_at, "
                "stopped_at, node) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(client, acct_session_id) DO UPDATE SET "
                "updated_at=excluded.updated_at, stopped_at=excluded.stopped_at, "
                # a NAS may reuse an Acct-Session-Id for the station's next authentication
                # (hostapd does): the Class of the newest Start names the certificate now
                "serial=coalesce(excluded.serial, sessions.serial), "
                "group_name=coalesce(excluded.group_name, sessions.group_name), "
                "nas_ip=coalesce(excluded.nas_ip, sessions.nas_ip), "
                "nas_identifier=coalesce(excluded.nas_identifier, sessions.nas_identifier), "
                "calling_station_id=coalesce(excluded.calling_station_id, "
                "sessions.calling_station_id), node=coalesce(excluded.node, sessions.node)",
                (client, acct_session_id, nas_ip, nas_identifier, calling_station_id, user_name,
                 serial_hex(serial) if serial is not None else None, group, ts(now), ts(now),
                 ts(now) if stopped else None, node),
            )

    @observed("active_sessions")
    async def active_sessions(self, serial: int | None = None,
                              node: str | None = None,
                              group: str | None = None) -> list[dict[str, Any]]:
        """Sessions not stopped; of one certificate, of one group and/or held by one node when
        given."""
        sql = ("SELECT client, acct_session_id, nas_ip, nas_identifier, calling_station_id, "
               "user_name, serial, group_name, started_at, updated_at, node FROM sessions "
               "WHERE stopped_at IS NULL")
        args: list[Any] = []
        if serial is not None:
            sql += " AND serial=?"
            args.append(serial_hex(serial))
        if group is not None:
            sql += " AND group_name=?"
            args.append(group)
        if node is not None:
            sql += " AND (node=? OR node IS NULL)"  # NULL: recorded before v4, one node
            args.append(node)
        async with self.driver.reader("active_sessions") as tx:
            rows = await tx.fetchall(sql + " ORDER BY started_at", args)
        return [dict(zip(_SESSION_KEYS, r, strict=True)) for r in rows]

    @observed("missed_disconnects")
    async def missed_disconnects(self, node: str) -> list[dict[str, Any]]:
        """Sessions held by `node`, not stopped, never sent a Disconnect, whose certificate is
        revoked for good (not on hold): what a revocation made while no process of this node
        sent CoA (certgate down, or worker 0 restarting) left connected."""
        sql = ("SELECT s.client, s.acct_session_id, s.nas_ip, s.nas_identifier, "
               "s.calling_station_id, s.user_name, s.serial, s.group_name, s.started_at, "
               "s.updated_at, s.node FROM sessions s JOIN certificates c ON c.serial = s.serial "
               "WHERE s.stopped_at IS NULL AND s.disconnect_result IS NULL "
               "AND c.status='revoked' AND c.reason IS DISTINCT FROM 'certificateHold' "
               "AND (s.node=? OR s.node IS NULL) ORDER BY s.started_at")
        async with self.driver.reader("missed_disconnects") as tx:
            rows = await tx.fetchall(sql, (node,))
        return [dict(zip(_SESSION_KEYS, r, strict=True)) for r in rows]

    @observed("stop_sessions_of")
    async def stop_sessions_of(self, client: str, nas_ip: str | None,
                               nas_identifier: str | None) -> int:
        """Accounting-On/Off: the NAS restarted, all its sessions ended."""
        async with self.driver.transaction("stop_sessions_of") as tx:
            return await tx.execute(
                "UPDATE sessions SET stopped_at=updated_at WHERE client=? AND stopped_at IS NULL "
                "AND (nas_ip IS NOT DISTINCT FROM ? OR nas_identifier IS NOT DISTINCT FROM ?)",
                (client, nas_ip, nas_identifier))

    @observed("record_disconnect")
    async def record_disconnect(self, client: str, acct_session_id: str, result: str) -> None:
        async with self.driver.transaction("record_disconnect") as tx:
            await tx.execute(
                "UPDATE sessions SET disconnect_result=? WHERE client=? AND acct_session_id=?",
                (result, client, acct_session_id))
