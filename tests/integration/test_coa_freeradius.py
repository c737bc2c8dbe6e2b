"""CoA-Request against a real RFC 5176 server that ACKs: FreeRADIUS 3.2 with
`listen { type = coa }` (tests/peers/freeradius_coa.sh) standing as the NAS's DAS.

certgate serve with a quarantine on `staff`; eapol_test authenticates (Access-Accept with the
Class), the NAS's accounting is sent with pyrad; then a hold moves the session to the
quarantine by CoA (FreeRADIUS logs Tunnel-Private-Group-Id 999 and ACKs), the held
certificate re-authenticates into VLAN 999, a release CoAs it back to VLAN 10, a CoA that
FreeRADIUS NAKs (Error-Cause 503) falls back to a Disconnect-Request, and a final revocation
disconnects.
"""

from __future__ import annotations

import json
import socket
import time
import tomllib
from pathlib import Path

import pytest

from radius.accounting import class_value
from tests.integration.coa_support import (
    FreeRadiusCoa,
    add_quarantine,
    metric,
    send_accounting,
    wait_for,
)
from tests.support import (
    IN_CI,
    TOKEN,
    ServerProcess,
    accept_attributes,
    certgate,
    free_port,
    require_tool,
    run_eapol_test,
    vlan_of,
    write_config,
)

pytestmark = pytest.mark.integration

NAK_STATION = "02-00-00-00-00-bb"
ADMIN = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@pytest.fixture
def coa_server(tmp_path: Path):
    require_tool("freeradius")
    if not Path("/etc/freeradius/3.0").is_dir():
        why = "/etc/freeradius/3.0 missing (scripts/install-test-deps.sh installs freeradius)"
        pytest.fail(why) if IN_CI else pytest.skip(why)
    fr = FreeRadiusCoa(tmp_path / "fr-coa", free_port(socket.SOCK_DGRAM), NAK_STATION).start()
    yield fr
    fr.stop()


def test_hold_release_nak_fallback_against_freeradius(coa_server: FreeRadiusCoa,
                                                      tmp_path: Path) -> None:
    config = write_config(tmp_path / "cg", coa_port=coa_server.port)
    add_quarantine(config)
    certgate("init", config=config)
    out = tmp_path / "certs"
    serials = {}
    for cn in ("coa-a", "coa-b"):
        serials[cn] = certgate("certs", "issue", "--group", "staff", "--cn", cn, "--out",
                               str(out), config=config).stdout.strip()
    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        _run(server, config, coa_server, out, serials, tmp_path)
    finally:
        server.stop()


def _auth_vlan(server: ServerProcess, config: Path, out: Path, cn: str, tmp: Path) -> str | None:
    root = config.parent / "var" / "pki" / "root.crt"
    code, text = run_eapol_test(server.radius, root, out / f"{cn}.chain.pem", out / f"{cn}.key",
                                tmp / "eapol")
    assert code == 0 and "MPPE keys OK" in text, text[-2000:]
    return vlan_of(accept_attributes(text))


