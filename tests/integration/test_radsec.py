"""RadSec (RFC 6614) against real RadSec clients, with `certgate serve` as the TLS server.

* radsecproxy (Debian) takes eapol_test's RADIUS/UDP and forwards it over TLS to certgate's
  [radsec] listener: eapol_test prints "MPPE keys OK" through it, with TLS 1.2 and 1.3 on
  the RadSec hop; accounting sent to radsecproxy reaches certgate over TLS and is recorded;
* FreeRADIUS 3.2 as a proxy whose home_server is certgate (`proto = tcp` + `tls {}`);
* radsecproxy holding a certificate from another CA, or a revoked NAS certificate issued by
  `certgate certs issue --profile nas`, is refused (and eapol_test gets no answer).

Skips locally without radsecproxy / freeradius / eapol_test, fails in CI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from radius import packet as rp
from tests.support import (
    IN_CI,
    TOKEN,
    ServerProcess,
    certgate,
    free_port,
    require_tool,
    run_eapol_test,
    write_config,
)

PROXY_SECRET = "proxy-secret-0123"  # eapol_test <-> radsecproxy / FreeRADIUS (UDP)


def _radsecproxy() -> str:
    path = shutil.which("radsecproxy") or (
        "/usr/sbin/radsecproxy" if os.access("/usr/sbin/radsecproxy", os.X_OK) else None)
    if path is None:
        why = "radsecproxy not installed (scripts/install-test-deps.sh installs it)"
        pytest.fail(why) if IN_CI else pytest.skip(why)
    return path


def _wait_udp_bound(port: int, proc: subprocess.Popen, what: str, log: Path) -> None:
    hexport = f":{port:04X}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited {proc.returncode}:\n{log.read_text()}")
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                if any(hexport in line.split()[1] for line in Path(table).read_text().splitlines()[1:]):
                    return
            except OSError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"{what}: UDP port {port} not bound:\n{log.read_text()}")


class RadsecProxy:
    """radsecproxy -f (foreground) as our child: UDP in, TLS out to certgate; stopped by PID."""

    def __init__(self, work: Path, radsec_port: int, chain: Path, key: Path, ca: Path,
                 tls: str | None = None, source: str | None = None) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.port = free_port(socket.SOCK_DGRAM)
        self.log = work / "radsecproxy.log"
        version = f"\n    TlsVersion TLS1_{tls[-1]}" if tls else ""
        self.conf = work / "radsecproxy.conf"
        source_line = f"SourceTLS {source}:0\n" if source else ""
        self.conf.write_text(f"""\
ListenUDP 127.0.0.1:{self.port}
{source_line}LogLevel 5
tls default {{
    CACertificateFile {ca}
    CertificateFile {chain}
    CertificateKeyFile {key}{version}
}}
client eapol_test {{
    host 127.0.0.1
    type udp
    secret {PROXY_SECRET}
}}
server certgate {{
    host 127.0.0.1
    port {radsec_port}
    type tls
    tls default
    secret radsec
    statusServer on
    CertificateNameCheck off
    matchCertificateAttribute SubjectAltName:DNS:/^radius\\.certgate\\.test$/
}}
realm * {{
    server certgate
    accountingServer certgate
}}
""")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> RadsecProxy:
        binary = _radsecproxy()
        check = subprocess.run([binary, "-p", "-c", str(self.conf)], capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log.write_text("")  # -f logs to stderr: the same file
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen([binary, "-f", "-c", str(self.conf), "-i",
                                      str(self.work / "pid")],
                                     stdout=self._out, stderr=subprocess.STDOUT)
        _wait_udp_bound(self.port, self.proc, "radsecproxy", self.log)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):  # type: ignore[no-untyped-def]
    """certgate serve with [radsec] on a free TCP port, its root as client_ca; a device
    certificate and two NAS certificates (profile nas)."""
    require_tool("eapol_test")
    tmp = tmp_path_factory.mktemp("radsec")
    radsec_port = free_port()
    config = write_config(tmp / "cg", extra=f"""
[radsec]
listen = "127.0.0.1:{radsec_port}"
client_ca = "var/pki/root.crt"
idle_timeout = 60

