from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from revocation.crl import RevokedEntry, build_crl, crl_der, crl_pem, signature_hash_for

H = dt.timedelta(hours=1)


def _crl(pki, now, entries=(), number=7, *, issuer="staff"):
    cert, key = getattr(pki, issuer), getattr(pki, f"{issuer}_key")
    return build_crl(cert, key, entries, number, now, now + 24 * H)


class TestBuildCrl:
    def test_fields(self, pki, now):
        crl = _crl(
            pki,
            now,
            [
                RevokedEntry(0x1001, now - H, "key_compromise"),
                RevokedEntry(0x1005, now - 2 * H, None),
                RevokedEntry(0x1006, now - 3 * H, "unspecified"),
            ],
        )
        assert crl.issuer == pki.staff.subject
        assert crl.last_update_utc == now and crl.next_update_utc == now + 24 * H
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = pki.staff.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ski.digest
        assert crl.is_signature_valid(pki.staff.public_key())
        r = crl.get_revoked_certificate_by_serial_number(0x1001)
        assert r.revocation_date_utc == now - H
        assert r.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
            x509.ReasonFlags.key_compromise
        )
        for serial in (0x1005, 0x1006):  # unspecified: reasonCode omitted (RFC 5280 §5.3.1)
            assert len(crl.get_revoked_certificate_by_serial_number(serial).extensions) == 0
        assert crl.get_revoked_certificate_by_serial_number(0x1002) is None

    def test_empty_crl_and_non_utc_input(self, pki, now):
        local = now.astimezone(dt.timezone(dt.timedelta(hours=5)))
        crl = build_crl(pki.staff, pki.staff_key, [], 0, local, local + H)
        assert len(crl) == 0 and crl.last_update_utc == now

    def test_rsa_issuer(self, pki, now):
        crl = _crl(pki, now, [RevokedEntry(0x2001, now, "superseded")], issuer="guests")
        assert crl.is_signature_valid(pki.guests.public_key())

    def test_der_and_pem(self, pki, now):
        crl = _crl(pki, now)
        assert x509.load_der_x509_crl(crl_der(crl)) == crl
        assert crl_pem(crl).startswith(b"-----BEGIN X509 CRL-----")

    def test_accepts_any_iterable(self, pki, now):
        crl = _crl(pki, now, (RevokedEntry(s, now) for s in (1, 2, 3)))
        assert len(crl) == 3


class TestBuildCrlRejects:
    def test_key_mismatch(self, pki, now):
        with pytest.raises(ValueError, match="does not match"):
            build_crl(pki.staff, pki.root_key, [], 1, now, now + H)

    def test_non_ca(self, pki, now):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(pki.leaf.subject)
            .issuer_name(pki.leaf.subject)
            .public_key(key.public_key())
            .serial_number(5)
            .not_valid_before(now)
            .not_valid_after(now + H)
            .sign(key, signature_hash_for(key))
        )
        with pytest.raises(ValueError, match="not a CA"):
            build_crl(leaf, key, [], 1, now, now + H)

    def test_times(self, pki, now):
        with pytest.raises(ValueError, match="later than"):
            build_crl(pki.staff, pki.staff_key, [], 1, now, now)
        with pytest.raises(ValueError, match="timezone-aware"):
            build_crl(pki.staff, pki.staff_key, [], 1, now.replace(tzinfo=None), now + H)
        with pytest.raises(TypeError):
            build_crl(pki.staff, pki.staff_key, [], 1, now.date(), now + H)

    def test_crl_number(self, pki, now):
        with pytest.raises(ValueError, match="crl_number"):
            build_crl(pki.staff, pki.staff_key, [], -1, now, now + H)
        with pytest.raises(ValueError, match="crl_number"):
            build_crl(pki.staff, pki.staff_key, [], 1 << 159, now, now + H)
        with pytest.raises(TypeError):
            build_crl(pki.staff, pki.staff_key, [], "1", now, now + H)

    def test_duplicate_serial(self, pki, now):
        with pytest.raises(ValueError, match="listed twice"):
            _crl(pki, now, [RevokedEntry(5, now), RevokedEntry(5, now - H)])

    def test_wrong_entry_type(self, pki, now):
        with pytest.raises(TypeError):
            _crl(pki, now, [(5, now, None)])

    def test_unsupported_key_type(self, pki, now):
        with pytest.raises(TypeError):
            build_crl(pki.staff, object(), [], 1, now, now + H)


class TestRevokedEntry:
    def test_validation(self, now):
        with pytest.raises(ValueError, match="positive"):
            RevokedEntry(0, now)
        with pytest.raises(ValueError, match="20 octets"):
            RevokedEntry(1 << 159, now)
        with pytest.raises(TypeError):
            RevokedEntry("5", now)
        with pytest.raises(ValueError, match="timezone-aware"):
            RevokedEntry(5, now.replace(tzinfo=None))
        with pytest.raises(ValueError, match="valid reasons"):
            RevokedEntry(5, now, "stolen")
        with pytest.raises(ValueError, match="removeFromCRL"):
            RevokedEntry(5, now, "removeFromCRL")
        assert RevokedEntry((1 << 159) - 1, now).serial.bit_length() == 159