def _run(server, config, fr, out, serials, tmp) -> None:  # type: ignore[no-untyped-def]
    host, port = tomllib.loads(config.read_text())["radius"]["acct_listen"].rsplit(":", 1)
    acct = (host, int(port))
    assert _auth_vlan(server, config, out, "coa-a", tmp) == "10"
    for cn, sid, station in (("coa-a", "sess-a", "02-00-00-00-00-aa"),
                             ("coa-b", "sess-b", NAK_STATION)):
        send_accounting(acct, session_id=sid, station=station,
                        cls=class_value("staff", int(serials[cn], 16)))

    # hold -> CoA into the quarantine, ACKed by FreeRADIUS
    a = serials["coa-a"]
    status, body = server.post(f"/api/v1/certificates/{a}/revoke",
                               b'{"reason": "certificateHold"}', ADMIN)
    assert status == 200, body
    first = wait_for(lambda: fr.requests(), what="FreeRADIUS to receive the CoA")[0]
    assert first["Acct-Session-Id"] == "sess-a" and first["Calling-Station-Id"] == \
        "02-00-00-00-00-aa"
    assert first["NAS-IP-Address"] == "127.0.0.1" and first["NAS-Identifier"] == "test-nas"
    assert first["Tunnel-Private-Group-Id"] == "999" and first["Tunnel-Type"] == "VLAN"
    assert first["Tunnel-Medium-Type"] == "IEEE-802" and first["Filter-Id"] == "quarantine-acl"
    assert "Event-Timestamp" in first
    assert first.get("Packet-Type", "CoA-Request") == "CoA-Request"
    console = fr.console()
    assert "Received CoA-Request" in console and "from 127.0.0.1" in console, console[-2000:]
    assert "Message-Authenticator" in console  # verified by FreeRADIUS (else it would drop it)
    wait_for(lambda: metric(server, "coa_requests_total", client="loopback", kind="coa",
                            result="ack") == 1, what="coa ack counted")

    # the held certificate authenticates again: accepted into the quarantine VLAN
    assert _auth_vlan(server, config, out, "coa-a", tmp) == "999"
    assert "reason=quarantined" in server.log()

    # release -> CoA back to the group's VLAN and Filter-Id
    status, body = server.post(f"/api/v1/certificates/{a}/release-hold", b"", ADMIN)
    assert status == 200, body
    back = wait_for(lambda: fr.requests()[1:], what="the CoA back")[0]
    assert back["Tunnel-Private-Group-Id"] == "10" and back["Filter-Id"] == "staff-acl"
    assert _auth_vlan(server, config, out, "coa-a", tmp) == "10"

    # FreeRADIUS NAKs coa-b's CoA: certgate falls back to a Disconnect-Request
    b = serials["coa-b"]
    status, body = server.post(f"/api/v1/certificates/{b}/revoke",
                               b'{"reason": "certificateHold"}', ADMIN)
    assert status == 200, body
    reqs = wait_for(lambda: fr.requests()[2:] if len(fr.requests()) >= 4 else None,
                    what="CoA then Disconnect for coa-b")
    assert reqs[0]["Calling-Station-Id"] == NAK_STATION and reqs[0]["Tunnel-Private-Group-Id"] \
        == "999"
    assert "Tunnel-Private-Group-Id" not in reqs[1] and reqs[1]["Acct-Session-Id"] == "sess-b"
    assert "Received Disconnect-Request" in fr.console()
    wait_for(lambda: metric(server, "coa_fallbacks_total", client="loopback") == 1,
             what="the fallback counted")
    assert metric(server, "coa_requests_total", client="loopback", kind="coa", result="nak") == 1
    shown = json.loads(certgate("certs", "show", b, config=config).stdout)
    kinds = [(e["action"], e["details"].get("result"), e["details"].get("fallback"))
             for e in shown["audit"] if e["actor"] == "coa"]
    assert ("coa", "nak", None) in kinds and kinds[0][0] == "disconnect", kinds

    # a final revocation of coa-a: a Disconnect-Request, no CoA
    status, body = server.post(f"/api/v1/certificates/{a}/revoke",
                               b'{"reason": "keyCompromise"}', ADMIN)
    assert status == 200, body
    last = wait_for(lambda: fr.requests()[4:], what="the Disconnect of coa-a")[0]
    assert last["Acct-Session-Id"] == "sess-a" and "Tunnel-Private-Group-Id" not in last
    wait_for(lambda: metric(server, "coa_requests_total", client="loopback", kind="disconnect",
                            result="ack") == 2, what="two disconnect acks")


def test_reload_changes_vlan_and_coas_live_sessions(coa_server: FreeRadiusCoa,
                                                    tmp_path: Path) -> None:
    """SIGHUP with a new `vlan` for staff: its live session gets a CoA with VLAN 11 and the
    next Access-Accept carries 11; a file that does not validate changes nothing."""
    import signal

    # SCEP in-process: its worker processes re-read the config file when they start
    config = write_config(tmp_path / "cg", extra="\n[scep]\nworkers = 0\n",
                          coa_port=coa_server.port)
    add_quarantine(config)
    certgate("init", config=config)
    out = tmp_path / "certs"
    serial = certgate("certs", "issue", "--group", "staff", "--cn", "rl-a", "--out", str(out),
                      config=config).stdout.strip()
    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        host, port = tomllib.loads(config.read_text())["radius"]["acct_listen"].rsplit(":", 1)
        send_accounting((host, int(port)), session_id="sess-r", station="02-00-00-00-00-cc",
                        cls=class_value("staff", int(serial, 16)))
        good = config.read_text()
        config.write_text(good.replace("vlan = 10\n", "vlan = 4095\n", 1))
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reload of" in server.log(), what="the refused reload logged")
        assert "groups.staff.vlan" in server.log() and fr_count(coa_server) == 0
        config.write_text(good.replace("vlan = 10\n", "vlan = 11\n", 1))
        server.proc.send_signal(signal.SIGHUP)
        coa = wait_for(lambda: coa_server.requests(), what="the CoA after the reload")[0]
        assert coa["Acct-Session-Id"] == "sess-r" and coa["Tunnel-Private-Group-Id"] == "11"
        assert "reply attributes changed for staff" in server.log()
        assert _auth_vlan(server, config, out, "rl-a", tmp_path) == "11"
    finally:
        server.stop()


def fr_count(fr: FreeRadiusCoa) -> int:
    return len(fr.requests())


