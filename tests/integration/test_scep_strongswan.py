"""SCEP against the running `certgate serve` with strongSwan's `pki` (Debian 12:
strongswan-pki 5.9.8 with the curl fetcher of libstrongswan-extra-plugins).

The default group settings are enough: `pki --scepca` gets RA, CA and root (the root is in
GetCACert by default; 5.9.8 exits 1 without a root in the PKCS#7), and `pki --scep` with its
defaults (AES-128, SHA-256, POST) gets through because the default GetCACaps lists SHA-384,
the line 5.9.8's mis-masked capability test reads as AES, SHA-256 and Renewal (README,
"strongSwan"). Then: renewal signed by the old certificate, EAP-TLS with eapol_test (the
issued certificate accepted with MPPE keys, the superseded and the revoked one rejected),
badAlg for 3DES and SHA-1 on the default group with the algorithm in the metric, a
SHA-1-signed CSR enrolling on a group that lists sha1, and --cipher des3 on a group with the
deprecated legacy_algorithms (which serve and check-config warn about).
"""

from __future__ import annotations

import glob
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.support import (
    IN_CI,
    ServerProcess,
    accept_attributes,
    certgate,
    require_tool,
    run_eapol_test,
    vlan_of,
    write_config,
)

pytestmark = pytest.mark.integration

GROUPS = """
[groups.vpn]
vlan = 50
validity_days = 30
renewal_window_days = 30
superseded_grace_hours = 0

[groups.noroot]
include_root = false

[groups.oldsha]

[groups.oldsha.scep]
digests = ["sha512", "sha384", "sha256", "sha1"]

[groups.old3des]
legacy_algorithms = true
"""


def require_strongswan_pki() -> str:
    pki = require_tool("pki")
    help_text = subprocess.run([pki, "--help"], capture_output=True, text=True, timeout=30)
    if "strongSwan" not in help_text.stdout + help_text.stderr:
        pytest.fail(f"{pki} is not strongSwan's pki (Debian strongswan-pki)")
    for plugin, package, why in (("curl", "libstrongswan-extra-plugins", "its HTTP fetcher"),
                                 ("openssl", "libstrongswan-standard-plugins", "ECDSA")):
        if not glob.glob(f"/usr/lib/ipsec/plugins/libstrongswan-{plugin}.so"):
            if IN_CI:
                pytest.fail(f"{package} is required in CI ({why}; scripts/install-test-deps.sh)")
            pytest.skip(f"{package} not installed: pki has no {why}")
    return pki


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    pki = require_strongswan_pki()
    require_tool("eapol_test")
    base = tmp_path_factory.mktemp("strongswan")
    config = write_config(base / "cg", extra=GROUPS)
    certgate("init", config=config)
    server = ServerProcess(config, base / "serve.log").start()
    yield pki, config, server
    server.stop()


def pki_dir(config: Path) -> Path:
    return config.parent / "var" / "pki"


def run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def gen_key(pki: str, path: Path) -> Path:
    r = run([pki, "--gen", "--type", "rsa", "--size", "2048", "--outform", "pem"])
    assert r.returncode == 0, r.stderr
    path.write_text(r.stdout)
    return path


def scepca(pki: str, url: str, out: Path) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    return run([pki, "--scepca", "--url", url, "--caout", str(out / "ca.pem"),
                "--raout", str(out / "ra.pem"), "--outform", "pem"])


def scep(pki: str, url: str, cas: Path, key: Path, dn: str, *extra: str
         ) -> subprocess.CompletedProcess:
    """pki --scep; the certificate (PEM) on stdout. cas: what --scepca wrote."""
    return run([pki, "--scep", "--url", url, "--in", str(key), "--dn", dn,
                "--cacert-enc", str(cas / "ra.pem"), "--cacert-sig", str(cas / "ra.pem"),
                "--cacert", str(cas / "ca-1.pem"), "--cacert", str(cas / "ca.pem"),
                "--outform", "pem", *extra])


def device(pki: str, server: ServerProcess, group: str, workdir: Path) -> tuple[str, Path, Path]:
    """What a device starts with: the group's URL, the CA certificates --scepca fetched,
    a new RSA key."""
    url = f"{server.http}/scep/{group}"
    cas = workdir / "cas"
    r = scepca(pki, url, cas)
    assert r.returncode == 0, r.stdout + r.stderr
    return url, cas, gen_key(pki, workdir / "dev.key")


def challenge(config: Path, group: str, cn: str) -> str:
    return certgate("challenge", "create", "--group", group, "--subject", cn,
                    config=config).stdout.strip()


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    text = server.get("/metrics")[1].decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def load(pem: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.read_bytes())


def test_scepca_gets_ra_ca_and_root(env, tmp_path: Path) -> None:
    pki, config, server = env
    r = scepca(pki, f"{server.http}/scep/staff", tmp_path / "cas")
    assert r.returncode == 0, r.stdout + r.stderr
    groups = pki_dir(config) / "groups"
    assert load(tmp_path / "cas/ca.pem") == load(pki_dir(config) / "root.crt")
    assert load(tmp_path / "cas/ca-1.pem") == load(groups / "staff/ca.crt")
    assert load(tmp_path / "cas/ra.pem") == load(groups / "staff/ra.crt")
    # the root's fingerprint is printed for the operator to check (GetCACert is plain HTTP)
    assert "Root CA cert" in r.stdout + r.stderr and "SHA256" in r.stdout + r.stderr
    # without the root strongSwan's --scepca fails, silently (pki_cert.c writes roots first)
    r = scepca(pki, f"{server.http}/scep/noroot", tmp_path / "noroot")
    assert r.returncode == 1


