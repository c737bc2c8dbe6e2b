"""The MDM HTTP shells against a real aiohttp server on loopback: the issuance check (signed
POST, budgets, timeout, redirects) and the reconciliation fetch (pages, failures)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from aiohttp import web

from certgate.issuance_check import IssuanceChecker
from certgate.mdm_client import MdmClient
from certgate.reconcile import fetch_enrolled
from certgate.settings.mdm import IssuanceCheckSettings, MdmSettings
from enrollment.issuance_check import (
    MAX_ANSWER_BYTES,
    IssuanceQuery,
    parse_device_id_source,
)
from revocation import webhook
from revocation.reconcile import FetchFailed

SECRET = "issuance-secret-0123456789"


async def serve(handler, path: str = "/hook") -> tuple[web.AppRunner, str]:  # noqa: ANN001
    app = web.Application()
    app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    return runner, f"http://127.0.0.1:{port}{path}"


def query(device_id: str | None = "D1") -> IssuanceQuery:
    return IssuanceQuery("staff", "enrollment", device_id, "CN=x", "x", (), "ec-p256",
                         bytes(32), "tx")


async def check_with(handler, **cfg) -> tuple:  # noqa: ANN001, ANN003
    runner, url = await serve(handler)
    client = MdmClient()
    checker = IssuanceChecker("zmdm", IssuanceCheckSettings(url=url, secret=SECRET, **cfg),
                              parse_device_id_source("challenge"), client)
    try:
        return await checker(query())
    finally:
        await client.close()
        await runner.cleanup()


async def test_signed_request_and_allow() -> None:
    seen: list[tuple[dict, str | None]] = []

    async def mdm(request: web.Request) -> web.Response:
        body = await request.read()
        webhook_ok = True
        try:  # the inbound verifier's header and MAC rules (its body rules are for events)
            webhook.verify(SECRET, request.headers.get(webhook.HEADER), body,
                           dt.datetime.now(dt.UTC))
        except webhook.WebhookRejected as exc:
            webhook_ok = exc.reason is webhook.RejectReason.MALFORMED  # MAC passed, not an event
        assert webhook_ok
        seen.append((json.loads(body), request.headers.get("Authorization")))
        return web.json_response({"decision": "allow"})

    d = await check_with(mdm, token="bearer-0123456789abcdef")
    assert d.allowed and d.result == "allowed"
    (body, auth), = seen
    assert body["device_id"] == "D1" and auth == "Bearer bearer-0123456789abcdef"


async def test_timeout_oversize_redirect_and_refused_connection_fail_closed() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"decision": "allow"})

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b'{"decision": "allow", "pad": "' + b"x" * MAX_ANSWER_BYTES
                            + b'"}', content_type="application/json")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:9/elsewhere")

    d = await check_with(slow, timeout=0.3)
    assert (d.allowed, d.result) == (False, "timeout")
    d = await check_with(huge)
    assert (d.allowed, d.result) == (False, "bad_answer")
    d = await check_with(redirect)
    assert (d.allowed, d.result) == (False, "bad_answer")
    d = await check_with(slow, timeout=0.3, fail_open=True)
    assert (d.allowed, d.result) == (True, "failed_open")

    client = MdmClient()
    refused = IssuanceChecker("zmdm", IssuanceCheckSettings(url="http://127.0.0.1:9/x",
                                                            secret=SECRET),
                              parse_device_id_source("challenge"), client)
    try:
        d = await refused(query())
        assert (d.allowed, d.result) == (False, "unavailable")
        d = await refused(query(None))
        assert (d.allowed, d.result) == (False, "no_device_id")
    finally:
        await client.close()


async def test_fetch_follows_pages_and_fails_whole() -> None:
    state = {"fail": False}

    async def devices(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer tok-0123456789abcdef"
        cursor = request.query.get("cursor")
        assert request.query.get("tenant") == "7"  # the configured query is kept
        if cursor is None:
            return web.json_response({"devices": ["a", "b"], "next_cursor": "2"})
        if state["fail"]:
            return web.Response(status=503)
        return web.json_response({"devices": ["c"], "next_cursor": None, "total": 3})

    runner, url = await serve(devices, "/devices")
    client = MdmClient()
    mdm = MdmSettings(reconcile_url=url + "?tenant=7", reconcile_token="tok-0123456789abcdef",
                      reconcile_groups=("staff",), reconcile_timeout=2)
    try:
        assert await fetch_enrolled(mdm, client) == frozenset("abc")
        state["fail"] = True
        try:
            await fetch_enrolled(mdm, client)
        except FetchFailed as exc:
            assert exc.reason == "http_status"
        else:
            raise AssertionError("a failed page must fail the fetch")
    finally:
        await client.close()
        await runner.cleanup()


async def test_run_pass_on_a_real_store(tmp_path) -> None:  # noqa: ANN001
    """fetch -> plan -> revoke through the callable; the brake; a store outage stops the pass."""
    from certgate.reconcile import run_pass
    from store import StoreUnavailable, open_store
    from tests.store_support import make_ca, make_record

    listed = {"devices": [f"D{i}" for i in range(1, 30)]}

    async def devices(request: web.Request) -> web.Response:
        return web.json_response(listed)

    runner, url = await serve(devices, "/devices")
    client = MdmClient()
    store = await open_store(tmp_path / "s.sqlite")
    ca = make_ca()
    for i in range(30):
        await store.record_certificate(make_record(ca, cn=f"d{i}", device_id=f"D{i}", days=3650),
                                       "test")
    mdm = MdmSettings(reconcile_url=url, reconcile_token="tok-0123456789abcdef",
                      reconcile_groups=("staff",), reconcile_min_age=0)
    revoked: list[int] = []

    async def revoke(c, plan_) -> bool:  # noqa: ANN001
        revoked.append(c.serial)
        return (await store.revoke(c.serial, "cessationOfOperation", "reconcile")).changed

    try:
        result = await run_pass(mdm, store, client, revoke)
        assert result.result == "ok" and [c.device_id for c in result.revoked] == ["D0"]
        listed["devices"] = [f"D{i}" for i in range(5, 30)]  # 4 more of 29: brake
        result = await run_pass(mdm, store, client, revoke)
        assert result.result == "braked" and result.revoked == [] and len(revoked) == 1
        assert len(result.plan.revocations) == 4
        dry = await run_pass(mdm, store, client, revoke, apply=False, confirmed=True)
        assert dry.revoked == [] and len(revoked) == 1

        async def down(c, plan_) -> bool:  # noqa: ANN001
            revoked.append(c.serial)
            raise StoreUnavailable("revoke", "database is locked")

        result = await run_pass(mdm, store, client, down, confirmed=True)
        assert result.result == "store_error" and len(result.failed) == 4
        assert len(revoked) == 2  # stopped at the first failure
        result = await run_pass(mdm, store, client, revoke, confirmed=True)
        assert result.result == "ok" and len(result.revoked) == 4
    finally:
        await client.close()
        await store.close()
        await runner.cleanup()


async def test_https_mdm_is_verified_against_ca_file(tmp_path) -> None:  # noqa: ANN001
    """[mdm] ca_file: an https:// MDM whose certificate that CA issued answers; without it
    (system CAs) the TLS handshake fails and the check fails closed."""
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test MDM")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "mdm.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "mdm.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "mdm.crt", tmp_path / "mdm.key")

    async def mdm(request: web.Request) -> web.Response:
        return web.json_response({"decision": "allow"})

    app = web.Application()
    app.router.add_post("/hook", mdm)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    cfg = IssuanceCheckSettings(url=f"https://127.0.0.1:{port}/hook", secret=SECRET)
    try:
        for ca_file, expected in ((tmp_path / "mdm.crt", "allowed"), (None, "unavailable")):
            client = MdmClient(ca_file)
            try:
                d = await IssuanceChecker("zmdm", cfg, parse_device_id_source("challenge"),
                                          client)(query())
            finally:
                await client.close()
            assert d.result == expected, d.detail
    finally:
        await runner.cleanup()
