"""Incremental complete CRLs and delta CRLs (revocation/crl_delta.py): extensions decoded with
cryptography, the incremental CRL equal to one rebuilt from the rows, and OpenSSL's
`verify -crl_check -use_deltas` combining base and delta as RFC 5280 §5.2.4 says."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from revocation.crl_delta import Base, CrlContents, CrlRow, complete_extensions, delta_extensions
from revocation.crl_der import der_to_pem, encode_entries, sign_crl

DELTA_URL = "http://pki.test/crl/delta/staff.crl"


def _sign(pki, contents: CrlContents, number: int, now: dt.datetime, delta: bool = False):
    nxt = now + dt.timedelta(hours=1)
    if delta:
        assert contents.base is not None
        return sign_crl(pki.staff, pki.staff_key, [encode_entries(contents.delta_entries())],
                        number, now, nxt, delta_extensions(contents.base.number))
    signed = sign_crl(pki.staff, pki.staff_key, contents.complete_chunks(), number, now, nxt,
                      complete_extensions(DELTA_URL))
    contents.signed(signed)
    return signed


def _entries(der: bytes) -> dict[int, str | None]:
    crl = x509.load_der_x509_crl(der)
    out = {}
    for entry in crl:
        try:
            out[entry.serial_number] = entry.extensions.get_extension_for_class(
                x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            out[entry.serial_number] = None
    return out


def test_delta_lists_changes_since_the_base_with_its_extensions(pki, now) -> None:
    t = now - dt.timedelta(minutes=5)
    contents = CrlContents.from_rows(10, [(0x10, t, "keyCompromise"), (0x11, t, "certificateHold"),
                                          (0x12, t, "certificateHold")])
    base_der = _sign(pki, contents, 7, now).der
    contents.promote(7, now)
    base = x509.load_der_x509_crl(base_der)
    assert base.is_signature_valid(pki.staff.public_key())
    freshest = base.extensions.get_extension_for_class(x509.FreshestCRL)
    assert not freshest.critical
    assert freshest.value[0].full_name == [x509.UniformResourceIdentifier(DELTA_URL)]
    assert _entries(base_der) == {0x10: "keyCompromise", 0x11: "certificateHold",
                                  0x12: "certificateHold"}

    touched = contents.apply([
        CrlRow(0x20, "revoked", now, "superseded"),        # new, final
        CrlRow(0x11, "active"),                             # hold of the base released
        CrlRow(0x12, "revoked", t, "keyCompromise"),        # hold of the base made final
        CrlRow(0x21, "revoked", now, "certificateHold"),    # held after the base ...
        CrlRow(0x30, "active"),                             # an issuance: not a CRL matter
    ], 11)
    assert touched == 4
    contents.apply([CrlRow(0x21, "active")], 12)            # ... and released: gone again
    delta_der = _sign(pki, contents, 9, now, delta=True).der
    delta = x509.load_der_x509_crl(delta_der)
    assert delta.is_signature_valid(pki.staff.public_key())
    indicator = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert indicator.critical and indicator.value.crl_number == 7
    assert delta.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 9
    assert delta.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    with pytest.raises(x509.ExtensionNotFound):
        delta.extensions.get_extension_for_class(x509.FreshestCRL)
    assert _entries(delta_der) == {0x20: "superseded", 0x11: "removeFromCRL",
                                   0x12: "keyCompromise"}
    assert delta.get_revoked_certificate_by_serial_number(0x11).revocation_date_utc == t

    # the complete CRL re-signed from the same contents: everything revoked now
    full_der = _sign(pki, contents, 10, now).der
    assert _entries(full_der) == {0x10: "keyCompromise", 0x12: "keyCompromise",
                                  0x20: "superseded"}
    assert len(contents) == 3


def test_incremental_complete_crl_equals_a_rebuild(pki, now) -> None:
    rows = [(0x1000 + i, now - dt.timedelta(seconds=i), ("keyCompromise", None,
             "certificateHold")[i % 3]) for i in range(300)]
    contents = CrlContents.from_rows(1, rows)
    state = {s: (at, r) for s, at, r in rows}
    for step in range(5):  # appends, holds, releases, with a re-signing between each
        changes = [CrlRow(0x5000 + step * 10 + k, "revoked", now, "affiliationChanged")
                   for k in range(7)]
        held = [s for s, (_, r) in state.items() if r == "certificateHold"]
        changes.append(CrlRow(held[0], "active"))
        changes.append(CrlRow(held[1], "revoked", state[held[1]][0], "cessationOfOperation"))
        contents.apply(changes, 2 + step)
        for row in changes:
            if row.status == "revoked":
                state[row.serial] = (row.revoked_at, row.reason)
            else:
                state.pop(row.serial)
        der = _sign(pki, contents, 20 + step, now).der
        assert x509.load_der_x509_crl(der).is_signature_valid(pki.staff.public_key())
        assert _entries(der) == {s: r for s, (_, r) in state.items()}
        assert len(contents) == len(state)


def test_a_persisted_base_is_taken_up_only_with_its_holds(pki, now) -> None:
    contents = CrlContents.from_rows(5, [(0x10, now, None), (0x11, now, "certificateHold")])
    der = _sign(pki, contents, 3, now).der
    base = contents.promote(3, now)
    again = CrlContents.from_signed(der, base, contents.final_count)
    again.apply([CrlRow(0x12, "revoked", now, "keyCompromise")], 6)
    assert _entries(_sign(pki, again, 4, now).der) == {0x10: None, 0x11: "certificateHold",
                                                      0x12: "keyCompromise"}
    assert again.delta_entries() == [(0x12, now, "keyCompromise")]
    with pytest.raises(ValueError):
        CrlContents.from_signed(der, Base(3, 5, now, {0x99: now}), 1)
    with pytest.raises(ValueError):
        contents.apply([], 4)  # older than the contents


@pytest.fixture
def two_leaves_base_and_delta(pki, now, tmp_path):
    """Base: leaf2 on hold. Delta: leaf revoked (keyCompromise), leaf2's hold released."""
    t = now - dt.timedelta(minutes=1)
    contents = CrlContents.from_rows(1, [(0x7777, t, "superseded"),
                                         (pki.leaf2.serial_number, t, "certificateHold")])
    base = tmp_path / "base.crl"
    base.write_bytes(_sign(pki, contents, 1, t).der)
    contents.promote(1, t)
    contents.apply([CrlRow(pki.leaf.serial_number, "revoked", now, "keyCompromise"),
                    CrlRow(pki.leaf2.serial_number, "active")], 2)
    delta = tmp_path / "delta.crl"
    delta.write_bytes(_sign(pki, contents, 2, now, delta=True).der)
    for path in (base, delta):
        path.with_suffix(".pem").write_bytes(der_to_pem(path.read_bytes()))
    return base.with_suffix(".pem"), delta.with_suffix(".pem")


def _verify(openssl, pki, cert: str, *crls):
    args = ["verify", "-crl_check", "-use_deltas", "-CAfile", pki.path("root.pem"),
            "-untrusted", pki.path("staff.pem")]
    for crl in crls:
        args += ["-CRLfile", crl]
    return openssl(*args, pki.path(cert), check=False)


def test_openssl_sees_a_revocation_only_in_the_delta(openssl, pki, two_leaves_base_and_delta) -> None:
    base, delta = two_leaves_base_and_delta
    both = _verify(openssl, pki, "leaf.pem", base, delta)
    assert both.returncode != 0 and "certificate revoked" in both.stdout + both.stderr, both
    alone = _verify(openssl, pki, "leaf.pem", base)  # the base alone does not list it
    assert alone.returncode == 0, alone.stdout + alone.stderr
    # leaf2: on hold in the base, removeFromCRL in the delta -> OK with the delta only
    released = _verify(openssl, pki, "leaf2.pem", base, delta)
    assert released.returncode == 0, released.stdout + released.stderr
    held = _verify(openssl, pki, "leaf2.pem", base)
    assert held.returncode != 0 and "certificate revoked" in held.stdout + held.stderr
