"""[groups.X.reply] vendor attributes on the wire (issue #12 §4): `certgate serve` sends
them in the Access-Accept, eapol_test receives them, and a FreeRADIUS 3.2 proxy between
eapol_test and certgate decodes them by name.

eapol_test prints each received attribute ("Attribute 26 (Vendor-Specific) length=18" then
"Value: 000039e7010c..." in hex: vendor id, vendor type, length, data; "Attribute 28
(Idle-Timeout) length=6" then "Value: 900"); FreeRADIUS -X prints the proxied reply by dictionary name
("Aruba-User-Role = "staff""), with its own /usr/share/freeradius dictionaries: the names and
numbers certgate ships agree with them.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import (
    IN_CI,
    SECRET,
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

REPLY = """
[groups.staff.reply]
"Aruba-User-Role" = "staff-role"
"Cisco-AVPair" = ["cts:security-group-tag=000a-00", "url-redirect-acl=none"]
"Airespace-QOS-Level" = "Gold"
"Mikrotik-Rate-Limit" = "50M/100M"
"Idle-Timeout" = 900
"""
# (vendor, vendor type) -> the data eapol_test must show for it, in order
EXPECTED_VSAS = [
    (14823, 1, b"staff-role"),
    (9, 1, b"cts:security-group-tag=000a-00"),
    (9, 1, b"url-redirect-acl=none"),
    (14179, 2, (1).to_bytes(4, "big")),
    (14988, 8, b"50M/100M"),
]
# FreeRADIUS's debug output for the proxied Access-Accept
EXPECTED_BY_NAME = ['Aruba-User-Role = "staff-role"',
                    'Cisco-AVPair = "cts:security-group-tag=000a-00"',
                    'Cisco-AVPair = "url-redirect-acl=none"',
                    "Airespace-QOS-Level = Gold",
                    'Mikrotik-Rate-Limit = "50M/100M"',
                    "Idle-Timeout = 900"]


def _vsas(accept: str) -> list[tuple[int, int, bytes]]:
    """The Vendor-Specific attributes of eapol_test's Access-Accept dump, decoded."""
    out = []
    for hexval in re.findall(r"Attribute 26 \(Vendor-Specific\) length=\d+\s+Value: ([0-9a-f]+)",
                             accept):
        raw = bytes.fromhex(hexval)
        vendor, vtype, vlen = int.from_bytes(raw[:4], "big"), raw[4], raw[5]
        assert vlen == len(raw) - 4, hexval
        out.append((vendor, vtype, raw[6:]))
    return [v for v in out if v[0] != 311]  # without the MS-MPPE keys


def _issue(config: Path, out: Path) -> None:
    certgate("certs", "issue", "--group", "staff", "--cn", "laptop-vsa", "--out", str(out),
             config=config)