[[radius.clients]]
name = "cloud"
address = "127.0.0.2/32"
transports = ["radsec"]
radsec_name = "nas-1.example.test"
""")
    certgate("init", config=config)
    out = tmp / "certs"
    serials = {"laptop-01": certgate("certs", "issue", "--group", "staff", "--cn", "laptop-01",
                                     "--out", str(out), config=config).stdout.strip()}
    for cn in ("nas-1.example.test", "nas-2.example.test", "nas-3.example.test"):
        r = certgate("certs", "issue", "--profile", "nas", "--group", "staff", "--cn", cn,
                     "--out", str(out), config=config)
        serials[cn] = r.stdout.strip()
    server = ServerProcess(config, tmp / "serve.log").start()
    try:
        yield {"tmp": tmp, "config": config, "server": server, "port": radsec_port,
               "root": config.parent / "var" / "pki" / "root.crt", "out": out,
               "serials": serials}
    finally:
        server.stop()


def _metric(server: ServerProcess, name: str, **labels: str) -> float:
    _, body = server.get("/metrics")
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.decode().splitlines():
        if line.startswith(name + "{"):
            got = line[len(name) + 1:line.index("}")]
            if ",".join(sorted(got.split(","))) == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _eapol(lab, port: int, work: Path, tls: str = "1.3", timeout: int = 8) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    out = lab["out"]
    return run_eapol_test(("127.0.0.1", port), lab["root"], out / "laptop-01.chain.pem",
                          out / "laptop-01.key", work, tls=tls, secret=PROXY_SECRET,
                          timeout=timeout)


@pytest.mark.parametrize("hop", ["1.2", "1.3"])
def test_radsecproxy_forwards_eapol_test_over_tls(lab, hop: str) -> None:  # type: ignore[no-untyped-def]
    """eapol_test -> radsecproxy (UDP) -> certgate (RadSec, TLS `hop`): MPPE keys OK."""
    server = lab["server"]
    out = lab["out"]
    before = _metric(server, "certgate_radius_requests_total", client="loopback",
                     code="access_request", transport="radsec")
    work = lab["tmp"] / f"rsp-{hop}"
    with RadsecProxy(work, lab["port"], out / "nas-1.example.test.chain.pem",
                     out / "nas-1.example.test.key", lab["root"], tls=hop) as proxy:
        code, text = _eapol(lab, proxy.port, work, tls="1.3" if hop == "1.3" else "1.2")
        assert code == 0 and "MPPE keys OK: 1  mismatch: 0" in text and "SUCCESS" in text, (
            text[-3000:] + proxy.text()[-3000:] + server.log()[-3000:])
    log = server.log()
    assert re.search(rf"RadSec connection client=loopback address=127\.0\.0\.1:\d+ "
                     rf"tls=TLSv{re.escape(hop)} ", log), log[-3000:]
    after = _metric(server, "certgate_radius_requests_total", client="loopback",
                    code="access_request", transport="radsec")
    assert after >= before + 3  # the whole EAP-TLS conversation came over RadSec
    assert _metric(server, "certgate_radsec_handshakes_total", client="loopback", result="ok") >= 1


def _accounting_request(ident: int, session: str, secret: str, serial_class: bytes) -> bytes:
    attrs = b"".join(bytes((t, len(v) + 2)) + v for t, v in (
        (40, struct.pack("!I", 1)),  # Acct-Status-Type Start
        (1, b"laptop-01"),  # User-Name: radsecproxy picks the realm from it
        (44, session.encode()),  # Acct-Session-Id
        (4, socket.inet_aton("127.0.0.1")),  # NAS-IP-Address
        (31, b"02-00-00-00-00-42"),  # Calling-Station-Id
        (25, serial_class),  # Class from the Access-Accept
    ))
    header = struct.pack("!BBH", 4, ident, 20 + len(attrs))
    auth = hashlib.md5(header + bytes(16) + attrs + secret.encode()).digest()
    return header + auth + attrs


def test_accounting_over_radsec_is_recorded(lab) -> None:  # type: ignore[no-untyped-def]
    """An Accounting-Request handed to radsecproxy reaches certgate over TLS, is stored
    before the Accounting-Response, and the response travels back to the NAS."""
    server, out = lab["server"], lab["out"]
    serial = int(lab["serials"]["laptop-01"], 16)
    klass = f"certgate:staff:{serial:x}".encode()
    work = lab["tmp"] / "rsp-acct"
    before = _metric(server, "certgate_radius_accounting_requests_total", client="loopback",
                     status_type="start", transport="radsec")
    with RadsecProxy(work, lab["port"], out / "nas-1.example.test.chain.pem",
                     out / "nas-1.example.test.key", lab["root"]) as proxy:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            request = _accounting_request(7, "radsec-acct-1", PROXY_SECRET, klass)
            reply = None
            for _ in range(5):  # the first may race radsecproxy's TLS connection set-up
                s.sendto(request, ("127.0.0.1", proxy.port))
                try:
                    reply = s.recv(4096)
                    break
                except TimeoutError:
                    continue
        assert reply is not None and reply[0] == 5 and reply[1] == 7, proxy.text()[-3000:]
        expected = hashlib.md5(reply[:4] + request[4:20] + reply[20:] + PROXY_SECRET.encode())
        assert reply[4:20] == expected.digest()  # radsecproxy re-signed certgate's response
    headers = {"Authorization": f"Bearer {TOKEN}"}
    _, body = server.get("/api/v1/sessions", headers)
    sessions = [s for s in json.loads(body) if s["acct_session_id"] == "radsec-acct-1"]
    assert sessions, body + server.log()[-3000:].encode()
    assert sessions[0]["client"] == "loopback" and sessions[0]["group"] == "staff"
    assert int(str(sessions[0]["serial"]), 16) == serial
    assert _metric(server, "certgate_radius_accounting_requests_total", client="loopback",
                   status_type="start", transport="radsec") == before + 1


def _foreign_nas(directory: Path) -> tuple[Path, Path]:
    """A NAS certificate from a CA certgate does not trust (clientAuth, valid)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other Vendor CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue-nas")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    chain, key_path = directory / "rogue.chain.pem", directory / "rogue.key"
    pem = serialization.Encoding.PEM
    chain.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return chain, key_path


