"""Accounting sessions (RADIUS accounting -> store), on the shared store connection.

Kept apart from revocation/store.py so the store's own module stays about certificates;
every write holds the store's writer lock like the store's own methods.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from revocation.inventory import serial_hex
from revocation.store import Store, _ts, serialized


class SessionStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.write_lock = store.write_lock
        self._db = store._db  # noqa: SLF001 - same connection, same transactions

    @serialized
    async def upsert_session(self, client: str, acct_session_id: str, *, nas_ip: str | None,
                             nas_identifier: str | None, calling_station_id: str | None,
                             user_name: str | None, serial: int | None, group: str | None,
                             now: dt.datetime, stopped: bool) -> None:
        await self._db.execute(
            "INSERT INTO sessions (client, acct_session_id, nas_ip, nas_identifier, "
            "calling_station_id, user_name, serial, group_name, started_at, updated_at, "
            "stopped_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(client, acct_session_id) DO UPDATE SET updated_at=excluded.updated_at, "
            "stopped_at=excluded.stopped_at, "
            "serial=coalesce(sessions.serial, excluded.serial), "
            "group_name=coalesce(sessions.group_name, excluded.group_name), "
            "nas_ip=coalesce(excluded.nas_ip, sessions.nas_ip), "
            "nas_identifier=coalesce(excluded.nas_identifier, sessions.nas_identifier), "
            "calling_station_id=coalesce(excluded.calling_station_id, sessions.calling_station_id)",
            (client, acct_session_id, nas_ip, nas_identifier, calling_station_id, user_name,
             serial_hex(serial) if serial is not None else None, group, _ts(now), _ts(now),
             _ts(now) if stopped else None),
        )

    async def active_sessions(self, serial: int | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT client, acct_session_id, nas_ip, nas_identifier, calling_station_id, "
               "user_name, serial, group_name, started_at, updated_at FROM sessions "
               "WHERE stopped_at IS NULL")
        args: tuple = ()
        if serial is not None:
            sql += " AND serial=?"
            args = (serial_hex(serial),)
        async with self._db.execute(sql, args) as cur:
            rows = await cur.fetchall()
        keys = ("client", "acct_session_id", "nas_ip", "nas_identifier", "calling_station_id",
                "user_name", "serial", "group", "started_at", "updated_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    @serialized
    async def stop_sessions_of(self, client: str, nas_ip: str | None,
                               nas_identifier: str | None) -> int:
        """Accounting-On/Off: the NAS restarted, all its sessions ended."""
        cur = await self._db.execute(
            "UPDATE sessions SET stopped_at=updated_at WHERE client=? AND stopped_at IS NULL "
            "AND (nas_ip IS ? OR nas_identifier IS ?)",
            (client, nas_ip, nas_identifier),
        )
        return cur.rowcount

    @serialized
    async def record_disconnect(self, client: str, acct_session_id: str, result: str) -> None:
        await self._db.execute(
            "UPDATE sessions SET disconnect_result=? WHERE client=? AND acct_session_id=?",
            (result, client, acct_session_id),
        )
