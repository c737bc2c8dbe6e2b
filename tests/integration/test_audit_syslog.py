"""The audit stream's syslog transport against a real rsyslogd (Debian `rsyslog`,
`rsyslog-openssl`), started by the test as a child on free loopback ports: imudp, imptcp
(plain TCP) and imtcp with the ossl stream driver (TLS, a server certificate made here).
rsyslog writes each message it received (its parsed PRI, MSGID and STRUCTURED-DATA and
the raw message) to a file; the test parses them back: every SD-PARAM equals the event's
field, and a value with a newline arrives whole over the streams (octet counting).
Then `certgate serve` with `[audit] syslog = "udp://..."` and a refused admin token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import glob
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certgate.audit import events
from certgate.audit.syslog import SyslogSink
from tests.support import IN_CI, ServerProcess, certgate, free_port, write_config
from tests.syslog_support import flat_strings, make_tls_files, parse

pytestmark = pytest.mark.integration

RECORD_END = "\n<<<end of record>>>\n"
TEMPLATE = """
template(name="rec" type="list") {
  constant(value="{\\"pri\\":\\"") property(name="pri")
  constant(value="\\",\\"msgid\\":\\"") property(name="msgid" format="json")
  constant(value="\\",\\"input\\":\\"") property(name="inputname" format="json")
  constant(value="\\",\\"sd\\":\\"") property(name="structured-data" format="json")
  constant(value="\\",\\"raw\\":\\"") property(name="rawmsg" format="json")
  constant(value="\\"}%s")
}
""" % RECORD_END.replace("\n", "\\n")  # noqa: UP031 - braces everywhere in the template


def _require_rsyslog() -> str:
    path = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")
    ossl = glob.glob("/usr/lib/*/rsyslog/lmnsd_ossl.so") + glob.glob("/usr/lib/rsyslog/lmnsd_ossl.so")
    missing = [what for what, ok in (("rsyslogd (rsyslog)", path), ("the rsyslog ossl "
               "stream driver (rsyslog-openssl)", ossl)) if not ok]
    if missing:
        if IN_CI:
            pytest.fail(f"{' and '.join(missing)} required in CI "
                        "(scripts/install-test-deps.sh installs them)")
        pytest.skip(f"{' and '.join(missing)} not installed (run `make deps` as root)")
    assert path is not None
    return path


@dataclass
class Rsyslog:
    udp: int
    tcp: int
    tls: int
    ca: Path
    out: Path
    proc: subprocess.Popen

    def records(self) -> list[dict]:
        if not self.out.exists():
            return []
        text = self.out.read_text(encoding="utf-8")
        return [json.loads(r, strict=False) for r in text.split(RECORD_END)[:-1]]

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(got := self.records()) < n:
            assert self.proc.poll() is None, "rsyslogd exited"
            assert time.monotonic() < deadline, f"{len(got)} of {n} messages:\n{got}"
            time.sleep(0.05)
        return got


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    binary = _require_rsyslog()
    d = tmp_path / "rsyslog"
    (d / "work").mkdir(parents=True)
    ca, cert, key = make_tls_files(d, "server")
    udp, tcp, tls = free_port(socket.SOCK_DGRAM), free_port(), free_port()
    out = d / "received.txt"
    conf = d / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{d / 'work'}" maxMessageSize="64k"
       parser.escapeControlCharactersOnReceive="off"
       DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}"
       DefaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
module(load="imptcp")
module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
{TEMPLATE}
ruleset(name="audit") {{ action(type="omfile" file="{out}" template="rec") }}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="audit")
input(type="imptcp" address="127.0.0.1" port="{tcp}" ruleset="audit")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="audit")
""")
    log = (d / "rsyslogd.log").open("wb")
    proc = subprocess.Popen([binary, "-n", "-f", str(conf), "-i", str(d / "rsyslogd.pid")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not all(_listening(p) for p in (tcp, tls)):  # inputs are open once these are
            assert proc.poll() is None, (d / "rsyslogd.log").read_text()
            assert time.monotonic() < deadline, "rsyslogd did not listen"
            time.sleep(0.05)
        yield Rsyslog(udp, tcp, tls, ca, out, proc)
    finally:
        proc.terminate()  # by the PID we started
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _events() -> list[dict]:
    now = dt.datetime.now(dt.UTC)
    return [
        events.authentication(
            now=now, accepted=False, reason="revoked", client="ap-1", group="staff",
            tls_version="1.3", calling_station="AA-BB-CC-DD-EE-FF", identity="laptop-01",
            serial=0x1A2B3C, resumed=False, round_trips=7, duration_ms=12.3,
            detail='line one\nline two ] "quoted" \\ é', node="n1:1812"),
        events.admin_auth_failure(now=now, reason="bad_token", source_ip="127.0.0.1",
                                  path="/api/v1/certificates", node="n1:1812"),
        events.config_loaded(now=now, path="/etc/certgate/certgate.toml", sha256="ab" * 32,
                             groups=["staff", "guests"], node="n1:1812"),
    ]


async def _send(url: str, ca: Path | None, evs: list[dict]) -> list[str]:
    results: list[str] = []
    sink = SyslogSink(url, ca_file=str(ca) if ca else None, hostname="n1:1812",
                      facility="local4", on_drop=results.append)
    await sink.start()
    for ev in evs:
        sink.emit(ev)
    await sink.aclose()
    return results


def test_udp_tcp_tls_into_rsyslog(rsyslog: Rsyslog) -> None:
    evs = _events()
    sent = [
        ("imudp", asyncio.run(_send(f"udp://127.0.0.1:{rsyslog.udp}", None, evs))),
        ("imptcp", asyncio.run(_send(f"tcp://127.0.0.1:{rsyslog.tcp}", None, evs))),
        ("imtcp", asyncio.run(_send(f"tls://127.0.0.1:{rsyslog.tls}", rsyslog.ca, evs))),
    ]
    assert all(results == ["written"] * len(evs) for _, results in sent), sent
    records = rsyslog.wait_for(3 * len(evs))
    assert len(records) == 3 * len(evs), records  # a newline in a value split nothing
    for record in records:
        p = parse(record["raw"].encode("utf-8"))
        ev = next(e for e in evs if e["event"]["action"] == p.msgid)
        severity = 4 if ev["log"]["level"] == "warning" else 6
        assert int(record["pri"]) == p.pri == 20 * 8 + severity  # local4
        assert record["msgid"] == ev["event"]["action"]  # as rsyslog parsed it
        assert record["sd"].encode("utf-8") == p.sd_raw
        assert p.sd_id == "certgate@32473" and p.hostname == "n1:1812"
        assert p.procid == str(os.getpid()) and p.app_name == "certgate"
        assert p.timestamp == ev["@timestamp"]
        assert dict(p.params) == flat_strings(ev) and len(p.params) == len(flat_strings(ev))
    by_input = {(r["input"], r["msgid"]) for r in records}
    assert by_input == {(i, e["event"]["action"]) for i, _ in sent for e in evs}
    detail = [dict(parse(r["raw"].encode()).params)["certgate.radius.detail"]
              for r in records if r["msgid"] == "radius-authentication"]
    assert detail == ['line one\nline two ] "quoted" \\ é'] * 3


def test_serve_streams_a_refused_admin_token_to_rsyslog(rsyslog: Rsyslog,
                                                         tmp_path: Path) -> None:
    config = write_config(tmp_path / "srv", extra=f"""
[audit]
syslog = "udp://127.0.0.1:{rsyslog.udp}"
syslog_facility = "auth"
""")
    certgate("init", config=config)
    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        status, _ = server.get("/api/v1/certificates",
                               {"Authorization": "Bearer not-the-token-at-all"})
        assert status == 401
        deadline = time.monotonic() + 10
        while not any(r["msgid"] == "admin-authentication" for r in rsyslog.records()):
            assert time.monotonic() < deadline, f"{rsyslog.records()}\n{server.log()}"
            time.sleep(0.1)
    finally:
        server.stop()
    records = rsyslog.records()
    (denied,) = [parse(r["raw"].encode()) for r in records
                 if r["msgid"] == "admin-authentication"]
    fields = dict(denied.params)
    assert denied.pri == 4 * 8 + 4  # auth.warning
    assert fields["event.outcome"] == "failure" and fields["event.reason"] == "bad_token"
    assert fields["source.ip"] == "127.0.0.1"
    assert fields["certgate.http.path"] == "/api/v1/certificates"
    assert any(r["msgid"] == "config-loaded" for r in records)
    assert "not-the-token" not in rsyslog.out.read_text()  # the secret never travels


def test_serve_with_an_unusable_syslog_ca_exits_2_naming_the_key(tmp_path: Path) -> None:
    # No rsyslog needed: the sink refuses the CA bundle at start-up. serve used to print
    # the error and then hang, the store's worker thread keeping the process alive.
    config = write_config(tmp_path / "cg")
    certgate("init", config=config)
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a PEM file\n")
    with config.open("a") as f:
        f.write(f'\n[audit]\nsyslog = "tls://127.0.0.1:{free_port()}"\nsyslog_ca = "{bad}"\n')
    started = time.monotonic()
    result = certgate("serve", config=config, check=False, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "[audit] syslog_ca" in result.stderr and "PEM" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 20


def test_cli_decisions_reach_syslog_over_tls(rsyslog: Rsyslog, tmp_path: Path) -> None:
    # A CLI process has no server loop: its sink starts on the first committed row and is
    # flushed when the store closes, before the process exits.
    config = write_config(tmp_path / "cli", extra=f"""
[audit]
syslog = "tls://127.0.0.1:{rsyslog.tls}"
syslog_ca = "{rsyslog.ca}"
""")
    certgate("init", config=config)
    issued = certgate("certs", "issue", "--group", "staff", "--cn", "cli-dev",
                      "--out", str(tmp_path / "out"), config=config)
    serial = issued.stdout.split()[0]
    certgate("revoke", "--serial", serial, "--reason", "keyCompromise", "--yes", config=config)
    deadline = time.monotonic() + 10
    while not {"certificate-issued", "certificate-revoked"} <= {
            r["msgid"] for r in rsyslog.records()}:
        assert time.monotonic() < deadline, rsyslog.records()
        time.sleep(0.1)
    by_action = {r["msgid"]: dict(parse(r["raw"].encode()).params) for r in rsyslog.records()}
    revoked = by_action["certificate-revoked"]
    assert revoked["x509.serial_number"].lower() == serial.lower()
    assert revoked["user.name"]  # the OS user who ran the CLI
    assert by_action["certificate-issued"]["certgate.group"] == "staff"
