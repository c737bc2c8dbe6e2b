from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from enrollment.policy import extract_csr_facts
from enrollment.renewal import (
    PKCS_REQ,
    RENEWAL_REQ,
    Initial,
    Renewal,
    RenewalReason,
    RenewalRejected,
    check_renewal,
    classify,
    issuing_group,
    window_start,
)

ONE = timedelta(seconds=1)


class TestClassify:
    @pytest.mark.parametrize("mt", [RENEWAL_REQ, PKCS_REQ])
    def test_signed_by_our_cert_is_renewal(self, pki, now, mt):
        old = pki.device()
        got = classify(mt, old, pki.groups, now)
        assert got == Renewal(old, pki.staff)

    def test_guest_group_found(self, pki, now):
        old = pki.device(issuer="guest")
        assert classify(RENEWAL_REQ, old, pki.groups, now) == Renewal(old, pki.guest)

    def test_self_signed_pkcsreq_is_initial(self, pki, now):
        assert classify(PKCS_REQ, pki.self_signed(), pki.groups, now) == Initial()

    def test_self_signed_renewalreq_not_ours(self, pki, now):
        with pytest.raises(RenewalRejected) as e:
            classify(RENEWAL_REQ, pki.self_signed(), pki.groups, now)
        assert e.value.reason is RenewalReason.NOT_OURS

    def test_rogue_issuer_dn_copy_not_ours(self, pki, now):
        rogue = pki.rogue()
        assert rogue.issuer == pki.staff_ca.subject
        assert issuing_group(rogue, pki.groups) is None
        assert classify(PKCS_REQ, rogue, pki.groups, now) == Initial()
        with pytest.raises(RenewalRejected, match="not_ours"):
            classify(RENEWAL_REQ, rogue, pki.groups, now)


class TestCheckRenewal:
    def facts(self, h, cn="dev-01.example.com", key=None):
        return extract_csr_facts(h.make_csr(key or h.ec_key("p384"), cn=cn))

    def ok(self, pki, h, now, old=None, **kw):
        old = old or pki.device()
        check_renewal(old, "active", pki.staff, pki.staff, self.facts(h), now, **kw)

    def reject(self, pki, h, now, *, old=None, status="active", group_of_old="staff",
               endpoint="staff", facts=None, **kw) -> RenewalReason:
        old = old or pki.device()
        with pytest.raises(RenewalRejected) as e:
            check_renewal(old, status, group_of_old, endpoint, facts or self.facts(h), now, **kw)
        return e.value.reason

    def test_accepted_inside_window(self, pki, h, now):
        self.ok(pki, h, now)
        self.ok(pki, h, now, window=timedelta(days=90))

    def test_window_edges(self, pki, h, now):
        old = pki.device()
        start = window_start(old, 0.3)
        lifetime = old.not_valid_after_utc - old.not_valid_before_utc
        assert start == old.not_valid_after_utc - lifetime * 0.3
        self.ok(pki, h, start, old=old)
        assert self.reject(pki, h, start - ONE, old=old) is RenewalReason.OUTSIDE_WINDOW

    def test_window_edges_days(self, pki, h, now):
        old = pki.device()
        start = old.not_valid_after_utc - timedelta(days=30)
        self.ok(pki, h, start, old=old, window=timedelta(days=30))
        assert self.reject(pki, h, start - ONE, old=old, window=timedelta(days=30)) is (
            RenewalReason.OUTSIDE_WINDOW
        )

    def test_expiry_edges(self, pki, h, now):
        old = pki.device()
        end = old.not_valid_after_utc
        self.ok(pki, h, end, old=old)  # notAfter is inclusive (RFC 5280)
        assert self.reject(pki, h, end + ONE, old=old) is RenewalReason.EXPIRED

    def test_grace(self, pki, h, now):
        old = pki.device()
        end = old.not_valid_after_utc
        grace = timedelta(days=7)
        self.ok(pki, h, end + grace, old=old, grace=grace)
        assert self.reject(pki, h, end + grace + ONE, old=old, grace=grace) is (
            RenewalReason.EXPIRED
        )

    def test_not_yet_valid_is_outside_window(self, pki, h, now):
        old = pki.device(not_before=now + timedelta(days=1), not_after=now + timedelta(days=2))
        assert self.reject(pki, h, now, old=old, window=1.0) is RenewalReason.OUTSIDE_WINDOW

    def test_revoked(self, pki, h, now):
        assert self.reject(pki, h, now, status="revoked") is RenewalReason.REVOKED

    def test_superseded(self, pki, h, now):
        assert self.reject(pki, h, now, status="superseded") is RenewalReason.SUPERSEDED

    @pytest.mark.parametrize("status, group", [(None, "staff"), ("active", None), ("??", "staff")])
    def test_not_ours(self, pki, h, now, status, group):
        assert self.reject(pki, h, now, status=status, group_of_old=group) is (
            RenewalReason.NOT_OURS
        )

    def test_wrong_group(self, pki, h, now):
        assert self.reject(pki, h, now, endpoint="guest") is RenewalReason.WRONG_GROUP
        assert self.reject(pki, h, now, group_of_old=pki.guest, endpoint=pki.staff) is (
            RenewalReason.WRONG_GROUP
        )

    def test_subject_changed(self, pki, h, now):
        assert self.reject(pki, h, now, facts=self.facts(h, cn="dev-02.example.com")) is (
            RenewalReason.SUBJECT_CHANGED
        )

    def test_subject_string_type_does_not_matter(self, pki, h, now):
        """A client re-encoding its CN as PrintableString is not a subject change."""
        old = pki.device()
        name = x509.Name([x509.NameAttribute(
            x509.NameOID.COMMON_NAME, "dev-01.example.com", x509.name._ASN1Type.PrintableString
        )])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(
            h.ec_key("p384"), hashes.SHA256()
        )
        facts = extract_csr_facts(csr)
        check_renewal(old, "active", "staff", "staff", facts, now)

    def test_key_reuse(self, pki, h, now):
        key = h.ec_key("p256")
        old = pki.device(key=key)
        same = extract_csr_facts(h.make_csr(key))
        check_renewal(old, "active", "staff", "staff", same, now)
        assert self.reject(pki, h, now, old=old, facts=same, require_new_key=True) is (
            RenewalReason.KEY_REUSED
        )

    def test_bad_fraction(self, pki):
        with pytest.raises(ValueError):
            window_start(pki.device(), 1.5)