def test_a_nas_certificate_from_another_ca_is_refused(lab) -> None:  # type: ignore[no-untyped-def]
    server = lab["server"]
    before = _metric(server, "certgate_radsec_handshakes_total", client="loopback", result="tls_error")
    work = lab["tmp"] / "rsp-foreign"
    chain, key = _foreign_nas(work)
    with RadsecProxy(work, lab["port"], chain, key, lab["root"]) as proxy:
        code, text = _eapol(lab, proxy.port, work, timeout=4)
        assert code != 0 and "SUCCESS" not in text
    assert _metric(server, "certgate_radsec_handshakes_total", client="loopback",
                   result="tls_error") >= before + 1
    assert "certificate verify failed" in server.log(), server.log()[-3000:]


def test_a_nas_certificate_not_in_the_inventory_is_refused(lab) -> None:  # type: ignore[no-untyped-def]
    """Signed with the staff intermediate's own key (as with a stolen key), but never issued
    by certgate: chains to client_ca, refused as not_issued ([radius] require_inventory)."""
    server = lab["server"]
    pki = lab["config"].parent / "var" / "pki"
    ca = x509.load_pem_x509_certificate((pki / "groups" / "staff" / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "groups" / "staff" / "ca.key").read_bytes(),
                                                None)
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minted-nas")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    work = lab["tmp"] / "rsp-minted"
    work.mkdir()
    pem = serialization.Encoding.PEM
    (work / "minted.chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (work / "minted.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    before = _metric(server, "certgate_radsec_handshakes_total", client="loopback", result="not_issued")
    with RadsecProxy(work, lab["port"], work / "minted.chain.pem", work / "minted.key",
                     lab["root"]) as proxy:
        code, text = _eapol(lab, proxy.port, work, timeout=4)
        assert code != 0 and "SUCCESS" not in text
    assert _metric(server, "certgate_radsec_handshakes_total", client="loopback",
                   result="not_issued") >= before + 1, server.log()[-3000:]
    assert "not in the inventory" in server.log()


def test_a_revoked_nas_certificate_is_refused(lab) -> None:  # type: ignore[no-untyped-def]
    """nas-2 authenticates through radsecproxy; revoking its certificate (certgate revoke, a
    separate process: the server follows the change feed) ends the open RadSec connection, and
    a new connection with it is refused: eapol_test gets no answer."""
    server, out = lab["server"], lab["out"]
    serial = lab["serials"]["nas-2.example.test"]
    work = lab["tmp"] / "rsp-revoked"
    closed = _metric(server, "certgate_radsec_connections_closed_total", reason="revoked")
    refused = _metric(server, "certgate_radsec_handshakes_total", client="loopback", result="revoked")
    with RadsecProxy(work, lab["port"], out / "nas-2.example.test.chain.pem",
                     out / "nas-2.example.test.key", lab["root"]) as proxy:
        code, text = _eapol(lab, proxy.port, work)
        assert code == 0 and "MPPE keys OK: 1  mismatch: 0" in text, text[-2000:]
        certgate("revoke", "--serial", serial, "--reason", "keyCompromise", "--yes",
                 config=lab["config"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _metric(
                server, "certgate_radsec_connections_closed_total", reason="revoked") == closed:
            time.sleep(0.2)
        assert _metric(server, "certgate_radsec_connections_closed_total",
                       reason="revoked") == closed + 1, server.log()[-3000:]
    work = lab["tmp"] / "rsp-revoked-2"  # a fresh radsecproxy: its handshake is refused
    with RadsecProxy(work, lab["port"], out / "nas-2.example.test.chain.pem",
                     out / "nas-2.example.test.key", lab["root"]) as proxy:
        code, text = _eapol(lab, proxy.port, work, timeout=4)
        assert code != 0 and "SUCCESS" not in text
    assert _metric(server, "certgate_radsec_handshakes_total", client="loopback",
                   result="revoked") >= refused + 1
    assert re.search(r"RadSec connection client=loopback .* refused reason=revoked", server.log())


def test_a_radsec_only_client_pinned_to_its_certificate_name(lab) -> None:  # type: ignore[no-untyped-def]
    """Client "cloud" (127.0.0.2/32, transports = ["radsec"], radsec_name nas-1.example.test):
    radsecproxy connecting from 127.0.0.2 with nas-1's certificate is served as "cloud";
    with nas-3's (another name, same CA) it is refused; over UDP "cloud" is not served."""
    server, out = lab["server"], lab["out"]
    labels = {"client": "cloud", "code": "access_request"}
    before = _metric(server, "certgate_radius_requests_total", transport="radsec", **labels)
    work = lab["tmp"] / "rsp-pinned"
    with RadsecProxy(work, lab["port"], out / "nas-1.example.test.chain.pem",
                     out / "nas-1.example.test.key", lab["root"], source="127.0.0.2") as proxy:
        code, text = _eapol(lab, proxy.port, work)
        assert code == 0 and "MPPE keys OK: 1  mismatch: 0" in text, (
            text[-2000:] + proxy.text()[-2000:] + server.log()[-2000:])
    assert _metric(server, "certgate_radius_requests_total", transport="radsec",
                   **labels) >= before + 3
    assert re.search(r"RadSec connection client=cloud address=127\.0\.0\.2:\d+ tls=",
                     server.log())

    mismatch = _metric(server, "certgate_radsec_handshakes_total", client="cloud",
                       result="name_mismatch")
    work = lab["tmp"] / "rsp-pinned-other"
    with RadsecProxy(work, lab["port"], out / "nas-3.example.test.chain.pem",
                     out / "nas-3.example.test.key", lab["root"], source="127.0.0.2") as proxy:
        code, text = _eapol(lab, proxy.port, work, timeout=4)
        assert code != 0 and "SUCCESS" not in text
    assert _metric(server, "certgate_radsec_handshakes_total", client="cloud",
                   result="name_mismatch") >= mismatch + 1
    assert "pins nas-1.example.test" in server.log()

    # UDP from 127.0.0.2 with the "radsec" secret: not "cloud" (the loopback client's
    # secret applies), so it is not answered and "cloud" has no UDP request
    auth = os.urandom(16)
    probe = rp.encode_access_request(9, auth, b"radsec", [], code=rp.Code.STATUS_SERVER)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))
        s.settimeout(1.5)
        s.sendto(probe, server.radius)
        with pytest.raises(TimeoutError):
            s.recv(4096)
    assert _metric(server, "certgate_radius_requests_total", transport="udp",
                   client="cloud", code="status_server") == 0


# --- FreeRADIUS as the RadSec client ----------------------------------------------------

FR_SITE = """\
server radsec_proxy {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = @PORT@
	}
	listen {
		type = acct
		ipaddr = 127.0.0.1
		port = @ACCT_PORT@
	}
	authorize {
		update control {
			&Proxy-To-Realm := "certgate"
		}
	}
	preacct {
		update control {
			&Proxy-To-Realm := "certgate"
		}
	}
	accounting {
	}
	pre-proxy {
	}
	post-proxy {
	}
}
"""

FR_PROXY = """\
proxy server {
	default_fallback = no
}
home_server certgate {
	ipaddr = 127.0.0.1
	port = @RADSEC_PORT@
	type = auth+acct
	secret = radsec
	proto = tcp
	status_check = none
	tls {
		private_key_file = @KEY@
		certificate_file = @CHAIN@
		ca_file = @ROOT@
		fragment_size = 8192
		cipher_list = "DEFAULT"
		tls_min_version = "1.2"
		tls_max_version = "1.3"
		connect_timeout = 10
	}
}
home_server_pool certgate {
	type = fail-over
	home_server = certgate
}
realm certgate {
	auth_pool = certgate
	acct_pool = certgate
	nostrip
}
"""


def test_freeradius_home_server_over_tls(lab) -> None:  # type: ignore[no-untyped-def]
    """FreeRADIUS 3.2 proxies eapol_test's request, and an Accounting-Request, to certgate over
    RadSec (one home_server, type auth+acct, proto tcp with tls {})."""
    require_tool("freeradius")
    if not Path("/etc/freeradius/3.0").is_dir():
        why = "/etc/freeradius/3.0 missing (scripts/install-test-deps.sh installs freeradius)"
        pytest.fail(why) if IN_CI else pytest.skip(why)
    server, out = lab["server"], lab["out"]
    work = lab["tmp"] / "fr"
    raddb = work / "raddb"
    shutil.copytree("/etc/freeradius/3.0", raddb, symlinks=True)
    (work / "log").mkdir()
    (work / "run").mkdir()
    conf = (raddb / "radiusd.conf").read_text()
    conf = re.sub(r"(?m)^raddbdir = .*$", f"raddbdir = {raddb}", conf)
    conf = re.sub(r"(?m)^logdir = .*$", f"logdir = {work / 'log'}", conf)
    conf = re.sub(r"(?m)^run_dir = .*$", f"run_dir = {work / 'run'}", conf)
    conf = re.sub(r"(?m)^(\s*)(user|group) = freerad", r"\1#\2 = freerad", conf)
    (raddb / "radiusd.conf").write_text(conf)
    for d in ("mods-enabled", "sites-enabled"):
        for entry in (raddb / d).iterdir():
            entry.unlink()
    for module in ("always", "attr_filter", "expr"):
        (raddb / "mods-enabled" / module).symlink_to(f"../mods-available/{module}")
    port = free_port(socket.SOCK_DGRAM)
    acct_port = free_port(socket.SOCK_DGRAM)
    (raddb / "sites-enabled" / "radsec_proxy").write_text(
        FR_SITE.replace("@PORT@", str(port)).replace("@ACCT_PORT@", str(acct_port)))
    (raddb / "proxy.conf").write_text(
        FR_PROXY.replace("@RADSEC_PORT@", str(lab["port"]))
        .replace("@KEY@", str(out / "nas-1.example.test.key"))
        .replace("@CHAIN@", str(out / "nas-1.example.test.chain.pem"))
        .replace("@ROOT@", str(lab["root"])))
    (raddb / "clients.conf").write_text(
        f"client eapol {{\n\tipaddr = 127.0.0.1\n\tsecret = {PROXY_SECRET}\n}}\n")
    check = subprocess.run(["freeradius", "-C", "-d", str(raddb)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    console = work / "console.log"
    with console.open("wb") as fh:
        proc = subprocess.Popen(["freeradius", "-X", "-d", str(raddb)], stdout=fh,
                                stderr=subprocess.STDOUT)
    try:
        _wait_udp_bound(port, proc, "freeradius", console)
        before = _metric(server, "certgate_radius_requests_total", client="loopback",
                         code="access_request", transport="radsec")
        code, text = _eapol(lab, port, work, timeout=10)
        assert code == 0 and "MPPE keys OK: 1  mismatch: 0" in text and "SUCCESS" in text, (
            text[-2000:] + console.read_text(errors="replace")[-4000:] + server.log()[-2000:])
        assert _metric(server, "certgate_radius_requests_total", client="loopback",
                       code="access_request", transport="radsec") >= before + 3
        klass = f"certgate:staff:{int(lab['serials']['laptop-01'], 16):x}".encode()
        request = _accounting_request(11, "fr-acct-1", PROXY_SECRET, klass)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(request, ("127.0.0.1", acct_port))
            reply = s.recv(4096)
        assert reply[0] == 5 and reply[1] == 11
        _, body = server.get("/api/v1/sessions", {"Authorization": f"Bearer {TOKEN}"})
        assert [x for x in json.loads(body) if x["acct_session_id"] == "fr-acct-1"], (
            body + console.read_text(errors="replace")[-3000:].encode())
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