def test_enroll_with_defaults_renew_and_eap_tls(env, tmp_path: Path) -> None:
    pki, config, server = env
    url, cas, key = device(pki, server, "vpn", tmp_path)
    r = scep(pki, url, cas, key, "CN=sw-01", "--password", challenge(config, "vpn", "sw-01"))
    assert r.returncode == 0, r.stdout + r.stderr + server.log()[-3000:]
    first = tmp_path / "sw.pem"
    first.write_text(r.stdout)
    cert = load(first)
    assert cert.subject.rfc4514_string() == "CN=sw-01"
    assert cert.issuer == load(cas / "ca-1.pem").subject
    caps = server.get("/scep/vpn?operation=GetCACaps")[1].decode().split()
    assert "DES3" not in caps and "SHA-1" not in caps  # nothing legacy was needed
    assert metric(server, "certgate_scep_requests_total", group="vpn", operation="PKIOperation",
                  message_type="PKCSReq", result="success") == 1

    # renewal: a new key, RenewalReq signed by the old certificate and key
    new_key = gen_key(pki, tmp_path / "sw2.key")
    r = scep(pki, url, cas, new_key, "CN=sw-01", "--cert", str(first), "--key", str(key))
    assert r.returncode == 0, r.stdout + r.stderr + server.log()[-3000:]
    second = tmp_path / "sw2.pem"
    second.write_text(r.stdout)
    renewed = load(second)
    assert renewed.serial_number != cert.serial_number
    assert metric(server, "certgate_scep_requests_total", group="vpn", operation="PKIOperation",
                  message_type="RenewalReq", result="success") == 1

    ca = (pki_dir(config) / "groups/vpn/ca.crt").read_text()
    root = pki_dir(config) / "root.crt"
    chain = tmp_path / "sw2.chain.pem"
    chain.write_text(second.read_text() + ca)
    code, out = run_eapol_test(server.radius, root, chain, new_key, tmp_path, identity="sw-01")
    assert code == 0 and "MPPE keys OK: 1  mismatch: 0" in out, out[-3000:]
    assert "SUCCESS" in out
    assert vlan_of(accept_attributes(out)) == "50"
    # the superseded certificate (grace 0: revoked at once) is rejected
    old_chain = tmp_path / "sw.chain.pem"
    old_chain.write_text(first.read_text() + ca)
    code, out = run_eapol_test(server.radius, root, old_chain, key, tmp_path, identity="sw-01")
    assert code != 0 and "Access-Reject" in out, out[-3000:]
    # revoke the renewed one: rejected too
    certgate("revoke", "--serial", format(renewed.serial_number, "x"), "--reason",
             "keyCompromise", config=config)
    time.sleep(1.0)  # the server follows the store's change feed
    code, out = run_eapol_test(server.radius, root, chain, new_key, tmp_path, identity="sw-01")
    assert code != 0 and "Access-Reject" in out, out[-3000:]
    assert "certificate revoked" in out
    assert "Traceback" not in server.log()


def test_bad_alg_names_the_algorithm(env, tmp_path: Path) -> None:
    pki, config, server = env
    url, cas, key = device(pki, server, "staff", tmp_path)
    for option, algorithm in ((["--cipher", "des3"], "des3"), (["--digest", "sha1"], "sha1")):
        before = metric(server, "certgate_scep_algorithm_refusals_total", group="staff",
                        algorithm=algorithm)
        r = scep(pki, url, cas, key, "CN=weak", "--password", challenge(config, "staff", "weak"),
                 *option)
        out = r.stdout + r.stderr
        assert r.returncode != 0 and "badAlg" in out, out
        assert metric(server, "certgate_scep_algorithm_refusals_total", group="staff",
                      algorithm=algorithm) == before + 1
        assert f"algorithm={algorithm} " in server.log()


def test_sha1_signed_csr_where_sha1_is_allowed(env, tmp_path: Path) -> None:
    """pki --digest sha1 signs the SignedData and the CSR with SHA-1 (issue 13 §3)."""
    pki, config, server = env
    url, cas, key = device(pki, server, "oldsha", tmp_path)
    r = scep(pki, url, cas, key, "CN=sha1-dev", "--password",
             challenge(config, "oldsha", "sha1-dev"), "--digest", "sha1")
    assert r.returncode == 0, r.stdout + r.stderr + server.log()[-3000:]
    assert load_pem_text(r.stdout).subject.rfc4514_string() == "CN=sha1-dev"


def load_pem_text(text: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(text.encode())


def test_deprecated_legacy_alias_still_works_and_warns(env, tmp_path: Path) -> None:
    """legacy_algorithms = true: 3DES (and DES, SHA-1) accepted and advertised, and a
    deprecation warning from serve and check-config."""
    pki, config, server = env
    caps = server.get("/scep/old3des?operation=GetCACaps")[1].decode().split()
    assert "DES3" in caps and "SHA-1" in caps
    url, cas, key = device(pki, server, "old3des", tmp_path)
    r = scep(pki, url, cas, key, "CN=old-3des", "--password",
             challenge(config, "old3des", "old-3des"), "--cipher", "des3")
    assert r.returncode == 0, r.stdout + r.stderr + server.log()[-3000:]
    assert load_pem_text(r.stdout).subject.rfc4514_string() == "CN=old-3des"
    assert "WARNING certgate" in server.log() and \
        "groups.old3des.legacy_algorithms: deprecated" in server.log()
    checked = certgate("check-config", "--no-state", config=config)
    assert "certgate: warning: groups.old3des.legacy_algorithms: deprecated" in checked.stderr
