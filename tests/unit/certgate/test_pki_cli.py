"""`certgate init`, `groups`, `ca root`, `certs issue/list/show`, `revoke`: real CLI, real openssl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support import certgate

OPENSSL = shutil.which("openssl")


def pki_dir(config: Path) -> Path:
    return config.parent / "var" / "pki"


def test_init_creates_one_intermediate_per_group_chaining_to_root(initialized: Path) -> None:
    pki = pki_dir(initialized)
    out = certgate("groups", "--json", config=initialized).stdout
    groups = json.loads(out)
    assert [g["group"] for g in groups] == ["staff", "guests"]
    assert all(g["status"] == "ok" and len(g["key_id"]) == 40 for g in groups)
    root = x509.load_pem_x509_certificate((pki / "root.crt").read_bytes())
    for g in ("staff", "guests"):
        inter = x509.load_pem_x509_certificate((pki / "groups" / g / "ca.crt").read_bytes())
        inter.verify_directly_issued_by(root)
        assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        if OPENSSL:
            r = subprocess.run([OPENSSL, "verify", "-CAfile", str(pki / "root.crt"),
                                str(pki / "groups" / g / "ca.crt")], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            r = subprocess.run([OPENSSL, "verify", "-CAfile", str(pki / "root.crt"), "-untrusted",
                                str(pki / "groups" / g / "ca.crt"), str(pki / "groups" / g / "ra.crt")],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
    server = x509.load_pem_x509_certificate((pki / "server.crt").read_bytes())
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert certgate("ca", "root", config=initialized).stdout == (pki / "root.crt").read_text()


def test_keys_are_0600_and_init_never_overwrites(initialized: Path) -> None:
    pki = pki_dir(initialized)
    keys = list(pki.rglob("*.key"))
    assert len(keys) == 1 + 1 + 2 * 2 + 1  # root, server, (ca, ra) per group, SCEP blob key
    keys.append(pki / "scep-challenge.secret")
    for key in keys:
        assert (key.stat().st_mode & 0o777) == 0o600, key
    before = {k: k.read_bytes() for k in keys}
    out = certgate("init", config=initialized).stdout
    assert "created" not in out
    assert {k: k.read_bytes() for k in keys} == before


def test_init_after_adding_a_group_creates_only_that_group(initialized: Path) -> None:
    pki = pki_dir(initialized)
    root_before = (pki / "root.crt").read_bytes()
    staff_before = (pki / "groups" / "staff" / "ca.key").read_bytes()
    with initialized.open("a") as fh:
        fh.write("\n[groups.iot]\nvlan = 30\n")
    out = certgate("init", config=initialized).stdout
    assert "created group iot intermediate" in out
    assert "created root" not in out
    assert (pki / "root.crt").read_bytes() == root_before
    assert (pki / "groups" / "staff" / "ca.key").read_bytes() == staff_before
    assert (pki / "groups" / "iot" / "ca.crt").exists()


def test_passphrase_encrypts_keys_and_wrong_passphrase_is_a_clear_error(config: Path) -> None:
    text = config.read_text().replace("[radius]", '[pki]\npassphrase_env = "CG_PASS"\n\n[radius]')
    config.write_text(text)
    env = {"CG_PASS": "correct horse battery staple"}
    certgate("init", config=config, env=env)
    key = (pki_dir(config) / "groups" / "staff" / "ca.key").read_text()
    assert "ENCRYPTED" in key
    out = config.parent / "out"
    r = certgate("certs", "issue", "--group", "staff", "--cn", "dev1", "--out", str(out),
                 config=config, env={"CG_PASS": "wrong"}, check=False)
    assert r.returncode == 1
    assert "wrong passphrase for key file" in r.stderr and "Traceback" not in r.stderr
    r = certgate("certs", "issue", "--group", "staff", "--cn", "dev1", "--out", str(out),
                 config=config, check=False, env={"CG_PASS": ""})
    assert r.returncode == 2 and "CG_PASS, which is not set" in r.stderr
    certgate("certs", "issue", "--group", "staff", "--cn", "dev1", "--out", str(out),
             config=config, env=env)


def test_missing_key_file_is_a_one_line_error(initialized: Path) -> None:
    (pki_dir(initialized) / "groups" / "staff" / "ca.key").unlink()
    r = certgate("certs", "issue", "--group", "staff", "--cn", "x", "--out",
                 str(initialized.parent / "o"), config=initialized, check=False)
    assert r.returncode == 1
    assert "ca.key is missing" in r.stderr and "Traceback" not in r.stderr


def test_key_with_loose_mode_is_refused(initialized: Path) -> None:
    key = pki_dir(initialized) / "groups" / "staff" / "ca.key"
    os.chmod(key, 0o644)
    r = certgate("certs", "issue", "--group", "staff", "--cn", "x", "--out",
                 str(initialized.parent / "o"), config=initialized, check=False)
    assert r.returncode == 1 and "chmod 600" in r.stderr


def test_issue_list_show_revoke(initialized: Path, tmp_path: Path) -> None:
    out = tmp_path / "clients"
    serial = certgate("certs", "issue", "--group", "staff", "--cn", "laptop-01", "--out", str(out),
                      "--san", "email:laptop-01@example.test", "--device-id", "dev-1", "--p12",
                      config=initialized).stdout.strip()
    assert int(serial, 16) > 0
    for suffix in (".key", ".crt", ".chain.pem", ".p12"):
        assert (out / f"laptop-01{suffix}").exists()
    assert ((out / "laptop-01.key").stat().st_mode & 0o777) == 0o600
    cert = x509.load_pem_x509_certificate((out / "laptop-01.crt").read_bytes())
    assert format(cert.serial_number, "x") == serial
    assert cert.serial_number.bit_length() > 128
    chain = x509.load_pem_x509_certificates((out / "laptop-01.chain.pem").read_bytes())
    assert len(chain) == 2 and chain[0] == cert
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value.endswith("/crl/staff.crl")
    if OPENSSL:
        pki = pki_dir(initialized)
        r = subprocess.run([OPENSSL, "verify", "-CAfile", str(pki / "root.crt"), "-untrusted",
                            str(pki / "groups" / "staff" / "ca.crt"), str(out / "laptop-01.crt")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    listed = json.loads(certgate("certs", "list", "--json", config=initialized).stdout)
    assert [c["serial"] for c in listed] == [serial]
    assert listed[0]["device_id"] == "dev-1" and listed[0]["status"] == "active"
    shown = json.loads(certgate("certs", "show", serial, config=initialized).stdout)
    assert shown["subject"] == "CN=laptop-01"
    assert [a["action"] for a in shown["audit"]] == ["issue"]

    certgate("revoke", "--serial", serial, "--reason", "keyCompromise", config=initialized)
    shown = json.loads(certgate("certs", "show", serial, config=initialized).stdout)
    assert shown["status"] == "revoked" and shown["reason"] == "keyCompromise"
    assert [a["action"] for a in shown["audit"]] == ["revoke", "issue"]
    revoked = json.loads(certgate("certs", "list", "--status", "revoked", "--json",
                                  config=initialized).stdout)
    assert len(revoked) == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("certs", "issue", "--group", "nope", "--cn", "x", "--out", "o"), 2, "unknown group"),
        (("certs", "show", "zz-not-hex"), 2, "not a hexadecimal serial"),
        (("certs", "show", "abcdef"), 1, "no certificate with serial"),
        (("revoke", "--serial", "abc", "--reason", "because"), 2, "reason"),
        (("frobnicate",), 2, "invalid choice"),
    ],
)
def test_cli_errors_exit_codes(initialized: Path, args, code: int, message: str) -> None:
    r = certgate(*args, config=initialized, check=False)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_bad_config_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[radius]\nlisten = 'nowhere'\n")
    r = certgate("check-config", config=bad, check=False)
    assert r.returncode == 2
    assert "radius.listen" in r.stderr and "Traceback" not in r.stderr
    r = certgate("check-config", check=False)
    assert r.returncode == 2 and "CERTGATE_CONFIG" in r.stderr


def test_config_from_environment(initialized: Path) -> None:
    r = certgate("check-config", env={"CERTGATE_CONFIG": str(initialized)})
    assert "ok" in r.stdout


def test_store_that_cannot_be_opened(initialized: Path) -> None:
    text = initialized.read_text().replace('[server]\ndata_dir = "var"',
                                           '[server]\ndata_dir = "var"\n[storage]\npath = "/proc/x/y.sqlite"')
    initialized.write_text(text)
    r = certgate("certs", "list", config=initialized, check=False)
    assert r.returncode == 1
    assert "cannot open the store" in r.stderr and "Traceback" not in r.stderr


def test_import_root_and_intermediate(tmp_path: Path, initialized: Path) -> None:
    """Bring your own CA: import a root (with key) and an existing intermediate."""
    from tests.support import write_config

    src = pki_dir(initialized)
    other = write_config(tmp_path / "byo")
    out = certgate("init", "--import-root", str(src / "root.crt"), "--import-root-key",
                   str(src / "root.key"), config=other).stdout
    assert "created root (imported)" in out
    assert (pki_dir(other) / "root.crt").read_bytes() == (src / "root.crt").read_bytes()

    third = write_config(tmp_path / "byo2", extra="\n[groups.iot]\n")
    certgate("init", "--import-root", str(src / "root.crt"), "--import-root-key",
             str(src / "root.key"), config=third)
    r = certgate("ca", "import", "--group", "iot", "--cert", str(src / "groups/staff/ca.crt"),
                 "--key", str(src / "groups/staff/ca.key"), config=third, check=False)
    assert r.returncode == 1 and "already has an intermediate" in r.stderr


def test_bulk_revocation_needs_confirmation(initialized: Path, tmp_path: Path) -> None:
    out = tmp_path / "bulk"
    for i in range(3):
        certgate("certs", "issue", "--group", "guests", "--cn", f"g{i}", "--out", str(out),
                 "--device-id", "shared-kiosk" if i < 2 else "other", config=initialized)
    r = certgate("revoke", "--group", "guests", "--reason", "affiliationChanged",
                 config=initialized, check=False)
    assert r.returncode == 2 and "re-run with --yes" in r.stderr
    assert json.loads(certgate("certs", "list", "--status", "revoked", "--json",
                               config=initialized).stdout) == []
    r = certgate("revoke", "--device-id", "shared-kiosk", "--reason", "cessation_of_operation",
                 "--yes", config=initialized)
    assert r.stdout.count("revoked ") == 2 and "2 certificate(s) revoked" in r.stderr
    r = certgate("revoke", "--subject", "g2", "--reason", "certificateHold", config=initialized)
    revoked = json.loads(certgate("certs", "list", "--status", "revoked", "--json",
                                  config=initialized).stdout)
    assert sorted(c["reason"] for c in revoked) == ["certificateHold", "cessationOfOperation",
                                                    "cessationOfOperation"]
    held = next(c["serial"] for c in revoked if c["reason"] == "certificateHold")
    certgate("revoke", "--serial", held, "--reason", "certificateHold", "--release-hold",
             config=initialized)
    assert json.loads(certgate("certs", "show", held, config=initialized).stdout)["status"] == "active"
    r = certgate("revoke", "--group", "guests", "--reason", "removeFromCRL", "--yes",
                 config=initialized, check=False)
    assert r.returncode == 2  # not a revocation reason


def test_rsa_hierarchy_selectable(config: Path) -> None:
    text = config.read_text().replace("[radius]", '[pki]\nkey_type = "rsa-3072"\n\n[radius]')
    text = text.replace("[groups.guests]", '[groups.guests]\nca_key_type = "rsa-2048"')
    config.write_text(text)
    certgate("init", config=config)
    pki = pki_dir(config)
    from cryptography.hazmat.primitives.asymmetric import rsa

    root = x509.load_pem_x509_certificate((pki / "root.crt").read_bytes())
    guests = x509.load_pem_x509_certificate((pki / "groups/guests/ca.crt").read_bytes())
    staff = x509.load_pem_x509_certificate((pki / "groups/staff/ca.crt").read_bytes())
    assert isinstance(root.public_key(), rsa.RSAPublicKey) and root.public_key().key_size == 3072
    assert guests.public_key().key_size == 2048 and staff.public_key().key_size == 3072
    guests.verify_directly_issued_by(root)