@pytest.fixture
def vsa_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = write_config(tmp_path / "cg", extra=REPLY)
    certgate("init", config=config)
    r = certgate("check-config", config=config, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    proc = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        yield proc, config
    finally:
        proc.stop()


def test_eapol_test_receives_the_vendor_attributes(vsa_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, config = vsa_server
    certs = tmp_path / "certs"
    _issue(config, certs)
    pki = config.parent / "var" / "pki"
    code, out = run_eapol_test(server.radius, pki / "root.crt", certs / "laptop-vsa.chain.pem",
                               certs / "laptop-vsa.key", certs)
    assert code == 0 and "MPPE keys OK" in out and "SUCCESS" in out, out[-4000:]
    accept = accept_attributes(out)
    assert _vsas(accept) == EXPECTED_VSAS, accept
    assert vlan_of(accept) == "10"  # next to the group's VLAN
    assert re.search(r"Attribute 28 \(Idle-Timeout\) length=6\s+Value: 900\n", accept), accept
    # explain shows what the NAS gets, by name
    r = certgate("explain", str(certs / "laptop-vsa.chain.pem"), "--json", config=config,
                 check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    named = [(a["name"], a["value"]) for a in json.loads(r.stdout)["reply"] if a["type"] in (26, 28)]
    assert named == [("Aruba-User-Role", "staff-role"),
                     ("Cisco-AVPair", "cts:security-group-tag=000a-00"),
                     ("Cisco-AVPair", "url-redirect-acl=none"), ("Airespace-QOS-Level", "Gold"),
                     ("Mikrotik-Rate-Limit", "50M/100M"), ("Idle-Timeout", 900)], r.stdout


def test_check_config_names_a_bad_reply_attribute(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cg", extra='[groups.staff.reply]\n"Aruba-User-Vlan" = "x"\n'
                          '"Arbua-User-Role" = "y"\n')
    r = certgate("check-config", "--no-state", config=config, check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "groups.staff.reply.Aruba-User-Vlan: Aruba-User-Vlan is an integer attribute" in r.stderr
    assert "groups.staff.reply.Arbua-User-Role: unknown attribute" in r.stderr
    assert "Traceback" not in r.stderr


# --- through a FreeRADIUS proxy ------------------------------------------------------------

PROXY_SITE = """\
server proxy {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = @PORT@
	}
	authorize {
		update control {
			&Proxy-To-Realm := "certgate"
		}
	}
	authenticate {
	}
	post-proxy {
	}
	post-auth {
	}
}
"""
PROXY_CONF = """\
proxy server {
	default_fallback = no
}
home_server certgate {
	type = auth
	ipaddr = 127.0.0.1
	port = @HOME_PORT@
	secret = @SECRET@
	response_window = 10
	zombie_period = 40
	revive_interval = 60
	status_check = none
}
home_server_pool certgate {
	type = fail-over
	home_server = certgate
}
realm certgate {
	auth_pool = certgate
	nostrip
}
"""
CLIENTS = """\
client eapol {
	ipaddr = 127.0.0.1
	secret = @FR_SECRET@
	require_message_authenticator = yes
}
"""


@pytest.fixture
def freeradius_proxy(vsa_server, tmp_path: Path):  # type: ignore[no-untyped-def]
    """FreeRADIUS 3.2 -X as a proxy on a free loopback port, forwarding to certgate."""
    freeradius = require_tool("freeradius")
    src = Path("/etc/freeradius/3.0")
    if not src.is_dir():
        why = "/etc/freeradius/3.0 missing (scripts/install-test-deps.sh installs freeradius)"
        pytest.fail(why) if IN_CI else pytest.skip(why)
    server, _ = vsa_server
    work = tmp_path / "fr"
    raddb = work / "raddb"
    shutil.copytree(src, raddb, symlinks=True)
    (work / "log").mkdir()
    (work / "run").mkdir()
    conf = (raddb / "radiusd.conf").read_text()
    conf = re.sub(r"(?m)^raddbdir = .*$", f"raddbdir = {raddb}", conf)
    conf = re.sub(r"(?m)^logdir = .*$", f"logdir = {work / 'log'}", conf)
    conf = re.sub(r"(?m)^run_dir = .*$", f"run_dir = {work / 'run'}", conf)
    conf = re.sub(r"(?m)^(\s*)(user|group) = freerad", r"\1#\2 = freerad", conf)
    conf = re.sub(r"(?m)^(\s*)proxy_requests\s*=.*$", r"\1proxy_requests = yes", conf)
    (raddb / "radiusd.conf").write_text(conf)
    for d in ("mods-enabled", "sites-enabled"):
        for entry in (raddb / d).iterdir():
            entry.unlink()
    (raddb / "mods-enabled" / "always").symlink_to("../mods-available/always")
    port = free_port(socket.SOCK_DGRAM)
    fr_secret = "fr-proxy-secret-0123"
    (raddb / "sites-enabled" / "proxy").write_text(PROXY_SITE.replace("@PORT@", str(port)))
    (raddb / "proxy.conf").write_text(PROXY_CONF.replace("@HOME_PORT@", str(server.radius[1]))
                                      .replace("@SECRET@", SECRET))
    (raddb / "clients.conf").write_text(CLIENTS.replace("@FR_SECRET@", fr_secret))
    check = subprocess.run([freeradius, "-C", "-d", str(raddb)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    console = work / "console.log"
    with console.open("wb") as log:
        proc = subprocess.Popen([freeradius, "-X", "-d", str(raddb)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "Ready to process requests" not in console.read_text(errors="replace"):
            assert proc.poll() is None, console.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, console.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        yield {"port": port, "secret": fr_secret, "console": console}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_freeradius_proxy_decodes_them_by_name(vsa_server, freeradius_proxy,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    server, config = vsa_server
    certs = tmp_path / "certs"
    _issue(config, certs)
    pki = config.parent / "var" / "pki"
    code, out = run_eapol_test(("127.0.0.1", freeradius_proxy["port"]), pki / "root.crt",
                               certs / "laptop-vsa.chain.pem", certs / "laptop-vsa.key", certs,
                               secret=freeradius_proxy["secret"])
    console = freeradius_proxy["console"].read_text(errors="replace")
    assert code == 0 and "MPPE keys OK" in out, out[-3000:] + console[-4000:]
    assert _vsas(accept_attributes(out)) == EXPECTED_VSAS  # and passed on to the NAS
    home = server.radius[1]
    m = re.search(rf"Received Access-Accept Id \d+ from 127\.0\.0\.1:{home}.*?(?=\n\(\d+\) [^ ]|\Z)",
                  console, re.S)
    assert m, console[-4000:]
    received = [line.split(")", 1)[1].strip() for line in m.group(0).splitlines()[1:]
                if line.startswith("(")]
    found = [line for line in received if line in EXPECTED_BY_NAME]
    assert found == EXPECTED_BY_NAME, "\n".join(received)
