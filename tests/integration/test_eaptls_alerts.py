"""`certgate serve` against eapol_test: a refused device sees the TLS alert saying why
(issue #12 §3), not internal_error.

wpa_supplicant logs a received alert as "SSL: SSL3 alert: read (remote end reported an
error):fatal:<description>" (OpenSSL's SSL_alert_desc_string_long).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pki import profiles
from pki.keys import generate_key, load_private_key
from tests.support import TOKEN, ServerProcess, certgate, run_eapol_test

pytestmark = pytest.mark.integration

PEM = serialization.Encoding.PEM
ALERT = "SSL: SSL3 alert: read (remote end reported an error):fatal:"


def _save(directory: Path, name: str, key, *certs: x509.Certificate) -> None:  # type: ignore[no-untyped-def]
    (directory / f"{name}.key").write_bytes(key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / f"{name}.key").chmod(0o600)
    (directory / f"{name}.chain.pem").write_bytes(b"".join(c.public_bytes(PEM) for c in certs))


def _forge(pki: Path, directory: Path) -> None:
    """unrecorded: signed by the real staff CA key, never in the inventory; nongroup: under
    our root through an intermediate that is not a group CA; expired: a staff device
    certificate whose validity ended 10 days ago; serveronly: signed by the staff CA, but with
    the serverAuth EKU only (not a device certificate)."""
    now = dt.datetime.now(dt.UTC)
    staff_ca = x509.load_pem_x509_certificate((pki / "groups/staff/ca.crt").read_bytes())
    staff_key = load_private_key(pki / "groups/staff/ca.key", None)
    root = x509.load_pem_x509_certificate((pki / "root.crt").read_bytes())
    root_key = load_private_key(pki / "root.key", None)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = profiles.device_certificate(key.public_key(), profiles.name("unrecorded"), [], "staff",
                                       "http://x", staff_ca, staff_key, profiles.new_serial(),
                                       now, 30)
    _save(directory, "unrecorded", key, leaf, staff_ca)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = profiles.device_certificate(key.public_key(), profiles.name("expired"), [], "staff",
                                       "http://x", staff_ca, staff_key, profiles.new_serial(),
                                       now - dt.timedelta(days=40), 30)
    assert leaf.not_valid_after_utc < now
    _save(directory, "expired", key, leaf, staff_ca)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = profiles.server_certificate(key.public_key(), "serveronly", staff_ca, staff_key, now, 30)
    _save(directory, "serveronly", key, leaf, staff_ca)
    other_key = generate_key("ec-p256")
    other_ca = profiles.intermediate_certificate(other_key, "other", "certgate", root, root_key,
                                                 now, 365)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = profiles.device_certificate(key.public_key(), profiles.name("nongroup"), [], "other",
                                       "http://x", other_ca, other_key, profiles.new_serial(),
                                       now, 30)
    _save(directory, "nongroup", key, leaf, other_ca)


def test_refused_devices_see_the_alert_of_their_reason(server: ServerProcess,
                                                       initialized: Path, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    pki = initialized.parent / "var" / "pki"
    serials = {name: certgate("certs", "issue", "--group", "staff", "--cn", name, "--out",
                              str(certs), config=initialized).stdout.strip()
               for name in ("staff-revoked", "staff-held")}
    _forge(pki, certs)
    status, body = server.post(f"/api/v1/certificates/{serials['staff-revoked']}/revoke",
                               json.dumps({"reason": "keyCompromise"}).encode(),
                               {"Authorization": f"Bearer {TOKEN}",
                                "Content-Type": "application/json"})
    assert status == 200, body
    certgate("revoke", "--serial", serials["staff-held"], "--reason", "certificateHold", "--yes",
             config=initialized)
    time.sleep(1.0)  # another process's revocation reaches the server within a second

    cases = [("staff-revoked", "1.2", "certificate revoked"),
             ("staff-revoked", "1.3", "certificate revoked"),
             ("staff-held", "1.2", "certificate revoked"),
             ("nongroup", "1.2", "unknown CA"),
             ("unrecorded", "1.3", "handshake failure"),
             ("expired", "1.2", "certificate expired"),
             ("expired", "1.3", "certificate expired"),
             ("serveronly", "1.2", "unsupported certificate")]
    for name, tls, alert in cases:
        code, out = run_eapol_test(server.radius, pki / "root.crt", certs / f"{name}.chain.pem",
                                   certs / f"{name}.key", certs, identity=f"{name}@example.test",
                                   tls=tls)
        assert code != 0 and "Access-Reject" in out, f"{name} TLS {tls}\n{out[-3000:]}"
        seen = [line for line in out.splitlines() if ALERT in line]
        assert seen and seen[0].endswith(ALERT + alert), f"{name} TLS {tls}: {seen}\n{out[-3000:]}"
        assert "internal error" not in out, f"{name} TLS {tls}\n{out[-3000:]}"
    log = server.log()
    for reason in ("revoked", "unknown_group", "not_issued", "expired", "bad_eku"):
        assert f"reason={reason}" in log, log[-3000:]
