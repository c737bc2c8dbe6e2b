"""`certgate profile apple` against a running `certgate serve`, with real peers where Apple's
own client cannot run here:

- the written .mobileconfig round-trips through plistlib and passes the schema check of
  tests/unit/certgate/test_profile_apple.py (Apple's documented keys, types and values);
- the SCEP payload's URL answers GetCACaps and GetCACert (with Name as `message`, as Apple's
  client sends it) with 200, and CAFingerprint is the SHA-1 of the root GetCACert returns,
  the top of its chain (what Apple's SecSCEPValidateCACertMessage compares);
- the one-time challenge the profile carries enrolls micromdm scepclient with the profile's
  CN, RSA key size and Name, once (a second use is refused);
- the root payload and TLSTrustedServerNames verify the RADIUS server: `openssl verify
  -purpose sslserver -verify_hostname` on the server certificate, and eapol_test with that
  root, that server name and the SCEP-enrolled certificate -> SUCCESS, MPPE keys OK;
- bad arguments exit 2 naming the option, without a traceback.
"""

from __future__ import annotations

import hashlib
import json
import plistlib
import re
import stat
import subprocess
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from certgate.profiles import apple, linux
from tests.support import SECRET, ServerProcess, certgate, require_tool, write_config
from tests.unit.certgate.test_profile_apple import check_profile

pytestmark = pytest.mark.integration

