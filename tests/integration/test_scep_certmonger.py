"""SCEP against the running `certgate serve` with certmonger 0.79 (GET, AES-256, decimal
transactionID, strict OpenSSL CertRep checks): the getcert daemon flow on a private D-Bus
session (scep.md §7), and scep-submit -c / -C for caps and content types."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support import ServerProcess, certgate, require_tool

pytestmark = pytest.mark.integration

SCEP_SUBMIT = "/usr/lib/certmonger/scep-submit"

RUN_CM = """#!/bin/bash
S="$STATE_DIR"
certmonger -s -n -d 3 > "$S/cm.log" 2>&1 & CMPID=$!
trap 'kill $CMPID 2>/dev/null' EXIT
# wait for *our* daemon on the bus (getcert would D-Bus-activate another one)
for i in $(seq 100); do
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \\
    org.freedesktop.DBus.NameHasOwner string:org.fedorahosted.certmonger 2>/dev/null \\
    | grep -q 'boolean true' && break
  sleep 0.1
done
getcert add-scep-ca -s -c Certgate -u "$SCEP_URL" -N "$CA_FILE" || exit 10
for i in $(seq 100); do getcert list-cas -s -c Certgate | grep -q 'thumbprint' && break; sleep 0.1; done
getcert request -s -c Certgate -k "$S/out/dev.key" -f "$S/out/dev.crt" \\
   -N CN=device01.example.com -D device01.example.com -L "$CHALLENGE" -I dev01 -w -v
getcert list -s -i dev01
"""


def pki(config: Path) -> Path:
    return config.parent / "var" / "pki"


def run_certmonger(tmp_path: Path, url: str, ca_file: Path, challenge: str
                   ) -> tuple[subprocess.CompletedProcess, Path]:
    require_tool("certmonger")
    require_tool("getcert")
    dbus = require_tool("dbus-run-session")
    script = tmp_path / "run_cm.sh"
    script.write_text(RUN_CM)
    script.chmod(0o755)
    state = tmp_path / "cm"
    for d in ("cas", "requests", "local", "tmp", "out"):
        (state / d).mkdir(parents=True, exist_ok=True)
    # in the session's environment, so even a D-Bus-activated daemon stays in tmp_path
    env = {**os.environ, "STATE_DIR": str(state), "SCEP_URL": url, "CA_FILE": str(ca_file),
           "CHALLENGE": challenge, "CERTMONGER_CAS_DIR": str(state / "cas"),
           "CERTMONGER_REQUESTS_DIR": str(state / "requests"),
           "CERTMONGER_LOCAL_CA_DIR": str(state / "local"), "CERTMONGER_TMPDIR": str(state / "tmp")}
    proc = subprocess.Popen([dbus, "--", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the session we started (dbus-daemon, script, certmonger)
        out, _ = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, ""), state


def test_certmonger_daemon_enrolls(server: ServerProcess, initialized: Path, tmp_path: Path) -> None:
    token = certgate("challenge", "create", "--group", "staff", "--subject", "device01.example.com",
                     "--san", "dns:device01.example.com", "--device-id", "cm-1",
                     config=initialized).stdout.strip()
    result, state = run_certmonger(tmp_path, f"{server.http}/scep/staff", pki(initialized) / "root.crt",
                                   token)
    log = (state / "cm.log").read_text(errors="replace") if (state / "cm.log").exists() else ""
    assert "status: MONITORING" in result.stdout, result.stdout + log[-4000:] + server.log()[-3000:]
    crt = state / "out" / "dev.crt"
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=device01.example.com"
    assert cert.issuer == x509.load_pem_x509_certificate(
        (pki(initialized) / "groups/staff/ca.crt").read_bytes()).subject
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    r = subprocess.run(["openssl", "verify", "-CAfile", str(pki(initialized) / "root.crt"),
                        "-untrusted", str(pki(initialized) / "groups/staff/ca.crt"), str(crt)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads(certgate("certs", "list", "--json", config=initialized).stdout)
    row = next(x for x in rows if x["serial"] == format(cert.serial_number, "x"))
    assert row["group"] == "staff" and row["device_id"] == "cm-1" and row["source"] == "scep"
    # certmonger sent GET with a decimal transactionID
    assert "Traceback" not in server.log()


def test_scep_submit_caps_and_ca_certs(server: ServerProcess, initialized: Path) -> None:
    if not os.path.exists(SCEP_SUBMIT):
        require_tool("scep-submit")  # skips (or fails in CI) with the usual message
    url = f"{server.http}/scep/staff"
    caps = subprocess.run([SCEP_SUBMIT, "-u", url, "-c"], capture_output=True, text=True, timeout=30)
    assert caps.returncode == 0, caps.stderr
    assert caps.stdout.split() == ["POSTPKIOperation", "Renewal", "SHA-512", "SHA-384", "SHA-256",
                                   "SHA-224", "AES", "SCEPStandard"]
    certs = subprocess.run([SCEP_SUBMIT, "-u", url + "/pkiclient.exe", "-C"], capture_output=True,
                           text=True, timeout=30)
    assert certs.returncode == 0, certs.stderr
    got = x509.load_pem_x509_certificates(certs.stdout.encode())
    base = pki(initialized) / "groups/staff"
    ra = x509.load_pem_x509_certificate((base / "ra.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((base / "ca.crt").read_bytes())
    assert got[0] == ra and ca in got  # RA first, then the group CA and (default) the root
    root = x509.load_pem_x509_certificate((pki(initialized) / "root.crt").read_bytes())
    assert root in got and len(got) == 3
    status, body = server.get("/scep/staff?operation=GetCACert")
    assert status == 200
    status, _ = server.get("/scep/guests/cgi-bin/pkiclient.exe?operation=GetCACert&message=x")
    assert status == 200