class TestSignatureHash:
    def test_choices(self):
        assert signature_hash_for(ec.generate_private_key(ec.SECP384R1())).name == "sha384"
        assert signature_hash_for(ec.generate_private_key(ec.SECP521R1())).name == "sha512"
        assert signature_hash_for(ed25519.Ed25519PrivateKey.generate()) is None


class TestOpenssl:
    """The CRL as relying parties see it: `openssl crl -verify` and `openssl verify -crl_check`."""

    @pytest.fixture
    def files(self, pki, now, tmp_path):
        revoked = _crl(pki, now, [RevokedEntry(pki.leaf.serial_number, now - H, "keyCompromise")])
        (tmp_path / "staff.crl.pem").write_bytes(crl_pem(revoked))
        (tmp_path / "staff.crl.der").write_bytes(crl_der(revoked))
        (tmp_path / "staff-empty.crl.pem").write_bytes(crl_pem(_crl(pki, now, number=8)))
        root_crl = build_crl(pki.root, pki.root_key, [], 1, now, now + 24 * H)
        (tmp_path / "root.crl.pem").write_bytes(crl_pem(root_crl))
        return tmp_path

    def test_crl_verify(self, pki, openssl, files):
        for form, name in (("PEM", "staff.crl.pem"), ("DER", "staff.crl.der")):
            proc = openssl(
                "crl",
                "-inform",
                form,
                "-in",
                files / name,
                "-noout",
                "-verify",
                "-CAfile",
                pki.path("chain-staff.pem"),
            )
            assert "verify OK" in proc.stderr + proc.stdout

    def test_crl_verify_wrong_ca_fails(self, pki, openssl, files):
        proc = openssl(
            "crl",
            "-in",
            files / "staff.crl.pem",
            "-noout",
            "-verify",
            "-CAfile",
            pki.path("guests.pem"),
            check=False,
        )
        assert "verify OK" not in proc.stderr + proc.stdout

    def test_crl_text(self, pki, openssl, files):
        text = openssl("crl", "-in", files / "staff.crl.pem", "-noout", "-text").stdout
        assert "X509v3 CRL Number: \n                7" in text
        assert "Key Compromise" in text
        assert "X509v3 Authority Key Identifier" in text

    def _verify(self, openssl, pki, now, files, leaf, crl_name):
        return openssl(
            "verify",
            "-attime",
            str(int(now.timestamp())),
            "-crl_check",
            "-CAfile",
            pki.path("root.pem"),
            "-untrusted",
            pki.path("staff.pem"),
            "-CRLfile",
            files / crl_name,
            pki.path(leaf),
            check=False,
        )

    def test_verify_crl_check_revoked(self, pki, now, openssl, files):
        proc = self._verify(openssl, pki, now, files, "leaf.pem", "staff.crl.pem")
        assert proc.returncode != 0
        assert "certificate revoked" in proc.stdout + proc.stderr

    def test_verify_crl_check_good(self, pki, now, openssl, files):
        proc = self._verify(openssl, pki, now, files, "leaf2.pem", "staff.crl.pem")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        proc = self._verify(openssl, pki, now, files, "leaf.pem", "staff-empty.crl.pem")
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def test_large_crl(self, pki, now, openssl, tmp_path):
        entries = [RevokedEntry(0x10000 + i, now - i * H, ("superseded", None)[i % 2]) for i in range(3000)]
        path = tmp_path / "big.crl"
        path.write_bytes(crl_der(_crl(pki, now, entries)))
        openssl(
            "crl", "-inform", "DER", "-in", path, "-noout", "-verify", "-CAfile", pki.path("chain-staff.pem")
        )
        crl = x509.load_der_x509_crl(path.read_bytes())
        assert len(crl) == 3000 and crl.get_revoked_certificate_by_serial_number(0x10000 + 2999)

    def test_verify_crl_check_all(self, pki, now, openssl, files):
        both = files / "both.crl.pem"
        both.write_bytes((files / "staff.crl.pem").read_bytes() + (files / "root.crl.pem").read_bytes())
        args = (
            "verify",
            "-attime",
            str(int(now.timestamp())),
            "-crl_check_all",
            "-CAfile",
            pki.path("root.pem"),
            "-untrusted",
            pki.path("staff.pem"),
            "-CRLfile",
            both,
        )
        assert openssl(*args, pki.path("leaf2.pem"), check=False).returncode == 0
        assert openssl(*args, pki.path("leaf.pem"), check=False).returncode != 0
