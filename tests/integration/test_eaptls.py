"""`certgate serve` against wpa_supplicant's eapol_test with certificates from certgate's own CA.

Accept (TLS 1.2, 1.3, 300-byte client fragments) must print "MPPE keys OK" and carry the
group's VLAN; reject for revoked (while running), expired, foreign CA with copied DNs,
non-group intermediate under our root, no client certificate; wrong secret: no answer.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pki import profiles
from pki.keys import generate_key, load_private_key
from radius.client import udp as eap_client
from revocation import webhook
from tests.support import (
    SECRET,
    TOKEN,
    WEBHOOK_SECRET,
    ServerProcess,
    accept_attributes,
    certgate,
    run_eapol_test,
)

pytestmark = pytest.mark.integration

PEM = serialization.Encoding.PEM
SERVER_NAME = "radius.certgate.test"


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _write_chain(path: Path, *certs: x509.Certificate) -> None:
    path.write_bytes(b"".join(c.public_bytes(PEM) for c in certs))


class Lab:
    """Certificates for every case, made by certgate (CLI) or forged from its PKI files."""

    def __init__(self, config: Path, directory: Path) -> None:
        self.config = config
        self.dir = directory
        self.pki = config.parent / "var" / "pki"
        self.root = self.pki / "root.crt"
        self.serials: dict[str, str] = {}
        for name, group in (("staff-ok", "staff"), ("guests-ok", "guests"),
                            ("staff-revoked", "staff"), ("staff-device", "staff")):
            self.serials[name] = certgate(
                "certs", "issue", "--group", group, "--cn", name, "--out", str(directory),
                "--san", f"email:{name}@example.test", "--device-id",
                "MDM-DEVICE-7" if name == "staff-device" else f"dev-{name}", config=config,
            ).stdout.strip()
        self._forge()

    def _forge(self) -> None:
        now = dt.datetime.now(dt.UTC)
        staff_ca = x509.load_pem_x509_certificate((self.pki / "groups/staff/ca.crt").read_bytes())
        staff_key = load_private_key(self.pki / "groups/staff/ca.key", None)
        root = x509.load_pem_x509_certificate(self.root.read_bytes())
        root_key = load_private_key(self.pki / "root.key", None)

        # expired: issued by the real staff CA, valid 2020-2021
        key = ec.generate_private_key(ec.SECP256R1())
        then = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        leaf = profiles.device_certificate(key.public_key(), profiles.name("staff-expired"), [],
                                           "staff", "http://x", staff_ca, staff_key,
                                           profiles.new_serial(), then, 365)
        self._save("staff-expired", key, leaf, staff_ca)

        # valid, issued by the real staff CA key, but never recorded (e.g. a stolen CA key)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = profiles.device_certificate(key.public_key(), profiles.name("unrecorded"), [],
                                           "staff", "http://x", staff_ca, staff_key,
                                           profiles.new_serial(), now, 30)
        self._save("unrecorded", key, leaf, staff_ca)

        # non-group intermediate under OUR root
        other_key = generate_key("ec-p256")
        other_ca = profiles.intermediate_certificate(other_key, "other", "certgate", root,
                                                     root_key, now, 365)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = profiles.device_certificate(key.public_key(), profiles.name("nongroup"), [],
                                           "other", "http://x", other_ca, other_key,
                                           profiles.new_serial(), now, 30)
        self._save("nongroup", key, leaf, other_ca)

        # rogue: a foreign root + intermediate with the SAME DNs as ours, leaf copying staff-ok
        rogue_root_key = generate_key("ec-p256")
        rogue_root = (x509.CertificateBuilder().subject_name(root.subject).issuer_name(root.subject)
                      .public_key(rogue_root_key.public_key()).serial_number(profiles.new_serial())
                      .not_valid_before(now - dt.timedelta(days=1))
                      .not_valid_after(now + dt.timedelta(days=30))
                      .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                      .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                          rogue_root_key.public_key()), critical=False)
                      .sign(rogue_root_key, profiles.hashes.SHA256()))
        rogue_ca_key = generate_key("ec-p256")
        rogue_ca = (x509.CertificateBuilder().subject_name(staff_ca.subject)
                    .issuer_name(rogue_root.subject).public_key(rogue_ca_key.public_key())
                    .serial_number(profiles.new_serial())
                    .not_valid_before(now - dt.timedelta(days=1))
                    .not_valid_after(now + dt.timedelta(days=30))
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                        rogue_ca_key.public_key()), critical=False)
                    .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                        rogue_root_key.public_key()), critical=False)
                    .sign(rogue_root_key, profiles.hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = profiles.device_certificate(key.public_key(), profiles.name("staff-ok"), [],
                                           "staff", "http://x", rogue_ca, rogue_ca_key,
                                           profiles.new_serial(), now, 30)
        self._save("rogue", key, leaf, rogue_ca)

    def _save(self, name: str, key, leaf: x509.Certificate, issuer: x509.Certificate) -> None:
        _write_key(self.dir / f"{name}.key", key)
        _write_chain(self.dir / f"{name}.chain.pem", leaf, issuer)

    def eapol(self, server: ServerProcess, name: str, tls: str = "1.2", fragment: int | None = None,
              secret: str = SECRET, timeout: int = 8) -> tuple[int, str]:
        return run_eapol_test(server.radius, self.root, self.dir / f"{name}.chain.pem",
                              self.dir / f"{name}.key", self.dir, identity=f"{name}@example.test",
                              tls=tls, fragment=fragment, secret=secret, timeout=timeout,
                              server_name=SERVER_NAME)


@pytest.fixture
def lab(initialized: Path, tmp_path: Path) -> Lab:
    (tmp_path / "certs").mkdir()
    return Lab(initialized, tmp_path / "certs")


def test_accepts_group_certificates_with_mppe_keys_and_vlan(server: ServerProcess, lab: Lab) -> None:
    for name, tls, frag, vlan in (("staff-ok", "1.2", None, "10"), ("staff-ok", "1.3", None, "10"),
                                  ("guests-ok", "1.2", None, "20"), ("guests-ok", "1.3", None, "20"),
                                  ("staff-ok", "1.2", 300, "10"), ("staff-ok", "1.3", 300, "10")):
        code, out = lab.eapol(server, name, tls, frag)
        assert code == 0, f"{name} TLS {tls} frag {frag}: exit {code}\n{out[-3000:]}"
        assert "MPPE keys OK: 1  mismatch: 0" in out
        assert f"TLSv{tls}" in out or f"TLS {tls}" in out or "SSL: Using TLS" in out
        accept = accept_attributes(out)
        # eapol_test prints tunnel values in hex: VLAN (13), IEEE-802 (6), the VLAN id as text
        assert re.search(r"Attribute 64 \(Tunnel-Type\) length=6\s+Value: 0000000d", accept), accept
        assert re.search(r"Attribute 65 \(Tunnel-Medium-Type\) length=6\s+Value: 00000006", accept)
        assert re.search(r"Attribute 81 \(Tunnel-Private-Group-Id\) length=\d+\s+Value: "
                         + vlan.encode().hex(), accept), accept
        assert f"Value: '{name}@example.test'" in accept
    _, body = server.get("/metrics")
    text = body.decode()
    assert re.search(r'certgate_eap_authentications_total\{group="staff",reason="ok",result="accept",'
                     r'tls_version="1.3"\} [1-9]', text), text


def test_rejects_revoked_expired_rogue_nongroup_and_no_cert(server: ServerProcess, lab: Lab) -> None:
    code, out = lab.eapol(server, "staff-revoked")
    assert code == 0, out[-2000:]
    # revoked while the server runs: through the admin API (at once) ...
    status, body = server.post(f"/api/v1/certificates/{lab.serials['staff-revoked']}/revoke",
                               json.dumps({"reason": "keyCompromise"}).encode(),
                               {"Authorization": f"Bearer {TOKEN}",
                                "Content-Type": "application/json"})
    assert status == 200, body
    for tls in ("1.2", "1.3"):
        code, out = lab.eapol(server, "staff-revoked", tls)
        assert code != 0 and "Access-Reject" in out, out[-2000:]
    # ... through the CLI from another process (seen within a second) ...
    certgate("revoke", "--serial", lab.serials["guests-ok"], "--reason", "superseded",
             config=lab.config)
    time.sleep(1.0)
    code, out = lab.eapol(server, "guests-ok")
    assert code != 0 and "Access-Reject" in out, out[-2000:]
    # ... and through the MDM webhook (device removed: all its certificates)
    code, out = lab.eapol(server, "staff-device")
    assert code == 0, out[-2000:]
    body = json.dumps({"device_id": "MDM-DEVICE-7", "event": "device-removed",
                       "event_id": "e-1"}).encode()
    status, answer = server.post("/api/v1/webhooks/device-removed", body, {
        webhook.HEADER: webhook.sign(WEBHOOK_SECRET, body, dt.datetime.now(dt.UTC))})
    assert status == 200 and json.loads(answer)["revoked"] == [lab.serials["staff-device"]]
    code, out = lab.eapol(server, "staff-device")
    assert code != 0 and "Access-Reject" in out, out[-2000:]

    for name in ("staff-expired", "rogue", "nongroup", "unrecorded"):
        for tls in ("1.2", "1.3"):
            code, out = lab.eapol(server, name, tls)
            assert code != 0, f"{name} TLS {tls} was accepted"
            assert "Access-Reject" in out, f"{name} TLS {tls}:\n{out[-2000:]}"

    host, port = server.radius
    # no client certificate (eapol_test refuses to try): radius.client presents none
    outcome, _ = eap_client.authenticate(host, port, SECRET.encode(), ca_file=str(lab.root),
                                         tls="1.2")
    assert outcome.result == "reject" and outcome.eap_result == "failure", outcome

    _, body = server.get("/metrics")
    text = body.decode()
    for reason in ("revoked", "expired", "unknown_issuer", "unknown_group", "no_certificate",
                   "not_issued"):
        assert re.search(rf'certgate_eap_authentications_total\{{[^}}]*reason="{reason}"[^}}]*'
                         rf'result="reject"', text), (reason, text[:4000])


def test_wrong_secret_gets_no_answer(server: ServerProcess, lab: Lab) -> None:
    code, out = lab.eapol(server, "staff-ok", secret="not-the-secret", timeout=3)
    assert code != 0
    assert "Access-Accept" not in out and "Access-Reject" not in out
    _, body = server.get("/metrics")
    assert re.search(r'certgate_radius_dropped_total\{client="loopback",reason="bad_authenticator"\} '
                     r'[1-9]', body.decode())
