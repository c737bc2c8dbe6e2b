"""Two nodes on one PostgreSQL: a revoked certificate's session gets exactly one
Disconnect-Request, from the node that holds it (its accounting came to that node)."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

from certgate.sessions import SessionTracker
from radius.accounting import AccountingRecord, StatusType
from store import open_store
from tests.store_support import make_ca, make_record

from .test_coa_udp import SECRET, das, reply  # noqa: F401 (das: the fixture)


def _runtime(store, node: str, coa_port: int) -> SimpleNamespace:
    client = SimpleNamespace(name="nas1", secret=SECRET.decode(), coa_port=coa_port,
                             address=ipaddress.ip_network("127.0.0.1/32"))
    return SimpleNamespace(
        store=store, node_name=node,
        settings=SimpleNamespace(radius=SimpleNamespace(clients=[client]),
                                 revocation=SimpleNamespace(disconnect_on_revoke=True)),
    )


async def test_only_the_node_holding_the_session_disconnects(das, pg_url) -> None:  # noqa: F811
    proto, port = await das(lambda req, n: [reply(req)])
    store_a, store_b = await open_store(url=pg_url), await open_store(url=pg_url)
    try:
        record = make_record(make_ca())
        await store_a.record_certificate(record, "test")
        node_a = SessionTracker(_runtime(store_a, "a", port))  # type: ignore[arg-type]
        node_b = SessionTracker(_runtime(store_b, "b", port))  # type: ignore[arg-type]
        await node_a.record("nas1", AccountingRecord(
            identifier=1, authenticator=b"\0" * 16, status_type=StatusType.START,
            session_id="sess-1", nas_ip="127.0.0.1", nas_identifier="nas1",
            calling_station_id="AA-BB-CC-DD-EE-FF", user_name="dev",
            certificate=("staff", record.serial), proxy_state=()))
        revoked = await store_b.get(record.serial)
        assert revoked is not None
        # both nodes' revocation hooks run (each saw the revocation on the change feed)
        await node_b.disconnect_revoked(revoked)
        assert proto.received == []  # B does not hold the session: it sends nothing
        await node_a.disconnect_revoked(revoked)
        assert proto.valid == [True]  # exactly one Disconnect-Request, from A, verified by pyrad
        sessions = await node_b.sessions.active_sessions(record.serial)  # any node sees it
        assert [(s["acct_session_id"], s["node"]) for s in sessions] == [("sess-1", "a")]
    finally:
        await store_a.close()
        await store_b.close()
