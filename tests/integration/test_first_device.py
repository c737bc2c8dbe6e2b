"""The README's "First device" section, run as written on a scratch demo, and every Linux
profile `certgate profile` prints used by a real supplicant:

- eapol_test profile: eapol_test against `certgate serve` -> SUCCESS, "MPPE keys OK";
- wpa_supplicant Wi-Fi profile (an SSID that needs hex): eapol_test parses and runs its
  network block (WPA-EAP) -> SUCCESS;
- wpa_supplicant wired profile: wpa_supplicant -D wired through hostapd on the wired NAS
  harness -> authorized;
- NetworkManager keyfile: every section and key checked against nm-settings-keyfile(5) /
  nm-settings-nmcli(5); `nmcli --offline` reads it when NetworkManager >= 1.42 is present
  (network-manager is not installed by scripts/install-test-deps.sh: on Debian 12 it pulls a
  systemd/udev upgrade onto the test machine for a parse check, so that test skips without it).
"""

from __future__ import annotations

import configparser
import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_wired_nas import _harness, nas  # noqa: F401 - the nas fixture
from tests.support import REPO, ServerProcess, certgate, free_port, require_tool

pytestmark = pytest.mark.integration


def readme_blocks(section: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start:end if end != -1 else None]
    return re.findall(r"```sh\n(.*?)```", body, re.S)


def test_readme_first_device_commands_in_order(tmp_path: Path) -> None:
    require_tool("eapol_test")
    radius_port = free_port(socket.SOCK_DGRAM)
    http_port = free_port()
    demo = certgate("demo", "--dir", str(tmp_path / "demo"), "--no-serve",
                    "--radius-listen", f"127.0.0.1:{radius_port}",
                    "--http-listen", f"127.0.0.1:{http_port}")
    assert "profile eapol_test --cert" in demo.stderr and "eapol_test -c" in demo.stderr
    blocks = readme_blocks("First device")
    assert len(blocks) == 2, "the First device section should have its two sh blocks"
    script = "\n".join(blocks)
    assert "-p 1812" in script and ".venv/bin/certgate" in script
    script = script.replace(".venv/bin/certgate", f"{sys.executable} -m certgate")
    script = script.replace("-p 1812", f"-p {radius_port}")
    server = ServerProcess(tmp_path / "demo" / "certgate.toml", tmp_path / "serve.log").start()
    try:
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    out = r.stdout + r.stderr
    assert r.returncode == 0, out + server.log()
    root = (tmp_path / "demo/var/pki/root.crt").read_text()
    assert r.stdout.startswith(root), "certgate ca root should print the demo's root first"
    assert "MPPE keys OK: 1  mismatch: 0" in r.stdout and r.stdout.rstrip().endswith("SUCCESS")
    clients = tmp_path / "demo/clients"
    for name in ("laptop-01.eapol.conf", "laptop-01.wpa.conf", "laptop-01.wired.conf",
                 "laptop-01.nmconnection"):
        assert stat.S_IMODE((clients / name).stat().st_mode) == 0o600, name
    conf = (clients / "laptop-01.eapol.conf").read_text()
    assert f'ca_cert="{tmp_path}/demo/var/pki/root.crt"' in conf
    assert 'domain_suffix_match="radius.certgate.test"' in conf
    assert f"# eapol_test -c {clients}/laptop-01.eapol.conf -a 127.0.0.1 -p {radius_port}" in conf


def _issue(config: Path, out: Path, cn: str) -> tuple[Path, Path]:
    certgate("certs", "issue", "--group", "staff", "--cn", cn, "--out", str(out), config=config)
    return out / f"{cn}.chain.pem", out / f"{cn}.key"


