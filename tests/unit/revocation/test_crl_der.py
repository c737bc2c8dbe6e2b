"""The fast CRL encoder is byte-identical to cryptography's builder and verifies."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from revocation.crl import RevokedEntry, build_crl, crl_der, crl_pem
from revocation.crl_der import build_crl_der, der_to_pem

REASONS = ("keyCompromise", "superseded", None, "cessationOfOperation", "certificateHold",
           "unspecified", "privilegeWithdrawn", "aACompromise", "affiliationChanged")


@pytest.mark.parametrize("issuer", ["staff", "rsa"])
@pytest.mark.parametrize("count", [0, 1, 300])
def test_identical_to_build_crl(pki, now, issuer: str, count: int) -> None:
    cert, key = (pki.staff, pki.staff_key) if issuer == "staff" else (pki.guests, pki.guests_key)
    rows = [((1 << 128) + i * 7919 + (1 << 20) * (i % 3), now - dt.timedelta(days=i % 700),
             REASONS[i % len(REASONS)]) for i in range(count)]
    rows.append((127, dt.datetime(2051, 1, 1, tzinfo=dt.UTC), None))  # GeneralizedTime, short serial
    nxt = now + dt.timedelta(hours=24)
    reference = build_crl(cert, key, [RevokedEntry(*r) for r in rows], 42, now, nxt)
    fast = x509.load_der_x509_crl(build_crl_der(cert, key, rows, 42, now, nxt))
    assert fast.tbs_certlist_bytes == reference.tbs_certlist_bytes
    assert fast.is_signature_valid(cert.public_key())
    assert len(fast) == len(rows)
    assert der_to_pem(crl_der(fast)) == crl_pem(fast)


def test_bad_serial_refused(pki, now) -> None:
    with pytest.raises(ValueError):
        build_crl_der(pki.staff, pki.staff_key, [(0, now, None)], 1, now,
                      now + dt.timedelta(hours=1))
