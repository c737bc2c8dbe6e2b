"""`[server] workers = 2` as a real process: the supervisor routes, two workers serve.

eapol_test (one source port per run) authenticates until both workers have served several
runs, every one SUCCESS with MPPE keys OK; the counters of /metrics add up over the workers;
Access-Requests from one source port spread over both workers (the State each answers with
starts with its index), a retransmission gets the identical answer; a revocation by the CLI
is refused by both workers a second later; a SIGHUP config reload (a group's VLAN) reaches
both; a revocation sends one Disconnect per session (FreeRADIUS as the NAS's DAS), not one
per worker; a worker killed with SIGKILL is restarted and counted and service continues;
SIGTERM during a conversation lets it finish, a new one gets no answer, exit 0.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radius import packet as rp
from radius.packet import Attr, Code
from tests.support import (
    SECRET,
    ServerProcess,
    accept_attributes,
    certgate,
    require_tool,
    run_eapol_test,
    vlan_of,
    write_config,
)

pytestmark = pytest.mark.integration

WORKERS = 2


def _samples(text: str, family: str) -> dict[str, float]:
    """{label text: value} of one family in the Prometheus text format."""
    out = {}
    for m in re.finditer(rf"^{family}(\{{[^}}]*\}})? (\S+)$", text, re.M):
        out[m.group(1) or ""] = float(m.group(2))
    return out


class Workers:
    def __init__(self, tmp: Path) -> None:
        require_tool("eapol_test")
        self.dir = tmp
        self.config = write_config(tmp, radius_extra="conversation_timeout = 5.0")
        text = self.config.read_text().replace('data_dir = "var"',
                                               f'data_dir = "var"\nworkers = {WORKERS}', 1)
        self.config.write_text(text)
        certgate("init", config=self.config)
        self.root = tmp / "var" / "pki" / "root.crt"
        self.out = tmp / "clients"
        self.serials = {cn: certgate("certs", "issue", "--group", "staff", "--cn", cn, "--out",
                                     str(self.out), config=self.config).stdout.strip()
                        for cn in ("laptop-ok", "laptop-revoked")}
        self.server = ServerProcess(self.config, tmp / "serve.log").start(timeout=120)
        self.wait_all_ready()

    def metrics(self) -> str:
        status, body = self.server.get("/metrics")
        assert status == 200
        return body.decode()

    def routed(self) -> list[float]:
        time.sleep(0.3)  # the supervisor adds its counts to /metrics every 0.2 s
        s = _samples(self.metrics(), "certgate_worker_datagrams_total")
        return [s.get(f'{{worker="{i}"}}', 0.0) for i in range(WORKERS)]

    def wait_all_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.log().count(" ready (pid ") >= WORKERS + self.restarts_logged():
                return
            time.sleep(0.2)
        raise AssertionError("workers not ready:\n" + self.server.log())

    def restarts_logged(self) -> int:
        return self.server.log().count("; restarting in")

    def eapol(self, cn: str) -> tuple[int, str]:
        return run_eapol_test(self.server.radius, self.root, self.out / f"{cn}.chain.pem",
                              self.out / f"{cn}.key", self.dir / "eapol")

    def runs_on_every_worker(self, cn: str, per_worker: int = 2, limit: int = 30
                             ) -> tuple[list[int], list[str]]:
        """eapol_test runs until each worker handled ``per_worker`` of them (each run is one
        conversation: all its datagrams go to one worker); runs per worker and outputs."""
        served, outputs = [0] * WORKERS, []
        before = self.routed()
        for _ in range(limit):
            _, out = self.eapol(cn)
            outputs.append(out)
            after = self.routed()
            moved = [i for i in range(WORKERS) if after[i] > before[i]]
            assert len(moved) == 1, f"one conversation reached workers {moved}"
            served[moved[0]] += 1
            before = after
            if min(served) >= per_worker:
                return served, outputs
        raise AssertionError(f"runs per worker after {limit} runs: {served}")

    def supervisor_children(self) -> list[int]:
        assert self.server.proc is not None
        parent = self.server.proc.pid
        kids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                kids.append(int(entry))
        return kids


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Workers(tmp_path_factory.mktemp("workers"))
    yield lab
    lab.server.stop(timeout=30)


def _identity_request(identifier: int, mac: str) -> tuple[bytes, bytes]:
    authenticator = os.urandom(16)
    eap_identity = bytes([2, identifier, 0, 9, 1]) + b"dev@"
    attrs = [(Attr.USER_NAME, b"dev@"), (Attr.CALLING_STATION_ID, mac.encode()),
             *rp.eap_message_attributes(eap_identity)]
    return rp.encode_access_request(identifier, authenticator, SECRET.encode(), attrs), authenticator


def test_every_worker_authenticates_and_the_counters_add_up(lab: Workers) -> None:
    before = lab.metrics()
    served, outputs = lab.runs_on_every_worker("laptop-ok")
    for out in outputs:
        assert "MPPE keys OK: 1  mismatch: 0" in out and out.rstrip().endswith("SUCCESS"), out
    after = lab.metrics()
    key = '{group="staff",reason="ok",result="accept",tls_version="1.2"}'
    accepted = (_samples(after, "certgate_eap_authentications_total")[key]
                - _samples(before, "certgate_eap_authentications_total").get(key, 0.0))
    assert accepted == len(outputs) == sum(served)  # both workers' counters, summed
    req = '{client="loopback",code="access_request",transport="udp"}'
    requests = (_samples(after, "certgate_radius_requests_total")[req]
                - _samples(before, "certgate_radius_requests_total").get(req, 0.0))
    routed = (sum(_samples(after, "certgate_worker_datagrams_total").values())
              - sum(_samples(before, "certgate_worker_datagrams_total").values()))
    assert requests == routed > 0  # every routed datagram counted once, by the worker that had it
    assert _samples(after, "certgate_eap_sessions_active")[""] == 0  # livesum, not one pid each
    # process_* are the whole tree's: at least the supervisor's and both workers' RSS
    assert lab.server.proc is not None
    rss = sum(int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
              for p in [lab.server.proc.pid, *lab.supervisor_children()])
    assert _samples(lab.metrics(), "process_resident_memory_bytes")[""] >= 0.9 * rss


def test_one_source_port_spreads_and_retransmissions_get_the_same_answer(lab: Workers) -> None:
    before = _samples(lab.metrics(), "certgate_radius_duplicate_requests_total")
    tags = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(lab.server.radius)
        for i in range(24):
            data, authenticator = _identity_request(i, f"02-00-00-00-01-{i:02x}")
            sock.send(data)
            first = sock.recv(4096)
            sock.send(data)  # the NAS retransmits the same bytes
            second = sock.recv(4096)
            assert second == first
            reply = rp.decode_reply(first, SECRET.encode(), authenticator)
            assert reply.code == Code.ACCESS_CHALLENGE
            tags.append(reply.get(Attr.STATE)[0])
    assert set(tags) == set(range(WORKERS)), tags  # one source port, every worker
    after = _samples(lab.metrics(), "certgate_radius_duplicate_requests_total")
    assert after['{client="loopback"}'] - before.get('{client="loopback"}', 0.0) == 24


def test_a_cli_revocation_is_refused_by_every_worker_within_a_second(lab: Workers) -> None:
    code, out = lab.eapol("laptop-revoked")
    assert out.rstrip().endswith("SUCCESS"), out
    certgate("revoke", "--serial", lab.serials["laptop-revoked"], "--reason", "keyCompromise",
             "--yes", config=lab.config)
    time.sleep(1.0)
    _, outputs = lab.runs_on_every_worker("laptop-revoked")
    for out in outputs:
        assert "Access-Reject" in out and "SUCCESS" not in out.splitlines()[-1], out
    assert "reason=revoked" in lab.server.log()


def test_a_config_reload_reaches_every_worker(lab: Workers) -> None:
    """SIGHUP to the supervisor is forwarded: staff's VLAN 10 -> 11 in the file, and a
    second later both workers answer with 11."""
    text = lab.config.read_text()
    head = "[groups.staff]\nvlan = 10\n"
    assert head in text
    lab.config.write_text(text.replace(head, "[groups.staff]\nvlan = 11\n", 1))
    assert lab.server.proc is not None
    lab.server.proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    _, outputs = lab.runs_on_every_worker("laptop-ok")
    assert [vlan_of(accept_attributes(out)) for out in outputs] == ["11"] * len(outputs)


def test_a_revocation_disconnects_a_session_once_not_once_per_worker(lab: Workers) -> None:
    """FreeRADIUS (`listen { type = coa }`) is the NAS's DAS: the session's accounting is in
    the store, every worker applies the revocation from the change feed, one sends."""
    import tomllib

    from radius.accounting import class_value
    from tests.integration.coa_support import FreeRadiusCoa, metric, send_accounting, wait_for

    require_tool("freeradius")
    data = tomllib.loads(lab.config.read_text())
    coa_port = data["radius"]["clients"][0]["coa_port"]
    host, port = data["radius"]["acct_listen"].rsplit(":", 1)
    serial = certgate("certs", "issue", "--group", "staff", "--cn", "laptop-session", "--out",
                      str(lab.out), config=lab.config).stdout.strip()
    fr = FreeRadiusCoa(lab.dir / "fr-coa", coa_port).start()
    try:
        code, out = lab.eapol("laptop-session")
        assert out.rstrip().endswith("SUCCESS"), out
        for i in range(4):  # accounting spreads over the workers too; all of it is stored
            send_accounting((host, int(port)), session_id=f"sess-{i}",
                            station=f"02-00-00-00-03-{i:02x}",
                            cls=class_value("staff", int(serial, 16)))
        certgate("revoke", "--serial", serial, "--reason", "keyCompromise", "--yes",
                 config=lab.config)
        wait_for(lambda: len(fr.requests()) >= 4, what="a Disconnect per session")
        time.sleep(2.0)  # a second worker's Disconnects would have arrived by now
        sessions = sorted(r["Acct-Session-Id"] for r in fr.requests())
        assert sessions == [f"sess-{i}" for i in range(4)], fr.requests()
        assert metric(lab.server, "coa_requests_total", client="loopback", kind="disconnect",
                      result="ack") == 4
    finally:
        fr.stop()


def test_sigkill_of_a_worker_restarts_it_and_counts_it(lab: Workers) -> None:
    kids = lab.supervisor_children()
    assert len(kids) == WORKERS
    os.kill(kids[-1], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        restarts = _samples(lab.metrics(), "certgate_worker_restarts_total")
        if sum(restarts.values()) == 1 and lab.server.log().count(" ready (pid ") > WORKERS:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("no restart:\n" + lab.server.log())
    assert kids[-1] not in lab.supervisor_children()
    served, outputs = lab.runs_on_every_worker("laptop-ok")
    assert all(out.rstrip().endswith("SUCCESS") for out in outputs)


def test_sigterm_lets_a_conversation_in_progress_finish(lab: Workers) -> None:
    """Last: it stops the server. A conversation is one challenge in when SIGTERM arrives;
    its remaining round trips are still answered (Accept, MPPE keys that match the TLS
    session), a new conversation is not answered, and the server exits 0."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from radius.client.exchange import Exchange, NasOptions
    from radius.client.supplicant import Supplicant, client_context

    leaf, *chain = x509.load_pem_x509_certificates(
        (lab.out / "laptop-ok.chain.pem").read_bytes())
    key = serialization.load_pem_private_key((lab.out / "laptop-ok.key").read_bytes(), None)
    ctx = client_context(certificate=leaf, private_key=key, chain=chain,
                         trust=x509.load_pem_x509_certificates(lab.root.read_bytes()),
                         tls_min="1.2", tls_max="1.2")
    exchange = Exchange(Supplicant(ctx, b"laptop-ok"),
                        NasOptions(secret=SECRET.encode(), user_name=b"laptop-ok"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(lab.server.radius)
        sock.send(exchange.start(time.monotonic()))
        request = exchange.receive(sock.recv(65535), time.monotonic())  # first challenge
        assert request is not None
        assert lab.server.proc is not None
        lab.server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the supervisor and both workers are stopping now
        while request is not None:
            sock.send(request)
            request = exchange.receive(sock.recv(65535), time.monotonic())
        outcome = exchange.outcome
        assert outcome is not None and outcome.result == "accept", outcome
        assert outcome.mppe is not None and outcome.mppe.ok, outcome.mppe
        new, _ = _identity_request(1, "02-00-00-00-02-01")
        sock.send(new)
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            sock.recv(4096)  # no new conversation while draining
    code = lab.server.proc.wait(timeout=30)
    log = lab.server.log()
    assert code == 0, log
    assert log.index("stopping: draining 2 worker(s)") < log.index("outer_identity='laptop-ok'")
    assert re.search(r"worker \d: draining [1-9]\d* conversation\(s\) in progress", log), log
    assert "0 conversation(s) left" in log


def test_a_worker_that_cannot_start_ends_serve_with_its_exit_code(tmp_path: Path) -> None:
    """No PKI yet: the first worker exits 1 with the operator's message before it is ready;
    the supervisor stops, exit 1 and the same message as with one process, no restart loop."""
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace('data_dir = "var"',
                                                 f'data_dir = "var"\nworkers = {WORKERS}', 1))
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "certgate", "--config", str(config), "serve"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "no PKI at" in r.stderr and "run `certgate init --config FILE` first" in r.stderr
    assert "exited with 1 before it was ready; stopping" in r.stderr
    assert r.stderr.count("started: pid") == 1  # worker 0 only, not restarted
    assert time.monotonic() - started < 30
