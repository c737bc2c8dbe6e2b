"""An enrollment storm against a real `certgate serve`: every device gets its certificate,
the overflow a retryable 503 + Retry-After (never a FAILURE, never a burnt challenge), and
the shed requests are counted (issue 14 §4).

The group's capacity is squeezed on purpose (`max_concurrent = 1`, four may wait, for at
most 0.5 s), so a burst of 40 PKIOperations on 40 connections at once overflows it. The
clients are SCEP requests built by `enrollment.scep_client` (RSA-2048 keys, a one-time
dynamic challenge each, from the admin API), posted from 40 threads; each honours the
Retry-After it gets (capped at 3 s to bound the test) until it has its certificate.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AttributeOID, NameOID

from enrollment import scep_client
from enrollment.scep_types import PKIStatus
from tests.support import TOKEN, ServerProcess, certgate, write_config

DEVICES = 40
STORM = """
[scep]
workers = 1
max_concurrent = 1
max_queued = 4
queue_timeout = 0.5
"""


@dataclass
class Device:
    name: str
    key: rsa.RSAPrivateKey
    signer: x509.Certificate
    request: scep_client.ClientRequest
    answers: list[tuple[int, str | None]] = field(default_factory=list)  # status, Retry-After
    certificate: x509.Certificate | None = None


def _metric(server: ServerProcess, series: str) -> float:
    _, body = server.get("/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(series):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _challenge(server: ServerProcess, cn: str) -> str:
    status, body = server.post(
        "/api/v1/groups/staff/challenges", json.dumps({"ttl": "10m", "subject": cn}).encode(),
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert status == 201, body
    return json.loads(body)["challenge"]


def _device(server: ServerProcess, ra: x509.Certificate, i: int) -> Device:
    name = f"storm-{i:03d}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_attribute(AttributeOID.CHALLENGE_PASSWORD, _challenge(server, name).encode())
           .sign(key, hashes.SHA256()))
    signer = scep_client.self_signed_signer(key, subject, dt.datetime.now(dt.UTC))
    return Device(name, key, signer, scep_client.build_pkcs_req(csr, signer, key, ra))


def _enroll(server: ServerProcess, ra: x509.Certificate, device: Device,
            start: threading.Barrier, deadline: float) -> None:
    url = urllib.parse.urlsplit(server.http)
    start.wait()
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        try:
            conn.request("POST", "/scep/staff?operation=PKIOperation", device.request.der,
                         {"Content-Type": "application/x-pki-message"})
            reply = conn.getresponse()
            body = reply.read()
            retry_after = reply.getheader("Retry-After")
        finally:
            conn.close()
        device.answers.append((reply.status, retry_after))
        if reply.status != 503:
            assert reply.status == 200, (reply.status, body[:200])
            rep = scep_client.parse_cert_rep(body, device.signer, device.key, ra_cert=ra,
                                             request=device.request)
            assert rep.status is PKIStatus.SUCCESS, (device.name, rep.fail_info_text)
            device.certificate = rep.certificates[0]
            return
        assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1
        time.sleep(min(int(retry_after), 3))


def test_storm_overflow_is_shed_retryable_and_every_device_enrolls(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra=STORM)
    certgate("init", config=config)
    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        pki = tmp_path / "var" / "pki"
        ra = x509.load_pem_x509_certificate((pki / "groups/staff/ra.crt").read_bytes())
        devices = [_device(server, ra, i) for i in range(DEVICES)]
        shed_before = _metric(server, 'certgate_scep_shed_total{group="staff"')
        start = threading.Barrier(DEVICES)
        deadline = time.monotonic() + 90
        with ThreadPoolExecutor(DEVICES) as pool:
            for f in [pool.submit(_enroll, server, ra, d, start, deadline) for d in devices]:
                f.result()

        assert all(d.certificate is not None for d in devices), "a device never enrolled"
        sheds = sum(1 for d in devices for status, _ in d.answers if status == 503)
        assert sheds > 0, "the burst did not overflow a group capped at 1 + 4 waiting"
        assert _metric(server, 'certgate_scep_shed_total{group="staff"') - shed_before == sheds
        assert _metric(server, 'certgate_scep_requests_total{group="staff",message_type='
                               '"unknown",operation="PKIOperation",result="shed"}') == sheds
        # a shed request burnt nothing: one certificate per device, no replay, no FAILURE
        assert _metric(server, 'certgate_scep_challenge_failures_total{group="staff"') == 0
        assert _metric(server, 'certgate_scep_requests_total{group="staff",message_type='
                               '"PKCSReq",operation="PKIOperation",result="failure"}') == 0
        inventory = json.loads(certgate("certs", "list", "--json", config=config).stdout)
        issued = [c for c in inventory if c.get("group") == "staff"]
        assert len(issued) == DEVICES
        assert {d.certificate.serial_number for d in devices} == {
            int(c["serial"], 16) for c in issued}
        assert _metric(server, 'certgate_scep_in_progress{group="staff"}') == 0
        assert _metric(server, 'certgate_scep_queued{group="staff"}') == 0
        assert "PKIOperation shed (" in server.log()  # one rate-limited line, not one per 503
        assert server.log().count("PKIOperation shed (") <= 10
    finally:
        server.stop()