def test_cli_hold_and_release_reach_the_running_server(coa_server: FreeRadiusCoa,
                                                       tmp_path: Path) -> None:
    """`certgate revoke --reason certificateHold` and `certgate release` write the store from
    another process; the serving node picks them up from the change feed and moves the live
    session by CoA (to the quarantine VLAN, then back); `revoke --reason removeFromCRL`
    releases too. One CoA per change, each ACKed by FreeRADIUS."""
    config = write_config(tmp_path / "cg", coa_port=coa_server.port)
    add_quarantine(config)
    certgate("init", config=config)
    out = tmp_path / "certs"
    serial = certgate("certs", "issue", "--group", "staff", "--cn", "cli-a", "--out", str(out),
                      config=config).stdout.strip()
    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        host, port = tomllib.loads(config.read_text())["radius"]["acct_listen"].rsplit(":", 1)
        assert _auth_vlan(server, config, out, "cli-a", tmp_path) == "10"
        send_accounting((host, int(port)), session_id="sess-cli", station="02-00-00-00-00-dd",
                        cls=class_value("staff", int(serial, 16)))

        certgate("revoke", "--serial", serial, "--reason", "certificateHold", config=config)
        held = wait_for(lambda: coa_server.requests(), what="the CoA after the CLI hold")
        assert held[0]["Acct-Session-Id"] == "sess-cli"
        assert held[0]["Tunnel-Private-Group-Id"] == "999"
        assert _auth_vlan(server, config, out, "cli-a", tmp_path) == "999"

        certgate("release", "--serial", serial, config=config)
        back = wait_for(lambda: coa_server.requests()[1:], what="the CoA after the CLI release")
        assert back[0]["Acct-Session-Id"] == "sess-cli"
        assert back[0]["Tunnel-Private-Group-Id"] == "10"
        assert _auth_vlan(server, config, out, "cli-a", tmp_path) == "10"

        certgate("revoke", "--serial", serial, "--reason", "certificateHold", config=config)
        wait_for(lambda: coa_server.requests()[2:], what="the CoA after the second hold")
        certgate("revoke", "--serial", serial, "--reason", "removeFromCRL", config=config)
        again = wait_for(lambda: coa_server.requests()[3:], what="the CoA after removeFromCRL")
        assert again[0]["Tunnel-Private-Group-Id"] == "10"
        wait_for(lambda: metric(server, "coa_requests_total", client="loopback", kind="coa",
                                result="ack") == 4, what="four CoA acks")
        assert fr_count(coa_server) == 4  # one per change, no Disconnect
        shown = json.loads(certgate("certs", "show", serial, config=config).stdout)
        assert shown["status"] == "active"
    finally:
        server.stop()


def test_revoked_while_down_is_disconnected_at_start(coa_server: FreeRadiusCoa,
                                                     tmp_path: Path) -> None:
    """A certificate revoked by the CLI while certgate is stopped: its live session gets
    a Disconnect-Request when certgate starts again, once (a later restart sends nothing:
    the result is recorded on the session). A session of a certificate on hold is left
    to the hold path."""
    config = write_config(tmp_path / "cg", coa_port=coa_server.port)
    certgate("init", config=config)
    out = tmp_path / "certs"
    serials = {cn: certgate("certs", "issue", "--group", "staff", "--cn", cn, "--out", str(out),
                            config=config).stdout.strip() for cn in ("down-a", "down-h")}
    host, port = tomllib.loads(config.read_text())["radius"]["acct_listen"].rsplit(":", 1)
    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        for cn, sid in (("down-a", "sess-down"), ("down-h", "sess-held")):
            send_accounting((host, int(port)), session_id=sid, station="02-00-00-00-00-ee",
                            cls=class_value("staff", int(serials[cn], 16)))
    finally:
        server.stop()
    certgate("revoke", "--serial", serials["down-a"], "--reason", "keyCompromise",
             config=config)
    certgate("revoke", "--serial", serials["down-h"], "--reason", "certificateHold",
             config=config)
    assert fr_count(coa_server) == 0  # nobody was there to send it

    server.start()
    try:
        sent = wait_for(lambda: coa_server.requests(), what="the Disconnect after start")
        assert sent[0]["Acct-Session-Id"] == "sess-down"
        assert "Tunnel-Private-Group-Id" not in sent[0]
        wait_for(lambda: metric(server, "coa_requests_total", client="loopback",
                                kind="disconnect", result="ack") == 1, what="the ack counted")
        assert "1 live session(s) of certificates revoked while no Disconnect" in server.log()
    finally:
        server.stop()
    server.start()  # again: the session has its Disconnect result, nothing is resent
    try:
        wait_for(lambda: server.log().count("certgate ready") == 3, what="the third start")
        time.sleep(2.0)
        assert fr_count(coa_server) == 1
    finally:
        server.stop()
