"""docs/mdm/generic.md run as written against `certgate serve`: the challenge from the admin API
with curl (section 2), `certgate profile apple` with it (section 3), a real SCEP client
(micromdm scepclient) enrolling with the profile's challenge, CN and key size, then the signed
device-removed webhook with curl + openssl (section 4) revoking exactly that certificate,
and docs/mdm/jamf.md: its [groups.jamf] table and `certgate profile apple` line with the
static secret and `$UDID`, the UDID substituted as Jamf Pro would, scepclient enrolling, the
inventory recording the UDID as the device id (device_id_from = "subject_cn").
"""

from __future__ import annotations

import hashlib
import json
import os
import plistlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support import (
    REPO,
    TOKEN,
    WEBHOOK_SECRET,
    ServerProcess,
    certgate,
    require_tool,
    write_config,
)

pytestmark = pytest.mark.integration

MACS = """
[groups.macs]
vlan = 50
key_types = ["ec-p256", "rsa-2048"]
challenge_modes = ["dynamic"]
include_root = true
legacy_algorithms = true   # scepclient 2.1.0 sends DES/SHA-1 (test_scep_scepclient.py)
"""


def guide_blocks(name: str, lang: str = "sh") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (REPO / "docs/mdm" / name).read_text(), re.S)


def _scepclient(scep: dict, cn: str, ra_pem: Path, dev: Path) -> subprocess.CompletedProcess:
    ra = x509.load_pem_x509_certificate(ra_pem.read_bytes())
    dev.mkdir()
    return subprocess.run(
        ["scepclient", "-server-url", scep["URL"], "-challenge", scep["Challenge"], "-cn", cn,
         "-keySize", str(scep["Keysize"]), "-private-key", str(dev / "dev.key"),
         "-certificate", str(dev / "dev.pem"), "-ca-fingerprint",
         hashlib.sha256(ra.public_bytes(serialization.Encoding.DER)).hexdigest()],
        capture_output=True, text=True, timeout=60)


def _scep_payload(path: Path) -> dict:
    profile = plistlib.loads(path.read_bytes())
    return next(p for p in profile["PayloadContent"]
                if p["PayloadType"] == "com.apple.security.scep")["PayloadContent"]


def test_generic_guide_commands(tmp_path: Path) -> None:
    require_tool("scepclient")
    config = write_config(tmp_path / "cg", extra=MACS)
    certgate("init", config=config)
    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        blocks = guide_blocks("generic.md")
        assert len(blocks) == 3, "generic.md: challenge, profile, webhook"
        env = {**os.environ, "CG": server.http, "ADMIN_TOKEN": TOKEN, "GROUP": "macs",
               "CONFIG": str(config), "WEBHOOK_SECRET": WEBHOOK_SECRET}
        env.pop("CERTGATE_CONFIG", None)
        certgate_cmd = f"{sys.executable} -m certgate"
        script = "\n".join(blocks[:2]).replace("certgate --config", f"{certgate_cmd} --config")
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr + server.log()
        scep = _scep_payload(tmp_path / "mac-01.mobileconfig")
        assert scep["URL"] == f"{server.http}/scep/macs" and len(scep["Challenge"]) > 20
        # the device: a real SCEP client with the profile's challenge, CN and key size
        dev = tmp_path / "dev"
        e = _scepclient(scep, scep["Subject"][-1][0][1],
                        config.parent / "var/pki/groups/macs/ra.crt", dev)
        assert e.returncode == 0, e.stdout + e.stderr + server.log()
        serial = format(x509.load_pem_x509_certificate(
            (dev / "dev.pem").read_bytes()).serial_number, "x")
        rows = {c["serial"]: c for c in json.loads(
            certgate("certs", "list", "--json", config=config).stdout)}
        assert rows[serial]["device_id"] == "C02XK1ABJG5H", rows[serial]

        w = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[2]], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
        assert w.returncode == 0, w.stdout + w.stderr + server.log()
        answer = json.loads(w.stdout)
        assert answer == {"device_id": "C02XK1ABJG5H", "revoked": [serial]}
        again = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[2]], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=60)
        assert json.loads(again.stdout)["revoked"] == [], "idempotent"
        rows = {c["serial"]: c for c in json.loads(
            certgate("certs", "list", "--json", config=config).stdout)}
        assert rows[serial]["status"] == "revoked"
    finally:
        server.stop()


def test_jamf_guide_static_profile(tmp_path: Path) -> None:
    require_tool("scepclient")
    secret_file = tmp_path / "jamf-scep-secret"
    secret_file.write_text("jamf-static-secret-0123456789")
    secret_file.chmod(0o600)
    (toml,) = guide_blocks("jamf.md", "toml")
    toml = toml.replace("/etc/certgate/jamf-scep-secret", str(secret_file))
    toml += "legacy_algorithms = true  # scepclient 2.1.0\n"
    config = write_config(tmp_path / "cg", extra=toml)
    certgate("init", config=config)
    (block,) = guide_blocks("jamf.md")
    script = block.replace("/etc/certgate/certgate.toml", str(config)).replace(
        "/etc/certgate/jamf-scep-secret", str(secret_file)).replace(
        "certgate --config", f"{sys.executable} -m certgate --config")
    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        raw = (tmp_path / "jamf-wifi.mobileconfig").read_bytes()
        assert b"<string>$UDID</string>" in raw
        udid = "00008110-000A1C2E3F45801E"
        delivered = tmp_path / "delivered.mobileconfig"  # what Jamf Pro would send the device
        delivered.write_bytes(raw.replace(b"$UDID", udid.encode()))
        scep = _scep_payload(delivered)
        assert scep["Challenge"] == secret_file.read_text() and "CAFingerprint" in scep
        e = _scepclient(scep, scep["Subject"][-1][0][1],
                        config.parent / "var/pki/groups/jamf/ra.crt", tmp_path / "dev")
        assert e.returncode == 0, e.stdout + e.stderr + server.log()
        rows = json.loads(certgate("certs", "list", "--group", "jamf", "--json",
                                   config=config).stdout)
        assert [row["device_id"] for row in rows] == [udid]
    finally:
        server.stop()
