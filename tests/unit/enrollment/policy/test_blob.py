"""Challenge blobs. `seal`/`sign_jws` below re-implement docs/challenge-blob.md
independently of enrollment.blob, so the documented format is what gets tested."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID

from enrollment.blob import (
    BlobClaims,
    check_blob_claims,
    key_id,
    looks_like_blob,
    mint_blob,
    open_blob,
)
from enrollment.challenges import ChallengeReason, ChallengeRejected

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string


@pytest.fixture(scope="module")
def mdm_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def cg_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def claims(now) -> BlobClaims:
    return BlobClaims(
        group="staff",
        sub="dev-01.example.com",
        sans=("dns:dev-01.example.com", "uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3"),
        eku=(CLIENT_AUTH,),
        key=("ec-p256", "rsa-2048+"),
        validity_days=365,
        nbf=now - timedelta(minutes=5),
        exp=now + timedelta(hours=1),
        jti="8d3f0a2b9c1e4f5a6b7c8d9e0f1a2b3c",
        device_id="intune-device-7f1c",
    )


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sign_jws(header: dict, body: dict, key: ec.EllipticCurvePrivateKey) -> bytes:
    si = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(body).encode())
    r, s = decode_dss_signature(key.sign(si.encode(), ec.ECDSA(hashes.SHA256())))
    return (si + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).encode()


def seal(jws: bytes, recipient: ec.EllipticCurvePublicKey, version: int = 1) -> str:
    spki = recipient.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    e = ec.generate_private_key(ec.SECP256R1())
    epk = e.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    header = bytes([version]) + hashlib.sha256(spki).digest()[:8] + epk
    okm = HKDF(hashes.SHA256(), 44, None, b"certgate/scep-challenge-blob/v1\x00" + header).derive(
        e.exchange(ec.ECDH(), recipient)
    )
    return base64.b64encode(header + AESGCM(okm[:32]).encrypt(okm[32:], jws, header)).decode()


def body_of(claims: BlobClaims) -> dict:
    return claims.to_json_dict()


def reason_of(fn, *args, **kw) -> ChallengeReason:
    with pytest.raises(ChallengeRejected) as e:
        fn(*args, **kw)
    return e.value.reason


class TestRoundTrip:
    def test_mint_open(self, claims, mdm_key, cg_key, now):
        blob = mint_blob(claims, mdm_key, cg_key.public_key(), now)
        got = open_blob(blob, cg_key, [mdm_key.public_key()], now)
        assert got == claims
        assert got.kid == key_id(mdm_key.public_key()) and len(got.kid) == 16

    def test_printable_and_short(self, claims, mdm_key, cg_key, now, h):
        blob = mint_blob(claims, mdm_key, cg_key.public_key(), now)
        assert re.fullmatch(h.PRINTABLE, blob)
        assert "_" not in blob and "-" not in blob
        assert len(blob) < 1024
        assert looks_like_blob(blob) and not looks_like_blob("A" * 42)

    def test_jti_generated_when_empty(self, claims, mdm_key, cg_key, now):
        blob = mint_blob(replace(claims, jti=""), mdm_key, cg_key.public_key(), now)
        assert len(open_blob(blob, cg_key, [mdm_key.public_key()], now).jti) == 32

    def test_independent_sealer_interoperates(self, claims, mdm_key, cg_key, now):
        jws = sign_jws({"alg": "ES256", "kid": key_id(mdm_key.public_key())}, body_of(claims),
                       mdm_key)
        assert open_blob(seal(jws, cg_key.public_key()), cg_key, [mdm_key.public_key()], now) == (
            claims
        )

    def test_key_rotation(self, claims, mdm_key, cg_key, now):
        old = ec.generate_private_key(ec.SECP256R1())
        blob = mint_blob(claims, mdm_key, old.public_key(), now)
        assert open_blob(blob, [cg_key, old], [mdm_key.public_key()], now) == claims

    def test_newlines_tolerated(self, claims, mdm_key, cg_key, now):
        blob = mint_blob(claims, mdm_key, cg_key.public_key(), now)
        wrapped = "\n".join(blob[i : i + 64] for i in range(0, len(blob), 64))
        assert open_blob(wrapped, cg_key, [mdm_key.public_key()], now) == claims


class TestRejections:
    def test_time_edges(self, claims, mdm_key, cg_key, now):
        blob = mint_blob(claims, mdm_key, cg_key.public_key(), now)
        keys = [mdm_key.public_key()]
        one = timedelta(seconds=1)
        open_blob(blob, cg_key, keys, claims.exp - one)
        open_blob(blob, cg_key, keys, claims.nbf)
        assert reason_of(open_blob, blob, cg_key, keys, claims.exp) is ChallengeReason.EXPIRED
        assert reason_of(open_blob, blob, cg_key, keys, claims.nbf - one) is (
            ChallengeReason.NOT_YET_VALID
        )
        open_blob(blob, cg_key, keys, claims.exp, leeway=timedelta(seconds=30))

    def test_wrong_certgate_key(self, claims, mdm_key, cg_key, now):
        other = ec.generate_private_key(ec.SECP256R1())
        blob = mint_blob(claims, mdm_key, other.public_key(), now)
        assert reason_of(open_blob, blob, cg_key, [mdm_key.public_key()], now) is (
            ChallengeReason.DECRYPT_FAILED
        )

    @pytest.mark.parametrize("offset", [5, 12, 50, -20, -1])
    def test_tamper(self, claims, mdm_key, cg_key, now, offset):
        raw = bytearray(base64.b64decode(mint_blob(claims, mdm_key, cg_key.public_key(), now)))
        raw[offset] ^= 0x01
        r = reason_of(open_blob, base64.b64encode(raw).decode(), cg_key, [mdm_key.public_key()],
                      now)
        assert r is ChallengeReason.DECRYPT_FAILED

    def test_version_byte(self, claims, mdm_key, cg_key, now):
        raw = bytearray(base64.b64decode(mint_blob(claims, mdm_key, cg_key.public_key(), now)))
        raw[0] = 2
        assert reason_of(open_blob, base64.b64encode(raw).decode(), cg_key,
                         [mdm_key.public_key()], now) is ChallengeReason.BAD_FORMAT

    def test_truncated(self, claims, mdm_key, cg_key, now):
        blob = mint_blob(claims, mdm_key, cg_key.public_key(), now)
        raw = base64.b64decode(blob)[:-30]
        assert reason_of(open_blob, base64.b64encode(raw).decode(), cg_key,
                         [mdm_key.public_key()], now) is ChallengeReason.DECRYPT_FAILED

    @pytest.mark.parametrize("bad", ["", "not base64!", "AAAA_-AA", "A" * 3000, "AQID"])
    def test_bad_format(self, bad, mdm_key, cg_key, now):
        assert reason_of(open_blob, bad, cg_key, [mdm_key.public_key()], now) is (
            ChallengeReason.BAD_FORMAT
        )

    def test_unknown_signer(self, claims, mdm_key, cg_key, now):
        blob = mint_blob(claims, mdm_key, cg_key.public_key(), now)
        stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
        assert reason_of(open_blob, blob, cg_key, [stranger], now) is (
            ChallengeReason.BAD_SIGNATURE
        )

    def test_forged_signature_with_known_kid(self, claims, mdm_key, cg_key, now):
        attacker = ec.generate_private_key(ec.SECP256R1())
        jws = sign_jws({"alg": "ES256", "kid": key_id(mdm_key.public_key())}, body_of(claims),
                       attacker)
        blob = seal(jws, cg_key.public_key())
        assert reason_of(open_blob, blob, cg_key, [mdm_key.public_key()], now) is (
            ChallengeReason.BAD_SIGNATURE
        )

    def test_claims_modified_after_signing(self, claims, mdm_key, cg_key, now):
        kid = key_id(mdm_key.public_key())
        h64, _, s64 = sign_jws({"alg": "ES256", "kid": kid}, body_of(claims), mdm_key).split(b".")
        evil = body_of(replace(claims, group="admins"))
        jws = h64 + b"." + b64url(json.dumps(evil).encode()).encode() + b"." + s64
        assert reason_of(open_blob, seal(jws, cg_key.public_key()), cg_key,
                         [mdm_key.public_key()], now) is ChallengeReason.BAD_SIGNATURE

    @pytest.mark.parametrize(
        "header", [{"alg": "none"}, {"alg": "HS256", "kid": "x"}, {"alg": "ES256", "jku": "x"}]
    )
    def test_bad_header(self, header, claims, mdm_key, cg_key, now):
        blob = seal(sign_jws(header, body_of(claims), mdm_key), cg_key.public_key())
        assert reason_of(open_blob, blob, cg_key, [mdm_key.public_key()], now) is (
            ChallengeReason.BAD_FORMAT
        )

    @pytest.mark.parametrize(
        "mutate",
        [
            lambda b: b.update(v=2),
            lambda b: b.pop("jti"),
            lambda b: b.update(admin=True),
            lambda b: b.update(exp="tomorrow"),
            lambda b: b.update(sans="dns:x"),
            lambda b: b.update(sans=[1]),
            lambda b: b.update(key=["dsa-1024"]),
            lambda b: b.update(validity_days=0),
            lambda b: b.update(exp=b["nbf"] + 8 * 86400),
            lambda b: b.update(exp=b["nbf"]),
            lambda b: b.update(sub=""),
        ],
    )
    def test_bad_claims(self, mutate, claims, mdm_key, cg_key, now):
        body = body_of(claims)
        mutate(body)
        jws = sign_jws({"alg": "ES256", "kid": key_id(mdm_key.public_key())}, body, mdm_key)
        blob = seal(jws, cg_key.public_key())
        assert reason_of(open_blob, blob, cg_key, [mdm_key.public_key()], now) is (
            ChallengeReason.BAD_FORMAT
        )

    def test_mint_refuses_bad_input(self, claims, mdm_key, cg_key, now):
        pub = cg_key.public_key()
        with pytest.raises(ValueError):
            mint_blob(replace(claims, exp=now), mdm_key, pub, now)
        with pytest.raises(ValueError):
            mint_blob(replace(claims, exp=claims.nbf + timedelta(days=8)), mdm_key, pub, now)
        with pytest.raises(ValueError):
            mint_blob(claims, ec.generate_private_key(ec.SECP384R1()), pub, now)
        with pytest.raises(ValueError):
            mint_blob(replace(claims, key=("rsa",)), mdm_key, pub, now)
        with pytest.raises(ValueError):
            mint_blob(replace(claims, sans=("d" * 2000,)), mdm_key, pub, now)


class TestCheckClaims:
    def csr(self, h, **kw):
        kw.setdefault("sans", [
            x509.DNSName("dev-01.example.com"),
            x509.UniformResourceIdentifier("tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3"),
        ])
        return h.make_csr(**kw)

    def test_full_match(self, claims, now, h, pki):
        check_blob_claims(claims, self.csr(h), "staff", now, max_validity_days=365)
        check_blob_claims(claims, self.csr(h, key=h.rsa_key(2048)), pki.staff, now)

    def test_wrong_group(self, claims, now, h):
        assert reason_of(check_blob_claims, claims, self.csr(h), "guest", now) is (
            ChallengeReason.WRONG_GROUP
        )

    def test_subject(self, claims, now, h):
        assert reason_of(check_blob_claims, claims, self.csr(h, cn="x"), "staff", now) is (
            ChallengeReason.SUBJECT_MISMATCH
        )

    @pytest.mark.parametrize("sans", [[], [x509.DNSName("dev-01.example.com")],
                                      [x509.DNSName("dev-01.example.com"),
                                       x509.UniformResourceIdentifier("tag:x"),
                                       x509.DNSName("extra.example")]])
    def test_sans_must_match_exactly(self, claims, now, h, sans):
        assert reason_of(check_blob_claims, claims, self.csr(h, sans=sans), "staff", now) is (
            ChallengeReason.SAN_MISMATCH
        )

    @pytest.mark.parametrize("ekus", [[], [ExtendedKeyUsageOID.CLIENT_AUTH,
                                           ExtendedKeyUsageOID.SERVER_AUTH]])
    def test_eku_must_match_exactly(self, claims, now, h, ekus):
        assert reason_of(check_blob_claims, claims, self.csr(h, ekus=ekus), "staff", now) is (
            ChallengeReason.EKU_MISMATCH
        )

    def test_key(self, claims, now, h):
        for key in (h.ec_key("p384"), h.rsa_key(1024)):
            assert reason_of(check_blob_claims, claims, self.csr(h, key=key), "staff", now) is (
                ChallengeReason.KEY_POLICY
            )
        assert reason_of(check_blob_claims, replace(claims, key=()), self.csr(h), "staff",
                         now) is ChallengeReason.KEY_POLICY

    def test_validity(self, claims, now, h):
        assert reason_of(check_blob_claims, claims, self.csr(h), "staff", now,
                         max_validity_days=90) is ChallengeReason.VALIDITY_EXCEEDS_POLICY

    def test_expired(self, claims, now, h):
        assert reason_of(check_blob_claims, claims, self.csr(h), "staff", claims.exp) is (
            ChallengeReason.EXPIRED
        )
