"""Request bodies that arrive in several pieces are read whole (webhook, OCSP POST)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from certgate.app import build_runtime
from certgate.features import mount
from certgate.settings import load_settings
from certgate.web import build_app
from revocation import webhook
from tests.support import WEBHOOK_SECRET, certgate, write_config


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    """The body in two chunks with a pause between them (chunked transfer encoding)."""
    half = len(data) // 2
    yield data[:half]
    await asyncio.sleep(0.2)
    yield data[half:]


async def test_webhook_and_ocsp_bodies_sent_in_pieces(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cg", extra="\n[scep]\nworkers = 0\n")
    certgate("init", config=config)
    out = tmp_path / "o"
    serial = certgate("certs", "issue", "--group", "staff", "--cn", "d1", "--out", str(out),
                      "--device-id", "DEV-1", config=config).stdout.strip()
    runtime = await build_runtime(load_settings(config))
    app = build_app(runtime, 1 << 20)
    await mount(runtime, app)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        cert = x509.load_pem_x509_certificate((out / "d1.crt").read_bytes())
        issuer = runtime.pki.groups["staff"].certificate
        der = (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
               .public_bytes(serialization.Encoding.DER))
        resp = await client.post("/ocsp/staff", data=_pieces(der),
                                 headers={"Content-Type": "application/ocsp-request"})
        answer = ocsp.load_der_ocsp_response(await resp.read())
        assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD

        body = json.dumps({"device_id": "DEV-1", "event": "device-removed",
                           "event_id": "evt-1"}).encode()
        signature = webhook.sign(WEBHOOK_SECRET, body, dt.datetime.now(dt.UTC))
        resp = await client.post("/api/v1/webhooks/device-removed", data=_pieces(body),
                                 headers={webhook.HEADER: signature,
                                          "Content-Type": "application/json"})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["revoked"] == [serial.lower()]
    finally:
        await client.close()
        await runtime.store.close()