def _eapol_test(server: ServerProcess, conf: Path) -> str:
    from tests.support import SECRET

    host, port = server.radius
    r = subprocess.run([require_tool("eapol_test"), "-c", str(conf), "-a", host, "-p", str(port),
                        "-s", SECRET, "-t", "8"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr + server.log()
    return r.stdout


def test_wifi_wpa_supplicant_profile_runs_in_eapol_test(server: ServerProcess, initialized: Path,
                                                        tmp_path: Path) -> None:
    chain, key = _issue(initialized, tmp_path / "certs", "phone-01")
    conf = tmp_path / "wifi.conf"
    ssid = 'Corp "Wi-Fi"'
    certgate("profile", "wpa_supplicant", "--ssid", ssid, "--cert", str(chain), "--key", str(key),
             "--out", str(conf), config=initialized)
    text = conf.read_text()
    assert f"\tssid={ssid.encode().hex()}\n" in text and "key_mgmt=WPA-EAP" in text
    out = _eapol_test(server, conf)
    assert "MPPE keys OK: 1  mismatch: 0" in out and out.rstrip().endswith("SUCCESS")


def test_eapol_test_profile_refuses_foreign_group_and_missing_cert(initialized: Path,
                                                                   tmp_path: Path) -> None:
    chain, key = _issue(initialized, tmp_path / "certs", "laptop-09")
    r = certgate("profile", "eapol_test", "--cert", str(chain), "--key", str(key),
                 "--group", "guests", config=initialized, check=False)
    assert r.returncode == 2 and "issued by group staff's intermediate, not guests's" in r.stderr
    r = certgate("profile", "eapol_test", "--cert", str(tmp_path / "nope.pem"), "--key", str(key),
                 config=initialized, check=False)
    assert r.returncode == 2 and "--cert" in r.stderr and "certs issue" in r.stderr
    assert "Traceback" not in r.stderr
    r = certgate("profile", "networkmanager", "--wired", "--uuid", "nope", "--cert", str(chain),
                 "--key", str(key), config=initialized, check=False)
    assert r.returncode == 2 and "--uuid 'nope' is not a UUID" in r.stderr


def test_wired_profile_on_the_wired_nas(server: ServerProcess, initialized: Path,
                                        nas: Path, tmp_path: Path) -> None:  # noqa: F811
    chain, key = _issue(initialized, tmp_path / "certs", "desk-01")
    conf = tmp_path / "wired.conf"
    certgate("profile", "wpa_supplicant", "--wired", "--cert", str(chain), "--key", str(key),
             "--out", str(conf), config=initialized)
    assert "ap_scan=0" in conf.read_text()
    r = _harness("auth", "-w", str(nas), "--conf", str(conf))
    assert r.returncode == 0 and r.stdout.startswith("authorized"), \
        r.stdout + r.stderr + (nas / "sta.log").read_text(errors="replace")[-3000:]


# nm-settings-keyfile(5): keyfile sections are settings by their alias (wifi = 802-11-wireless,
# wifi-security = 802-11-wireless-security, ethernet = 802-3-ethernet); the keys are the
# property names of nm-settings-nmcli(5).
NM_KEYS = {
    "connection": {"id", "uuid", "type", "interface-name"},
    "wifi": {"mode", "ssid"},
    "wifi-security": {"key-mgmt"},
    "ethernet": set(),
    "802-1x": {"eap", "identity", "ca-cert", "client-cert", "private-key",
               "private-key-password", "private-key-password-flags", "domain-suffix-match",
               "phase1-auth-flags"},
    "ipv4": {"method"},
    "ipv6": {"method", "addr-gen-mode"},
}


def _keyfile(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


@pytest.mark.parametrize("medium", ["wifi", "wired"])
def test_networkmanager_keyfile_keys(initialized: Path, tmp_path: Path, medium: str) -> None:
    chain, key = _issue(initialized, tmp_path / "certs", f"nm-{medium}")
    out = tmp_path / f"nm-{medium}.nmconnection"
    flag = ["--ssid", "CorpWiFi"] if medium == "wifi" else ["--wired"]
    r = certgate("profile", "networkmanager", *flag, "--cert", str(chain), "--key", str(key),
                 "--out", str(out), config=initialized)
    assert "nmcli connection load" in r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    kf = _keyfile(out)
    for section in kf.sections():
        assert section in NM_KEYS, f"[{section}] is not a NetworkManager setting"
        unknown = set(kf[section]) - NM_KEYS[section]
        assert not unknown, f"[{section}] {unknown} are not documented keys"
    conn, dot1x = kf["connection"], kf["802-1x"]
    assert conn["type"] == ("wifi" if medium == "wifi" else "ethernet")
    assert conn["id"] == f"certgate-nm-{medium}" and re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", conn["uuid"])
    if medium == "wifi":
        assert kf["wifi"]["ssid"] == "CorpWiFi" and kf["wifi"]["mode"] == "infrastructure"
        assert kf["wifi-security"]["key-mgmt"] == "wpa-eap"
    else:
        assert "wifi" not in kf and "ethernet" in kf
    assert dot1x["eap"] == "tls;" and dot1x["identity"] == f"nm-{medium}"
    assert dot1x["domain-suffix-match"] == "radius.certgate.test"
    assert dot1x["ca-cert"] == str(initialized.parent / "var/pki/root.crt")
    assert dot1x["client-cert"] == str(chain) and dot1x["private-key"] == str(key)
    for name in ("ca-cert", "client-cert", "private-key"):
        assert Path(dot1x[name]).is_absolute() and Path(dot1x[name]).is_file()
    assert dot1x["private-key-password-flags"] == "4"  # unencrypted key: nothing to ask
    assert dot1x["phase1-auth-flags"] == "3"  # TLS 1.0 and 1.1 disabled (tls_min_version 1.2)


def test_nmcli_offline_reads_the_keyfile(initialized: Path, tmp_path: Path) -> None:
    nmcli = shutil.which("nmcli")
    if nmcli is None:
        pytest.skip("nmcli not installed (network-manager is deliberately not in "
                    "install-test-deps.sh; test_networkmanager_keyfile_keys checks the keys)")
    help_text = subprocess.run([nmcli, "--help"], capture_output=True, text=True).stdout
    if "--offline" not in help_text:
        pytest.skip("this nmcli has no --offline (NetworkManager < 1.42)")
    chain, key = _issue(initialized, tmp_path / "certs", "nm-offline")
    out = tmp_path / "x.nmconnection"
    certgate("profile", "networkmanager", "--ssid", "CorpWiFi", "--cert", str(chain), "--key",
             str(key), "--out", str(out), config=initialized)
    r = subprocess.run([nmcli, "--offline", "connection", "modify", "connection.autoconnect",
                        "no"], input=out.read_text(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "domain-suffix-match=radius.certgate.test" in r.stdout

