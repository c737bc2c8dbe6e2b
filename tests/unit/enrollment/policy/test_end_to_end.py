"""The layer as the SCEP service will use it: CSR in, decision out."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID

from enrollment.blob import BlobClaims, check_blob_claims, looks_like_blob, mint_blob, open_blob
from enrollment.challenges import (
    ChallengeBinding,
    FirstUse,
    new_challenge,
    parse_token,
    verify_dynamic,
)
from enrollment.policy import GroupCsrPolicy, check_csr

SECRET = b"k" * 32


def test_dynamic_token_through_a_printablestring_csr(h, now, pki):
    binding = ChallengeBinding("staff", now + timedelta(hours=1), subject_cn="dev-01.example.com",
                               sans=("dns:dev-01.example.com",), key_types=("ec-p256",))
    token, record = new_challenge(SECRET, binding, now)
    csr = h.make_csr(sans=[x509.DNSName("dev-01.example.com")], challenge=token,
                     challenge_tag=_ASN1Type.PrintableString)
    facts = check_csr(csr, GroupCsrPolicy())
    assert not looks_like_blob(facts.challenge_password)
    assert parse_token(SECRET, facts.challenge_password) == record.jti
    assert verify_dynamic(SECRET, facts.challenge_password, record, facts, pki.staff, "tx-1",
                          now) == FirstUse()


def test_blob_through_a_printablestring_csr(h, now, pki):
    mdm, cg = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    claims = BlobClaims(group="staff", sub="dev-01.example.com", nbf=now,
                        exp=now + timedelta(hours=1), sans=("dns:dev-01.example.com",),
                        eku=(ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,), key=("ec-p256",),
                        validity_days=90)
    blob = mint_blob(claims, mdm, cg.public_key(), now)
    csr = h.make_csr(sans=[x509.DNSName("dev-01.example.com")], challenge=blob,
                     challenge_tag=_ASN1Type.PrintableString)
    policy = GroupCsrPolicy(max_validity_days=365)
    facts = check_csr(csr, policy)
    assert facts.challenge_password == blob and looks_like_blob(blob)
    opened = open_blob(facts.challenge_password, cg, [mdm.public_key()], now)
    check_blob_claims(opened, facts, pki.staff, now, max_validity_days=policy.max_validity_days)
