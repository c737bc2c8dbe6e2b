"""`certgate certs import` (issue #11 §4): certificates the staff intermediate issued without
certgate's inventory (as another SCEP server would have) are refused by a running `certgate
serve` (require_inventory), imported by the CLI, then accepted by wpa_supplicant's
eapol_test; foreign, forged, CA and garbage input is refused and nothing of it recorded."""

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
from pki.keys import load_private_key
from tests.support import ServerProcess, certgate, require_tool, run_eapol_test

pytestmark = pytest.mark.integration

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


class Legacy:
    """Device certificates signed with a group's CA key outside certgate (not recorded)."""

    def __init__(self, config: Path, directory: Path) -> None:
        self.pki = config.parent / "var" / "pki"
        self.dir = directory
        directory.mkdir()
        self.root = self.pki / "root.crt"

    def ca(self, group: str) -> tuple[x509.Certificate, object]:
        gdir = self.pki / "groups" / group
        return (x509.load_pem_x509_certificate((gdir / "ca.crt").read_bytes()),
                load_private_key(gdir / "ca.key", None))

    def issue(self, cn: str, group: str = "staff", *, days: int = 30, issuer=None,  # noqa: ANN001
              key=None, now: dt.datetime | None = None) -> x509.Certificate:  # noqa: ANN001
        ca_cert, ca_key = self.ca(group)
        device_key = ec.generate_private_key(ec.SECP256R1())
        cert = profiles.device_certificate(
            device_key.public_key(), profiles.name(cn), [x509.RFC822Name(f"{cn}@example.test")],
            group, "http://127.0.0.1:1", issuer or ca_cert, key or ca_key, profiles.new_serial(),
            now or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5), days)
        (self.dir / f"{cn}.key").write_bytes(device_key.private_bytes(
            PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (self.dir / f"{cn}.key").chmod(0o600)
        (self.dir / f"{cn}.chain.pem").write_bytes(cert.public_bytes(PEM)
                                                   + ca_cert.public_bytes(PEM))
        return cert


def inventory(config: Path) -> dict[str, dict]:
    rows = json.loads(certgate("certs", "list", "--json", config=config).stdout)
    return {r["serial"]: r for r in rows}


def eapol(server: ServerProcess, legacy: Legacy, cn: str) -> tuple[int, str]:
    return run_eapol_test(server.radius, legacy.root, legacy.dir / f"{cn}.chain.pem",
                          legacy.dir / f"{cn}.key", legacy.dir, identity=f"{cn}@example.test")


def test_imported_certificates_are_accepted_by_radius(server: ServerProcess, initialized: Path,
                                                      tmp_path: Path) -> None:
    require_tool("eapol_test")
    legacy = Legacy(initialized, tmp_path / "legacy")
    a, b, c = (legacy.issue(cn) for cn in ("old-a", "old-b", "old-c"))
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"# exported from the old server\n" + a.public_bytes(PEM)
                       + b"\n" + b.public_bytes(PEM))
    der = tmp_path / "old-c.der"
    der.write_bytes(c.public_bytes(DER))

    code, out = eapol(server, legacy, "old-a")
    assert code != 0 and "Access-Reject" in out, out[-2000:]  # not in the inventory yet
    assert 'reason="not_issued"' in server.get("/metrics")[1].decode()

    r = certgate("certs", "import", "--group", "staff", str(bundle), str(der), config=initialized)
    assert "imported 3, skipped 0, refused 0 (group staff)" in r.stderr, r.stderr
    serials = [line.split("\t")[0] for line in r.stdout.splitlines()]
    assert serials == [format(x.serial_number, "x") for x in (a, b, c)]
    rows = inventory(initialized)
    for serial in serials:
        assert rows[serial]["group"] == "staff" and rows[serial]["status"] == "active"
        assert rows[serial]["source"] == "import"
    shown = json.loads(certgate("certs", "show", serials[0], config=initialized).stdout)
    assert [e["actor"] for e in shown["audit"]] == ["cli:certs-import"]

    time.sleep(1.0)  # the running server sees another process's insert through the change feed
    for cn in ("old-a", "old-c"):
        code, out = eapol(server, legacy, cn)
        assert code == 0 and "MPPE keys OK" in out, out[-3000:]

    # a re-run changes nothing and is not an error
    r = certgate("certs", "import", "--group", "staff", str(bundle), str(der), config=initialized)
    assert r.stdout == "" and "imported 0, skipped 3, refused 0" in r.stderr
    assert r.stderr.count("already in the inventory (active)") == 3
    assert inventory(initialized) == rows

    # revoking an imported certificate works like any other
    certgate("revoke", "--serial", serials[2], "--reason", "keyCompromise", config=initialized)
    time.sleep(1.0)
    code, out = eapol(server, legacy, "old-c")
    assert code != 0 and "Access-Reject" in out


def test_refusals(initialized: Path, tmp_path: Path) -> None:
    legacy = Legacy(initialized, tmp_path / "legacy")
    staff_ca, _ = legacy.ca("staff")
    good = legacy.issue("good")
    other_group = legacy.issue("guest-dev", "guests")
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = legacy.issue("forged", issuer=staff_ca, key=forger)  # staff's name, wrong key
    assert forged.issuer == staff_ca.subject
    old = legacy.issue("expired", days=10, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    files = {
        "mixed.pem": good.public_bytes(PEM) + other_group.public_bytes(PEM),
        "forged.pem": forged.public_bytes(PEM),
        "ca.pem": staff_ca.public_bytes(PEM),
        "garbage.der": b"\x30\x82\x01\x00 this is not a certificate",
        "broken.pem": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "expired.der": old.public_bytes(DER),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    before = inventory(initialized)
    r = certgate("certs", "import", "--group", "staff",
                 *(str(tmp_path / n) for n in [*files, "missing.pem"]), config=initialized,
                 check=False)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    err = r.stderr
    assert "imported 1, skipped 1, refused 6 (group staff)" in err, err
    assert r.stdout.split("\t")[0] == format(good.serial_number, "x")
    assert f"mixed.pem #2 (serial {other_group.serial_number:x}" in err
    assert "not by group staff's intermediate" in err
    assert "forged.pem #1" in err and "its signature does not verify" in err
    assert "ca.pem #1" in err and "a CA certificate (basicConstraints CA:TRUE)" in err
    assert "garbage.der: refused: not a PEM or DER certificate" in err
    assert "broken.pem: refused: a PEM certificate in it does not decode" in err
    assert "missing.pem: refused: cannot read it" in err
    assert "expired.der #1" in err and "skipped" in err
    after = inventory(initialized)
    assert set(after) - set(before) == {format(good.serial_number, "x")}

    # the guests certificate belongs to guests: importing it there works
    r = certgate("certs", "import", "--group", "guests", str(tmp_path / "mixed.pem"),
                 config=initialized, check=False)
    assert r.returncode == 1 and "imported 1, skipped 0, refused 1" in r.stderr, r.stderr

    # a serial the inventory holds for another certificate is refused
    clash = legacy.issue("clash")
    twin = profiles.device_certificate(
        clash.public_key(), profiles.name("twin"), [], "staff", "http://x", staff_ca,
        legacy.ca("staff")[1], good.serial_number, dt.datetime.now(dt.UTC), 30)
    (tmp_path / "twin.pem").write_bytes(twin.public_bytes(PEM))
    r = certgate("certs", "import", "--group", "staff", str(tmp_path / "twin.pem"),
                 config=initialized, check=False)
    assert r.returncode == 1
    assert f"serial {good.serial_number:x} is already in the inventory for another" in r.stderr

    for args, message in ((["--group", "nope", "x.pem"], "--group: unknown group 'nope'"),
                          (["--group", "staff"], "the following arguments are required: FILE")):
        r = certgate("certs", "import", *args, config=initialized, check=False)
        assert r.returncode == 2 and message in r.stderr, r.stderr