# scepclient 2.1.0 signs with SHA-1 and encrypts with DES whatever GetCACaps says
# (tests/integration/test_scep_scepclient.py): its group needs the legacy algorithms.
MACS = """
[groups.macs]
vlan = 50
validity_days = 30
key_types = ["ec-p256", "rsa-2048"]
include_root = true
legacy_algorithms = true

[groups.noroot]
include_root = false
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("apple")
    config = write_config(base / "cg", extra=MACS)
    certgate("init", config=config)
    server = ServerProcess(config, base / "serve.log").start()
    yield config, server
    server.stop()


def _payloads(profile: dict) -> dict[str, dict]:
    return {p["PayloadType"]: p for p in profile["PayloadContent"]}


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def test_profile_enrolls_and_authenticates(env, tmp_path: Path) -> None:
    config, server = env
    out = tmp_path / "mac-01.mobileconfig"
    r = certgate("profile", "apple", "--group", "macs", "--ssid", "CorpWiFi", "--wired",
                 "--cn", "mac-01", "--challenge", "--device-id", "C02XK1ABJG5H", "--out", str(out),
                 config=config)
    assert "challenge jti" in r.stderr and "CAFingerprint" not in r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    profile = plistlib.loads(out.read_bytes())
    check_profile(profile)
    payloads = _payloads(profile)
    scep = payloads["com.apple.security.scep"]["PayloadContent"]
    assert scep["URL"] == f"{server.http}/scep/macs" and scep["Name"] == "macs"
    assert scep["Subject"][-1] == [["CN", "mac-01"]] and scep["Keysize"] == 2048

    # the URL as Apple's client uses it: URL?operation=...&message=Name
    status, _, caps = _get(f"{scep['URL']}?operation=GetCACaps&message={scep['Name']}")
    assert status == 200 and b"POSTPKIOperation" in caps
    status, ctype, body = _get(f"{scep['URL']}?operation=GetCACert&message={scep['Name']}")
    assert status == 200 and ctype.startswith("application/x-x509-ca-ra-cert")
    certs = pkcs7.load_der_pkcs7_certificates(body)
    roots = [c for c in certs if c.issuer == c.subject]
    assert len(roots) == 1, "include_root: GetCACert carries the root"
    # what Apple's SecSCEPValidateCACertMessage picks: the chain top as the CA, and an RA leaf
    # allowed to sign and encrypt (digitalSignature + keyEncipherment)
    assert apple.chain_top(certs) == roots[0]
    ras = [c for c in certs if not c.extensions.get_extension_for_class(
        x509.BasicConstraints).value.ca]
    ku = ras[0].extensions.get_extension_for_class(x509.KeyUsage).value
    assert len(ras) == 1 and ku.digital_signature and ku.key_encipherment
    root_der = roots[0].public_bytes(serialization.Encoding.DER)
    assert scep["CAFingerprint"] == hashlib.sha1(root_der).digest()  # noqa: S324
    root_payload = payloads["com.apple.security.root"]["PayloadContent"]
    assert root_payload == root_der, "the root payload is the root GetCACert chains to"

    # the root payload and the trusted server name verify the RADIUS server certificate
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(x509.load_der_x509_certificate(root_payload).public_bytes(
        serialization.Encoding.PEM))
    eap = payloads["com.apple.wifi.managed"]["EAPClientConfiguration"]
    server_name = eap["TLSTrustedServerNames"][0]
    v = subprocess.run(["openssl", "verify", "-CAfile", str(root_pem), "-purpose", "sslserver",
                        "-verify_hostname", server_name,
                        str(config.parent / "var/pki/server.crt")],
                       capture_output=True, text=True, timeout=30)
    assert v.returncode == 0 and ": OK" in v.stdout, v.stdout + v.stderr

    # a real SCEP client enrolls with the profile's challenge, CN, key size and Name
    require_tool("scepclient")
    dev = tmp_path / "dev"
    # scepclient encrypts to every GetCACert certificate unless told which: the RA
    ra = x509.load_pem_x509_certificate((config.parent / "var/pki/groups/macs/ra.crt").read_bytes())
    ra_sha256 = hashlib.sha256(ra.public_bytes(serialization.Encoding.DER)).hexdigest()

    def enroll(directory: Path) -> subprocess.CompletedProcess:
        directory.mkdir(exist_ok=True)
        return subprocess.run(
            ["scepclient", "-server-url", scep["URL"], "-cacert-message", scep["Name"],
             "-challenge", scep["Challenge"], "-cn", "mac-01", "-organization", "certgate",
             "-keySize", str(scep["Keysize"]), "-private-key", str(directory / "dev.key"),
             "-certificate", str(directory / "dev.pem"), "-ca-fingerprint", ra_sha256],
            capture_output=True, text=True, timeout=60)

    e = enroll(dev)
    assert e.returncode == 0, e.stdout + e.stderr + server.log()
    leaf = x509.load_pem_x509_certificate((dev / "dev.pem").read_bytes())
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "mac-01"
    rows = json.loads(certgate("certs", "list", "--group", "macs", "--json", config=config).stdout)
    assert [r["device_id"] for r in rows] == ["C02XK1ABJG5H"], "--device-id bound the challenge"
    again = enroll(tmp_path / "other")  # another key: the challenge was one-time
    assert again.returncode != 0 and "failInfo: badRequest" in again.stdout + again.stderr

    # eapol_test with the profile's trust settings and the enrolled certificate
    eapol = linux.Profile(server_name=server_name, ca_cert=str(root_pem),
                          client_cert=str(dev / "dev.pem"), private_key=str(dev / "dev.key"),
                          identity=eap["UserName"], tls_min=eap["TLSMinimumVersion"],
                          tls_max=eap["TLSMaximumVersion"])
    conf = tmp_path / "eapol.conf"
    host, port = server.radius
    conf.write_text(linux.eapol_test(eapol, host, port, str(conf), "test"))
    t = subprocess.run([require_tool("eapol_test"), "-c", str(conf), "-a", host, "-p", str(port),
                        "-s", SECRET, "-t", "8"], capture_output=True, text=True, timeout=30)
    assert t.returncode == 0, t.stdout[-3000:] + server.log()
    assert "MPPE keys OK: 1  mismatch: 0" in t.stdout and t.stdout.rstrip().endswith("SUCCESS")


def test_without_the_root_in_getcacert_the_fingerprint_is_left_out(env, tmp_path: Path) -> None:
    config, _ = env
    r = certgate("profile", "apple", "--group", "noroot", "--ssid", "CorpWiFi", "--uuid",
                 "5f1e3a52-0c47-4f8a-9d43-6b1c2a7e9b10", config=config)
    assert "CAFingerprint left out" in r.stderr and "include_root = true" in r.stderr
    assert "'$CHALLENGE'" in r.stderr
    profile = plistlib.loads(r.stdout.encode())
    check_profile(profile)
    scep = _payloads(profile)["com.apple.security.scep"]["PayloadContent"]
    assert "CAFingerprint" not in scep and scep["Challenge"] == "$CHALLENGE"
    again = certgate("profile", "apple", "--group", "noroot", "--ssid", "CorpWiFi", "--uuid",
                     "5f1e3a52-0c47-4f8a-9d43-6b1c2a7e9b10", config=config)
    assert again.stdout == r.stdout, "the same --uuid writes the same profile"


@pytest.mark.parametrize(("args", "message"), [
    (["--group", "nope", "--ssid", "x"], "--group: unknown group 'nope'"),
    (["--group", "macs"], "give --ssid NAME (Wi-Fi), --wired"),
    (["--group", "macs", "--wired", "--keysize", "4096"], "--keysize 4096: group macs"),
    (["--group", "macs", "--wired", "--challenge"], "--challenge binds the challenge"),
    (["--group", "macs", "--wired", "--uuid", "nope"], "--uuid 'nope' is not a UUID"),
    (["--group", "macs", "--wired", "--san", "ip:10.0.0.1"], "--san: SAN 'ip:10.0.0.1'"),
    (["--group", "macs", "--ssid", "x" * 33], "--ssid: an SSID is 1-32 bytes"),
    (["--group", "macs", "--wired", "--retries", "1000"], "--retries 1000"),
    (["--group", "macs", "--wired", "--cn", "m", "--challenge", "--challenge-ttl", "9y"],
     "--challenge-ttl"),
    (["--group", "macs", "--wired", "--keysize", "1024"], "--keysize"),
    (["--group", "macs", "--wired", "--device-id", "d"], "--device-id binds the challenge"),
])
def test_bad_arguments_exit_2_naming_the_option(env, args: list[str], message: str) -> None:
    config, _ = env
    r = certgate("profile", "apple", *args, config=config, check=False)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not r.stdout


def test_readme_signing_command_signs_the_profile(env, tmp_path: Path) -> None:
    """The README's `openssl smime -sign` line: the signed profile verifies and carries the
    unsigned one unchanged (a device shows the signer; plistlib reads the content)."""
    config, _ = env
    plain = tmp_path / "staff.mobileconfig"
    certgate("profile", "apple", "--group", "staff", "--wired", "--out", str(plain),
             config=config)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    command = re.search(r"`(openssl smime -sign [^`]+)`", readme).group(1).split()
    assert command[:3] == ["openssl", "smime", "-sign"]
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=profile signer",
                    "-days", "1", "-keyout", "signer.key", "-out", "signer.crt"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=30)
    (tmp_path / "chain.pem").write_bytes((tmp_path / "signer.crt").read_bytes())
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=30)
    out = subprocess.run(["openssl", "smime", "-verify", "-binary", "-inform", "der", "-in",
                          "staff.signed.mobileconfig", "-CAfile", "signer.crt",
                          "-purpose", "any"],
                         cwd=tmp_path, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == plain.read_bytes()
    check_profile(plistlib.loads(out.stdout))
