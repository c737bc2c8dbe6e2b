"""config/grafana/certgate.json against a real Prometheus scraping a live `certgate serve`.

EAP-TLS authentications (an accept and a reject, radius.client), SCEP enrollments
(enrollment/scep_client.py with one-time challenges from the admin API), a revocation, OCSP
and CRL requests; then every target expression of every panel, with the template
variables substituted (All = `.*`, and real values), is evaluated through Prometheus's
HTTP API and must answer with at least one series. Also: the inventory gauge follows each
SCEP issuance at once, not on the 15 s timer.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp
from cryptography.x509.oid import AttributeOID, NameOID

from enrollment import scep_client
from enrollment.scep_types import PKIStatus
from radius import packet as rp
from radius.client import udp as eap_client
from tests.support import (
    REPO,
    SECRET,
    TOKEN,
    ServerProcess,
    certgate,
    free_port,
    require_tool,
    write_config,
)

pytestmark = pytest.mark.integration

DASHBOARD = REPO / "config" / "grafana" / "certgate.json"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
# Grafana's substitutions: `$__rate_interval` is at least 4 scrape intervals; 1m is what a
# 15 s scrape gives. Multi-value variables become a regex: All is allValue `.*`.
ALL = {"group": ".*", "client": ".*"}
REAL = {"group": "staff", "client": "loopback"}


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", "1m")
    for name, value in values.items():
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        binary = require_tool("prometheus")
        (workdir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: certgate\n"
            f'    static_configs: [{{targets: ["{target}"]}}]\n')
        self.port = free_port()
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # 400/422: a PromQL error, with its message
            return json.load(e)

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wait_for(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def gauge(server: ServerProcess, series: str) -> float | None:
    status, body = server.get("/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


class Enroller:
    """SCEP PKCSReq with one-time challenges, as a device behind an MDM would."""

    def __init__(self, server: ServerProcess, group: str) -> None:
        self.server, self.group = server, group
        status, body = server.get(f"/scep/{group}/pkiclient.exe?operation=GetCACert")
        assert status == 200
        certs = pkcs7.load_der_pkcs7_certificates(body)
        self.recipient = next(c for c in certs if isinstance(c.public_key(), rsa.RSAPublicKey)
                              and c.extensions.get_extension_for_class(x509.KeyUsage)
                              .value.key_encipherment)

    def enroll(self, cn: str, challenge: str | None = None) -> PKIStatus:
        if challenge is None:
            status, body = self.server.post(f"/api/v1/groups/{self.group}/challenges",
                                            b'{"ttl": "1h"}', AUTH)
            assert status == 201, body
            challenge = json.loads(body)["challenge"]
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
               .add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
               .sign(key, hashes.SHA256()))
        signer = scep_client.self_signed_signer(key, subject, dt.datetime.now(dt.UTC))
        req = scep_client.build_pkcs_req(csr, signer, key, self.recipient)
        status, reply = self.server.post(
            f"/scep/{self.group}/pkiclient.exe?operation=PKIOperation", req.der,
            {"Content-Type": "application/x-pki-message"})
        assert status == 200, reply
        rep = scep_client.parse_cert_rep(reply, signer, key, ra_cert=self.recipient, request=req)
        return rep.status


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("dashboard")
    prometheus_binary = require_tool("prometheus")  # skip (or fail in CI) before any work
    assert prometheus_binary
    config = write_config(work / "cg")
    certgate("init", config=config)
    clients = work / "cg" / "clients"
    for cn in ("dash-ok", "dash-revoked"):
        certgate("certs", "issue", "--group", "staff", "--cn", cn, "--out", str(clients),
                 config=config)
    server = ServerProcess(config, work / "serve.log").start()
    prometheus = Prometheus(work, server.http.removeprefix("http://"))
    try:
        yield server, prometheus, work
    finally:
        prometheus.stop()
        code = server.stop()
        log = server.log()
        assert "Traceback" not in log, log[-3000:]
        assert code == 0, log[-3000:]


def test_inventory_gauge_follows_each_issuance(live) -> None:
    """Three SCEP issuances through the running server, each seen in
    certgate_certificates{status="active"} within 2.5 s. The periodic refresh runs every
    15 s, so over these < 15 s it could explain at most one of the three steps."""
    server, _, _ = live
    series = 'certgate_certificates{group="guests",status="active"}'
    enroller = Enroller(server, "guests")
    wait_for("the initial inventory gauge", lambda: gauge(server, series) is not None, 5)
    start = gauge(server, series)
    began = time.monotonic()
    for n in range(1, 4):
        assert enroller.enroll(f"gauge-{n}") is PKIStatus.SUCCESS
        wait_for(f"{series} == {start + n}", lambda n=n: gauge(server, series) == start + n, 2.5)
    assert time.monotonic() - began < 15


def test_every_panel_query_returns_series(live) -> None:
    server, prometheus, work = live
    pki, clients = work / "cg" / "var" / "pki", work / "cg" / "clients"
    root = str(pki / "root.crt")

    # revoke one device certificate through the admin API, then authenticate both
    revoked = x509.load_pem_x509_certificate((clients / "dash-revoked.crt").read_bytes())
    status, body = server.post(f"/api/v1/certificates/{revoked.serial_number:x}/revoke",
                               b'{"reason": "keyCompromise"}', AUTH)
    assert status == 200, body
    for cn, want in (("dash-ok", 2), ("dash-ok", 2), ("dash-revoked", 3)):
        outcome, _ = eap_client.authenticate(
            *server.radius, SECRET.encode(), ca_file=root, cert_file=str(clients / f"{cn}.chain.pem"),
            key_file=str(clients / f"{cn}.key"), identity=cn.encode(), tls="1.2", timeout=5.0)
        assert outcome.reply_code == want, (cn, outcome)

    # SCEP: GetCACaps, two enrollments, one refused (unknown challenge)
    assert server.get("/scep/staff/pkiclient.exe?operation=GetCACaps")[0] == 200
    enroller = Enroller(server, "staff")
    assert enroller.enroll("dash-scep-1") is PKIStatus.SUCCESS
    assert enroller.enroll("dash-scep-2") is PKIStatus.SUCCESS
    assert enroller.enroll("dash-scep-3", challenge="not-a-challenge") is PKIStatus.FAILURE

    # relying parties: a CRL and an OCSP answer for the revoked certificate
    assert server.get("/crl/staff.crl")[0] == 200
    ca = x509.load_pem_x509_certificates((clients / "dash-revoked.chain.pem").read_bytes())[1]
    der = (ocsp.OCSPRequestBuilder().add_certificate(revoked, ca, hashes.SHA1()).build()
           .public_bytes(serialization.Encoding.DER))
    assert server.post("/ocsp/staff", der, {"Content-Type": "application/ocsp-request"})[0] == 200

    # Prometheus has scraped all of it (and twice more, so rate() has two samples)
    def scraped() -> bool:
        for expr in ('certgate_certificates_issued_total{group="staff"} >= 2',
                     'certgate_eap_authentications_total{result="accept",group="staff"} >= 2',
                     'certgate_eap_authentications_total{result="reject",reason="revoked"} > 0',
                     'count_over_time(certgate_store_up[1m]) > 3'):
            r = prometheus.query(expr)
            if r.get("status") != "success" or not r["data"]["result"]:
                return False
        return True

    wait_for("Prometheus to scrape certgate", scraped, 30)

    # the template variables' label_values() queries (Grafana runs them as series lookups)
    for metric, label, want in (("certgate_certificates", "group", {"staff", "guests"}),
                                ("certgate_radius_requests_total", "client", {"loopback"})):
        values = prometheus.api(f"label/{label}/values", **{"match[]": metric})["data"]
        assert want <= set(values), (metric, label, values)
    variables = {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}
    assert variables["group"]["definition"] == "label_values(certgate_certificates, group)"
    assert variables["client"]["definition"] == \
        "label_values(certgate_radius_requests_total, client)"

    exprs = dashboard_exprs()
    assert len(exprs) > 40
    failures = []
    for values in (ALL, REAL):
        for title, expr in exprs:
            query = substitute(expr, values)
            answer = prometheus.query(query)
            if answer.get("status") != "success":
                failures.append(f"{title}: {query}\n    error: {answer.get('error')}")
            elif not answer["data"]["result"]:
                failures.append(f"{title}: {query}\n    no series")
    assert not failures, f"{len(failures)} panel queries failed:\n" + "\n".join(failures)


def test_missing_message_authenticator_drop_is_one_stat(live) -> None:
    """The at-a-glance stat counts a real drop: an Access-Request without
    Message-Authenticator from the configured client."""
    server, prometheus, _ = live
    auth = os.urandom(16)
    attrs = [(rp.Attr.USER_NAME, b"no-ma")] + rp.eap_message_attributes(b"\x02\x01\x00\x06\x01x")
    body = b"".join(bytes([t, len(v) + 2]) + v for t, v in attrs)
    datagram = bytes([1, 7]) + (20 + len(body)).to_bytes(2, "big") + auth + body
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(datagram, server.radius)
    stat = next(t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"]
                if p["title"].startswith("Missing Message-Authenticator")
                for t in p["targets"])

    def counted() -> bool:
        r = prometheus.query(substitute(stat, REAL))
        return bool(r["data"]["result"]) and float(r["data"]["result"][0]["value"][1]) > 0

    wait_for("the missing Message-Authenticator stat to count the drop", counted, 15)
    assert re.search(r'reason="missing_message_authenticator"', stat)
