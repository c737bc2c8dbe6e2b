"""SCEP against the running `certgate serve` with micromdm scepclient 2.1.0 (Debian `scep`).

scepclient signs with SHA-1 and encrypts with single DES whatever GetCACaps says, so its
group allows des and sha1 in [groups.lab.scep] (the default group refuses it with badAlg,
checked below).
It encrypts to every certificate of GetCACert unless -ca-fingerprint picks one: we give
the RA's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support import TOKEN, ServerProcess, certgate, require_tool, write_config

pytestmark = pytest.mark.integration

LAB = """
[groups.lab]
vlan = 30
validity_days = 30
renewal_window_days = 30
superseded_grace_hours = 0

[groups.lab.scep]
ciphers = ["aes256", "aes128", "des"]
digests = ["sha512", "sha384", "sha256", "sha1"]

[groups.approval]
vlan = 40
manual_approval = true

[scep]
mdm_blob_keys = ["mdm.pub.pem"]
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    require_tool("scepclient")
    base = tmp_path_factory.mktemp("scep")
    cg = base / "cg"
    cg.mkdir()
    mdm = ec.generate_private_key(ec.SECP256R1())
    (cg / "mdm.key.pem").write_bytes(mdm.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (cg / "mdm.pub.pem").write_bytes(mdm.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    config = write_config(cg, extra=LAB)
    certgate("init", config=config)
    server = ServerProcess(config, base / "serve.log").start()
    yield config, server, base
    server.stop()


def pki(config: Path) -> Path:
    return config.parent / "var" / "pki"


def ra_fingerprint(config: Path, group: str) -> str:
    cert = x509.load_pem_x509_certificate((pki(config) / "groups" / group / "ra.crt").read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def challenge(config: Path, group: str, *args: str) -> str:
    return certgate("challenge", "create", "--group", group, *args, config=config).stdout.strip()


def scepclient(server: ServerProcess, config: Path, workdir: Path, group: str, cn: str,
               challenge: str | None = None, fingerprint_group: str | None = None
               ) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = ["scepclient", "-server-url", f"{server.http}/scep/{group}/pkiclient.exe",
           "-private-key", str(workdir / "dev.key"), "-certificate", str(workdir / "dev.pem"),
           "-cn", cn, "-ca-fingerprint", ra_fingerprint(config, fingerprint_group or group)]
    if challenge is not None:
        cmd += ["-challenge", challenge]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def serial_of(pem: Path) -> str:
    return format(x509.load_pem_x509_certificate(pem.read_bytes()).serial_number, "x")


def verify_chain(config: Path, group: str, cert: Path) -> None:
    r = subprocess.run(["openssl", "verify", "-CAfile", str(pki(config) / "root.crt"), "-untrusted",
                        str(pki(config) / "groups" / group / "ca.crt"), "-purpose", "sslclient",
                        str(cert)], capture_output=True, text=True)
    assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr


def inventory(config: Path) -> dict[str, dict]:
    rows = json.loads(certgate("certs", "list", "--json", config=config).stdout)
    return {r["serial"]: r for r in rows}


def refused(result: subprocess.CompletedProcess, fail_info: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"request failed, failInfo: {fail_info}" in out, out


def metric(server: ServerProcess, line: str) -> float:
    text = server.get("/metrics")[1].decode()
    for row in text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def test_enroll_renew_and_replay(env, tmp_path: Path) -> None:
    config, server, _ = env
    token = challenge(config, "lab", "--subject", "dev-01")
    dev = tmp_path / "dev"
    r = scepclient(server, config, dev, "lab", "dev-01", token)
    assert r.returncode == 0, r.stdout + r.stderr
    first = serial_of(dev / "dev.pem")
    verify_chain(config, "lab", dev / "dev.pem")
    rows = inventory(config)
    assert rows[first]["group"] == "lab" and rows[first]["status"] == "active"
    assert rows[first]["source"] == "scep"

    # rerun with the certificate: RenewalReq signed by the old certificate
    r = scepclient(server, config, dev, "lab", "dev-01")
    assert r.returncode == 0, r.stdout + r.stderr
    second = serial_of(dev / "dev.pem")
    assert second != first
    verify_chain(config, "lab", dev / "dev.pem")
    rows = inventory(config)
    assert rows[second]["group"] == "lab" and rows[second]["status"] == "active"
    assert rows[first]["superseded_by"] == second
    assert rows[first]["status"] == "revoked" and rows[first]["reason"] == "superseded"  # grace 0

    # the same challenge from another device (new key, new transactionID): replay
    r = scepclient(server, config, tmp_path / "thief", "lab", "dev-01", token)
    refused(r, "badRequest")
    assert metric(server, 'certgate_scep_challenge_failures_total{group="lab",reason="replay"}') >= 1
    assert metric(server, 'certgate_certificates_issued_total{group="lab"}') >= 2
    assert metric(server, 'certgate_scep_requests_total{group="lab",message_type="RenewalReq",'
                          'operation="PKIOperation",result="success"}') >= 1


def test_refusals(env, tmp_path: Path) -> None:
    config, server, _ = env
    expired = challenge(config, "lab", "--subject", "dev-x", "--ttl", "1s")
    time.sleep(1.5)
    refused(scepclient(server, config, tmp_path / "expired", "lab", "dev-x", expired), "badRequest")

    staff_token = challenge(config, "staff")
    refused(scepclient(server, config, tmp_path / "wrong", "lab", "dev-y", staff_token), "badRequest")

    bound = challenge(config, "lab", "--subject", "dev-z")
    refused(scepclient(server, config, tmp_path / "mismatch", "lab", "other-cn", bound), "badRequest")

    forged = "A" * 42
    refused(scepclient(server, config, tmp_path / "forged", "lab", "dev-f", forged), "badRequest")
    # the default group refuses scepclient's SHA-1/DES with badAlg
    ok = challenge(config, "staff")
    refused(scepclient(server, config, tmp_path / "weak", "staff", "dev-w", ok), "badAlg")
    assert metric(server, 'certgate_scep_algorithm_refusals_total{algorithm="sha1",group="staff"}'
                  ) >= 1

    for reason in ("expired", "wrong_group", "subject_mismatch", "unknown_challenge"):
        assert metric(server, f'certgate_scep_challenge_failures_total{{group="lab",reason="{reason}"}}'
                      ) >= 1, reason
    # the bound challenge was not consumed by the mismatching CSR: the right device enrolls
    r = scepclient(server, config, tmp_path / "right", "lab", "dev-z", bound)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not any("CN=other-cn" in r["subject"].split(",") for r in inventory(config).values())
    assert "Traceback" not in server.log()


def test_blob_enrollment(env, tmp_path: Path) -> None:
    config, server, _ = env
    blob = certgate("challenge", "mint-blob", "--group", "lab", "--sub", "dev-blob", "--mdm-key",
                    str(config.parent / "mdm.key.pem"), "--key", "rsa-2048", "--validity-days", "7",
                    "--device-id", "MDM-77", config=config).stdout.strip()
    assert len(blob) > 200
    dev = tmp_path / "blob"
    r = scepclient(server, config, dev, "lab", "dev-blob", blob)
    assert r.returncode == 0, r.stdout + r.stderr
    serial = serial_of(dev / "dev.pem")
    verify_chain(config, "lab", dev / "dev.pem")
    row = inventory(config)[serial]
    assert row["group"] == "lab" and row["device_id"] == "MDM-77"
    cert = x509.load_pem_x509_certificate((dev / "dev.pem").read_bytes())
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 7

    # each blob once; and a blob for another subject is refused
    refused(scepclient(server, config, tmp_path / "again", "lab", "dev-blob", blob), "badRequest")
    refused(scepclient(server, config, tmp_path / "other", "lab", "dev-other", blob), "badRequest")
    assert metric(server, 'certgate_scep_challenge_failures_total{group="lab",reason="replay"}') >= 1


def test_challenge_api(env, tmp_path: Path) -> None:
    config, server, _ = env
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    body = json.dumps({"ttl": "10m", "subject": "api-dev", "key_types": ["rsa-2048"],
                       "device_id": "D-1"}).encode()
    assert server.post("/api/v1/groups/lab/challenges", body,
                       {"Content-Type": "application/json"})[0] == 401
    assert server.post("/api/v1/groups/nope/challenges", body, auth)[0] == 404
    assert server.post("/api/v1/groups/lab/challenges", b'{"ttl": "30d"}', auth)[0] == 400
    status, reply = server.post("/api/v1/groups/lab/challenges", body, auth)
    assert status == 201, reply
    created = json.loads(reply)
    assert set(created) == {"challenge", "jti", "group", "expires_at"}
    assert created["challenge"] not in server.log()  # shown once, never logged
    dev = tmp_path / "api"
    r = scepclient(server, config, dev, "lab", "api-dev", created["challenge"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert inventory(config)[serial_of(dev / "dev.pem")]["device_id"] == "D-1"


def test_http_edges(env) -> None:
    config, server, _ = env
    assert server.get("/scep/nope?operation=GetCACaps")[0] == 404
    status, caps = server.get("/scep/lab?operation=GetCACaps")
    # lab allows single DES (no caps word) and SHA-1, not 3DES
    assert status == 200 and b"DES3" not in caps and b"SHA-1" in caps
    caps = server.get("/scep/staff/cgi-bin/pkiclient.exe?operation=GetCACaps")[1].decode().split()
    assert caps == ["POSTPKIOperation", "Renewal", "SHA-512", "SHA-384", "SHA-256", "SHA-224",
                    "AES", "SCEPStandard"]
    assert server.post("/scep/staff?operation=PKIOperation", b"garbage")[0] == 400
    assert server.get("/scep/staff?operation=PKIOperation&message=%%%")[0] == 400
    assert server.get("/scep/staff?operation=Nope")[0] == 400


def test_manual_approval_with_cli(env, tmp_path: Path) -> None:
    """PKCSReq -> PENDING; `certgate requests approve` (another process); CertPoll -> cert."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import AttributeOID, NameOID

    from enrollment import scep_client
    from enrollment.scep_types import PKIStatus

    config, server, _ = env
    ra = x509.load_pem_x509_certificate((pki(config) / "groups/approval/ra.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((pki(config) / "groups/approval/ca.crt").read_bytes())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "needs-approval")])
    token = challenge(config, "approval", "--subject", "needs-approval")
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_attribute(AttributeOID.CHALLENGE_PASSWORD, token.encode()).sign(key, hashes.SHA256()))
    signer = scep_client.self_signed_signer(key, subject, dt_now())

    def post(req: scep_client.ClientRequest) -> scep_client.CertRepResult:
        status, body = server.post("/scep/approval?operation=PKIOperation", req.der,
                                   {"Content-Type": "application/x-pki-message"})
        assert status == 200, body
        return scep_client.parse_cert_rep(body, signer, key, ra_cert=ra, request=req)

    req = scep_client.build_pkcs_req(csr, signer, key, ra)
    assert post(req).status is PKIStatus.PENDING
    rows = json.loads(certgate("requests", "list", "--json", "--status", "pending", config=config).stdout)
    (row,) = [r for r in rows if r["transaction_id"] == req.transaction_id]
    assert row["subject"] == "CN=needs-approval" and row["group"] == "approval"

    def poll() -> scep_client.CertRepResult:
        return post(scep_client.build_cert_poll(ca.subject, subject, signer, key, ra,
                                                transaction_id=req.transaction_id))

    assert poll().status is PKIStatus.PENDING
    assert certgate("requests", "approve", str(row["id"]), config=config).returncode == 0
    assert certgate("requests", "approve", str(row["id"]), config=config, check=False).returncode == 1
    rep = poll()
    assert rep.status is PKIStatus.SUCCESS
    cert_path = tmp_path / "approved.pem"
    cert_path.write_bytes(rep.certificates[0].public_bytes(serialization.Encoding.PEM))
    verify_chain(config, "approval", cert_path)
    assert inventory(config)[serial_of(cert_path)]["group"] == "approval"


def dt_now():  # noqa: ANN201
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def test_enrolled_certificate_authenticates_on_its_group_vlan(env, tmp_path: Path) -> None:
    """The whole story: SCEP enrollment -> EAP-TLS accept on the group's VLAN -> revoke -> reject."""
    from tests.support import accept_attributes, run_eapol_test, vlan_of

    config, server, _ = env
    token = challenge(config, "lab", "--subject", "laptop-42")
    dev = tmp_path / "dev"
    r = scepclient(server, config, dev, "lab", "laptop-42", token)
    assert r.returncode == 0, r.stdout + r.stderr
    chain = dev / "chain.pem"
    chain.write_bytes((dev / "dev.pem").read_bytes() + (pki(config) / "groups/lab/ca.crt").read_bytes())
    for tls in ("1.2", "1.3"):
        code, out = run_eapol_test(server.radius, pki(config) / "root.crt", chain, dev / "dev.key",
                                   tmp_path, identity="laptop-42", tls=tls)
        assert code == 0 and "MPPE keys OK: 1  mismatch: 0" in out, out[-3000:]
        assert vlan_of(accept_attributes(out)) == "30"
    serial = serial_of(dev / "dev.pem")
    certgate("revoke", "--serial", serial, "--reason", "keyCompromise", config=config)
    time.sleep(1.0)
    code, out = run_eapol_test(server.radius, pki(config) / "root.crt", chain, dev / "dev.key",
                               tmp_path, identity="laptop-42")
    assert code != 0 and "Access-Reject" in out, out[-3000:]
