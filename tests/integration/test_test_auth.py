"""`certgate test-auth` against a live `certgate serve` and against FreeRADIUS 3.2.

certgate: accept with the VLAN printed and MPPE keys verified (defaults from the config,
and with everything given explicitly, no config), --json parsed, a revoked certificate
rejected (exit 1, the reason from `certgate explain` on the server's machine), a wrong
secret is no answer (exit 3, saying both possibilities), usage errors exit 2.
FreeRADIUS (bench/peer/mkpki.sh + bench/peer/freeradius/start.sh on a free loopback port):
accept with MPPE keys verified on TLS 1.2 and 1.3, a CRL-revoked certificate rejected.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import IN_CI, REPO, SECRET, ServerProcess, certgate, free_port, require_tool

pytestmark = pytest.mark.integration


def _issue(config: Path, out: Path, cn: str, group: str = "staff") -> tuple[Path, Path, str]:
    serial = certgate("certs", "issue", "--group", group, "--cn", cn, "--out", str(out), "--p12",
                      config=config).stdout.strip()
    return out / f"{cn}.chain.pem", out / f"{cn}.key", serial


def test_against_certgate(server: ServerProcess, initialized: Path, tmp_path: Path) -> None:
    out = tmp_path / "clients"
    cert, key, _ = _issue(initialized, out, "laptop-01")
    bad_cert, bad_key, bad_serial = _issue(initialized, out, "stolen-01", "guests")
    certgate("revoke", "--serial", bad_serial, "--reason", "keyCompromise", "--yes",
             config=initialized)

    # defaults from the config: server, secret (never printed), root, server_name
    r = certgate("test-auth", "--cert", str(cert), "--key", str(key), config=initialized,
                 check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RESULT: Access-Accept" in r.stdout
    assert "VLAN 10" in r.stdout and 'Tunnel-Private-Group-Id = "10"' in r.stdout
    assert "MPPE keys OK" in r.stdout
    assert "name radius.certgate.test OK" in r.stdout
    assert SECRET not in r.stdout + r.stderr

    # no config at all: everything explicit, the secret from a file; TLS 1.2; JSON
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    root = initialized.parent / "var" / "pki" / "root.crt"
    host, port = server.radius
    for tls in ("1.2", "1.3"):
        r = certgate("test-auth", "--cert", str(cert), "--key", str(key), "--server",
                     f"{host}:{port}", "--secret-file", str(secret_file), "--ca", str(root),
                     "--server-name", "radius.certgate.test", "--tls", tls, "--json",
                     "--identity", "anonymous@example.test", "--calling-station",
                     "02-11-22-33-44-55", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        result = json.loads(r.stdout)
        assert result["result"] == "accept" and result["exit_code"] == 0
        assert result["tls"]["version"] == tls
        assert result["mppe"]["verified"] is True
        attrs = {a["name"]: a for a in result["reply_attributes"]}
        assert attrs["Tunnel-Private-Group-Id"]["value"] == "10"
        assert attrs["User-Name"]["value"] == "laptop-01"  # the certificate, not our hint
        assert len(result["round_trips"]) >= 4
        assert all(t["milliseconds"] >= 0 for t in result["round_trips"])

    # the PKCS#12 a device would hold (certs issue --p12, no password)
    r = certgate("test-auth", "--p12", str(out / "laptop-01.p12"), "--json", config=initialized,
                 check=False)
    assert r.returncode == 0 and json.loads(r.stdout)["mppe"]["verified"], r.stdout + r.stderr

    # revoked: exit 1, and the reason certgate logs, asked on the server's machine
    r = certgate("test-auth", "--cert", str(bad_cert), "--key", str(bad_key), "--json",
                 config=initialized, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["result"] == "reject" and result["eap"] == "failure"
    assert result["server_explain"]["reason"] == "revoked"
    r = certgate("test-auth", "--cert", str(bad_cert), "--key", str(bad_key),
                 config=initialized, check=False)
    assert r.returncode == 1 and "reason revoked" in r.stdout, r.stdout

    # wrong secret: certgate drops the request; both possibilities are named
    r = certgate("test-auth", "--cert", str(cert), "--key", str(key), "--secret", "wrong",
                 "--timeout", "0.3", "--retries", "1", config=initialized, check=False)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "NO ANSWER" in r.stdout and "shared secret is wrong" in r.stdout
    assert "nothing answers at" in r.stdout
    assert "certgate serve" not in r.stderr and "Traceback" not in r.stderr

    # usage errors: exit 2 with the option named
    for args, words in (((), "--server HOST:PORT"),
                        (("--server", f"{host}:{port}"), "secret"),
                        (("--server", f"{host}:{port}", "--secret", "x"), "--ca FILE"),
                        (("--server", "nowhere"), "HOST:PORT")):
        r = certgate("test-auth", "--cert", str(cert), "--key", str(key), *args, check=False)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    for args in (("--cert", str(key), "--key", str(key)), ("--cert", str(cert)),
                 ("--p12", str(cert)), ("--p12", str(out / "laptop-01.p12"), "--key", str(key))):
        r = certgate("test-auth", *args, config=initialized, check=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)
        assert "--cert" in r.stderr or "--p12" in r.stderr, r.stderr


# --- FreeRADIUS ------------------------------------------------------------------------


@pytest.fixture
def freeradius(tmp_path: Path):  # type: ignore[no-untyped-def]
    require_tool("freeradius")
    if not Path("/etc/freeradius/3.0").is_dir():
        why = "/etc/freeradius/3.0 missing (scripts/install-test-deps.sh installs freeradius)"
        pytest.fail(why) if IN_CI else pytest.skip(why)
    peer = REPO / "bench" / "peer"
    pki = tmp_path / "fr-pki"
    subprocess.run([str(peer / "mkpki.sh"), "--ec", str(pki)], check=True, capture_output=True,
                   timeout=120)
    work = tmp_path / "fr"
    port = free_port(socket.SOCK_DGRAM)
    secret = "fr-secret-0123"
    started = subprocess.run([str(peer / "freeradius" / "start.sh"), "-p", str(port), "-s", secret,
                              "-w", str(work), str(pki)], capture_output=True, text=True,
                             timeout=60)
    assert started.returncode == 0, started.stderr
    try:
        yield {"port": port, "secret": secret, "pki": pki, "work": work}
    finally:
        subprocess.run([str(peer / "freeradius" / "stop.sh"), str(work)], timeout=30)


def test_against_freeradius(freeradius, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pki = freeradius["pki"]
    secret_file = tmp_path / "fr-secret"
    secret_file.write_text(freeradius["secret"])
    common = ("--server", f"127.0.0.1:{freeradius['port']}", "--secret-file", str(secret_file),
              "--ca", str(pki / "root.crt"), "--server-name", "radius.test")
    for tls in ("1.2", "1.3"):
        r = certgate("test-auth", "--cert", str(pki / "clients" / "staff-ok.chain.pem"),
                     "--key", str(pki / "clients" / "staff-ok.key"), "--tls", tls, "--json",
                     *common, check=False)
        assert r.returncode == 0, r.stdout + r.stderr + _fr_log(freeradius["work"])
        result = json.loads(r.stdout)
        assert result["result"] == "accept" and result["tls"]["version"] == tls
        assert result["mppe"]["verified"] is True, result["mppe"]
    r = certgate("test-auth", "--cert", str(pki / "clients" / "staff-revoked.chain.pem"),
                 "--key", str(pki / "clients" / "staff-revoked.key"), *common, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "RESULT: Access-Reject" in r.stdout


def _fr_log(work: Path) -> str:
    log = work / "log" / "radius.log"
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""
