"""Signed + encrypted SCEP challenge blobs (Intune's model; scep.md §4.3.2).

An MDM signs the expected CSR parameters with its P-256 key (a JWS, ES256) and
encrypts the JWS to certgate's P-256 blob key (ECDH-ES + HKDF-SHA256 +
AES-256-GCM). The device sends the result as its challengePassword. certgate
opens it without a lookup and compares the claims with the CSR; replay is stopped
by a ledger of `BlobClaims.jti` kept by the store until `exp`.

Wire format (docs/challenge-blob.md is the normative text)::

    blob   = base64( 0x01 ‖ rkid[8] ‖ epk[33] ‖ AES-256-GCM(key, iv, jws, aad=header) ‖ tag[16] )
    header = 0x01 ‖ rkid ‖ epk                  (the first 42 bytes)
    rkid   = SHA-256(SubjectPublicKeyInfo DER of certgate's blob key)[:8]
    epk    = ephemeral P-256 public key, SEC1 compressed point
    okm    = HKDF-SHA256(ikm=ECDH(e, certgate), salt=b"", info=INFO ‖ header, L=44)
    key, iv = okm[:32], okm[32:44]
    jws    = JWS compact serialization, {"alg":"ES256","kid":<signer kid>} over the claims

Standard base64 with '=' padding (not base64url): PrintableString allows
``+ / =`` but not ``_``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from enrollment.challenges import ChallengeReason, ChallengeRejected, check_key_specs
from enrollment.policy import CsrFacts, extract_csr_facts, normalize_san, validate_key_spec
from pki.groups import Group

VERSION = 1
INFO = b"certgate/scep-challenge-blob/v1\x00"
KID_BYTES = 8
EPK_BYTES = 33
HEADER_BYTES = 1 + KID_BYTES + EPK_BYTES
TAG_BYTES = 16
MAX_BLOB_CHARS = 2048
MAX_LIFETIME = timedelta(days=7)
_CLAIM_KEYS = {
    "v", "group", "sub", "sans", "eku", "key", "validity_days", "exp", "nbf", "jti",
    "iat", "device_id",
}
_REQUIRED = {"v", "group", "sub", "sans", "eku", "key", "validity_days", "exp", "nbf", "jti"}


@dataclass(frozen=True)
class BlobClaims:
    """What a blob authorises. `kid` is the signer's key id (set by `open_blob`)."""

    group: str
    sub: str
    exp: datetime
    nbf: datetime
    sans: tuple[str, ...] = ()
    eku: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    validity_days: int = 365
    jti: str = ""
    device_id: str | None = None
    kid: str = field(default="", compare=False)

    def to_json_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "v": VERSION,
            "group": self.group,
            "sub": self.sub,
            "sans": list(self.sans),
            "eku": list(self.eku),
            "key": list(self.key),
            "validity_days": self.validity_days,
            "exp": int(self.exp.timestamp()),
            "nbf": int(self.nbf.timestamp()),
            "jti": self.jti,
        }
        if self.device_id is not None:
            out["device_id"] = self.device_id
        return out


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """16 hex chars: SHA-256 of the SubjectPublicKeyInfo DER, first 8 bytes."""
    return _kid_bytes(public_key).hex()


def _kid_bytes(public_key: ec.EllipticCurvePublicKey) -> bytes:
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()[:KID_BYTES]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _require_p256(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey, what: str) -> None:
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{what} must be a P-256 key")


def _derive(shared: bytes, header: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(hashes.SHA256(), 44, salt=None, info=INFO + header).derive(shared)
    return okm[:32], okm[32:]


def mint_blob(
    claims: BlobClaims,
    mdm_signing_key: ec.EllipticCurvePrivateKey,
    certgate_public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    *,
    ephemeral_key: ec.EllipticCurvePrivateKey | None = None,
) -> str:
    """Reference implementation of the MDM side. Empty `jti` gets 16 random bytes (hex).

    Raises ValueError for claims that `open_blob` would refuse (our caller's bug).
    """
    _require_p256(mdm_signing_key, "MDM signing key")
    _require_p256(certgate_public_key, "certgate blob key")
    if claims.exp <= now or claims.exp <= claims.nbf:
        raise ValueError("exp must be after now and after nbf")
    if claims.exp - claims.nbf > MAX_LIFETIME:
        raise ValueError(f"lifetime longer than {MAX_LIFETIME}")
    for spec in claims.key:
        validate_key_spec(spec)
    body = claims.to_json_dict()
    if not claims.jti:
        body["jti"] = os.urandom(16).hex()
    body["sans"] = [normalize_san(s) for s in claims.sans]
    header = {"alg": "ES256", "kid": key_id(mdm_signing_key.public_key())}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(body, separators=(",", ":")).encode())
    )
    r, s = decode_dss_signature(
        mdm_signing_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    )
    jws = signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    eph = ephemeral_key or ec.generate_private_key(ec.SECP256R1())
    epk = eph.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    hdr = bytes([VERSION]) + _kid_bytes(certgate_public_key) + epk
    key, iv = _derive(eph.exchange(ec.ECDH(), certgate_public_key), hdr)
    sealed = AESGCM(key).encrypt(iv, jws.encode("ascii"), hdr)
    blob = base64.b64encode(hdr + sealed).decode("ascii")
    if len(blob) > MAX_BLOB_CHARS:
        raise ValueError(f"blob is {len(blob)} chars, limit {MAX_BLOB_CHARS}")
    return blob


def looks_like_blob(challenge: str) -> bool:
    """Cheap mode detection: long, standard base64, version byte 1."""
    if not 100 <= len(challenge) <= MAX_BLOB_CHARS:
        return False
    try:
        return base64.b64decode(challenge[:4], validate=True)[:1] == bytes([VERSION])
    except (binascii.Error, ValueError):
        return False


def _reject(reason: ChallengeReason, detail: str) -> ChallengeRejected:
    return ChallengeRejected(reason, detail)


def open_blob(
    blob: str,
    certgate_private_key: ec.EllipticCurvePrivateKey | Sequence[ec.EllipticCurvePrivateKey],
    mdm_public_keys: Iterable[ec.EllipticCurvePublicKey],
    now: datetime,
    *,
    leeway: timedelta = timedelta(0),
) -> BlobClaims:
    """Decrypt, verify and time-check a blob; raises ChallengeRejected.

    Reasons: bad_format, decrypt_failed (not for our key, or tampered), bad_signature
    (unknown signer or bad ES256 signature), expired, not_yet_valid. Does *not*
    compare with the CSR (`check_blob_claims`) nor check the jti ledger.
    Several certgate keys may be given during rotation; the blob names one by rkid.
    """
    if len(blob) > MAX_BLOB_CHARS:
        raise _reject(ChallengeReason.BAD_FORMAT, "blob too long")
    try:
        raw = base64.b64decode("".join(blob.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _reject(ChallengeReason.BAD_FORMAT, "not standard base64") from exc
    if len(raw) < HEADER_BYTES + TAG_BYTES or raw[0] != VERSION:
        raise _reject(ChallengeReason.BAD_FORMAT, "short blob or unknown version")
    hdr, sealed = raw[:HEADER_BYTES], raw[HEADER_BYTES:]
    keys = [certgate_private_key] if isinstance(certgate_private_key, ec.EllipticCurvePrivateKey) \
        else list(certgate_private_key)
    ours = [k for k in keys if _kid_bytes(k.public_key()) == hdr[1 : 1 + KID_BYTES]]
    if not ours:
        raise _reject(ChallengeReason.DECRYPT_FAILED, "blob is for another certgate key")
    try:
        epk = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), hdr[1 + KID_BYTES :])
        key, iv = _derive(ours[0].exchange(ec.ECDH(), epk), hdr)
        jws = AESGCM(key).decrypt(iv, sealed, hdr)
    except (ValueError, InvalidTag) as exc:
        raise _reject(ChallengeReason.DECRYPT_FAILED, "decryption failed") from exc

    header, body, signing_input, sig = _split_jws(jws)
    if header.get("alg") != "ES256" or set(header) - {"alg", "kid", "typ"}:
        raise _reject(ChallengeReason.BAD_FORMAT, "JWS header must be alg ES256 with a kid")
    kid = header.get("kid")
    signer = next((k for k in mdm_public_keys if key_id(k) == kid), None)
    if signer is None:
        raise _reject(ChallengeReason.BAD_SIGNATURE, f"unknown signer kid {kid!r}")
    if len(sig) != 64:
        raise _reject(ChallengeReason.BAD_SIGNATURE, "ES256 signature must be 64 bytes")
    der_sig = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        signer.verify(der_sig, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise _reject(ChallengeReason.BAD_SIGNATURE, f"signature by {kid}") from exc

    claims = _claims_from_json(body, str(kid))
    _check_time(claims, now, leeway)
    return claims


def _split_jws(jws: bytes) -> tuple[dict[str, object], dict[str, object], bytes, bytes]:
    try:
        text = jws.decode("ascii")
        h64, b64, s64 = text.split(".")
        header = json.loads(_b64url_decode(h64))
        body = json.loads(_b64url_decode(b64))
        sig = _b64url_decode(s64)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _reject(ChallengeReason.BAD_FORMAT, "not a JWS compact serialization") from exc
    if not isinstance(header, dict) or not isinstance(body, dict):
        raise _reject(ChallengeReason.BAD_FORMAT, "JWS parts must be JSON objects")
    return header, body, f"{h64}.{b64}".encode("ascii"), sig


def _str_list(body: dict[str, object], name: str) -> tuple[str, ...]:
    value = body[name]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings")
    return tuple(value)


def _claims_from_json(body: dict[str, object], kid: str) -> BlobClaims:
    missing = _REQUIRED - set(body)
    unknown = set(body) - _CLAIM_KEYS
    if missing or unknown:
        raise _reject(
            ChallengeReason.BAD_FORMAT, f"missing {sorted(missing)} unknown {sorted(unknown)}"
        )
    try:
        if body["v"] != VERSION:
            raise ValueError("v must be 1")
        for name in ("group", "sub", "jti"):
            if not isinstance(body[name], str) or not body[name]:
                raise ValueError(f"{name} must be a non-empty string")
        for name in ("exp", "nbf", "validity_days"):
            if not isinstance(body[name], int) or isinstance(body[name], bool):
                raise ValueError(f"{name} must be an integer")
        device_id = body.get("device_id")
        if device_id is not None and not isinstance(device_id, str):
            raise ValueError("device_id must be a string")
        keys = tuple(validate_key_spec(k) for k in _str_list(body, "key"))
        claims = BlobClaims(
            group=str(body["group"]),
            sub=str(body["sub"]),
            sans=tuple(normalize_san(s) for s in _str_list(body, "sans")),
            eku=_str_list(body, "eku"),
            key=keys,
            validity_days=int(body["validity_days"]),  # type: ignore[call-overload]
            exp=datetime.fromtimestamp(body["exp"], UTC),  # type: ignore[arg-type]
            nbf=datetime.fromtimestamp(body["nbf"], UTC),  # type: ignore[arg-type]
            jti=str(body["jti"]),
            device_id=device_id,
            kid=kid,
        )
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        raise _reject(ChallengeReason.BAD_FORMAT, f"claims: {exc}") from exc
    if len(claims.jti) > 128 or claims.validity_days < 1:
        raise _reject(ChallengeReason.BAD_FORMAT, "jti too long or validity_days < 1")
    if claims.exp <= claims.nbf or claims.exp - claims.nbf > MAX_LIFETIME:
        raise _reject(ChallengeReason.BAD_FORMAT, "exp must follow nbf within the max lifetime")
    return claims


def _check_time(claims: BlobClaims, now: datetime, leeway: timedelta) -> None:
    if now >= claims.exp + leeway:
        raise _reject(ChallengeReason.EXPIRED, f"exp {claims.exp.isoformat()}")
    if now < claims.nbf - leeway:
        raise _reject(ChallengeReason.NOT_YET_VALID, f"nbf {claims.nbf.isoformat()}")


def check_blob_claims(
    claims: BlobClaims,
    csr: CsrFacts | x509.CertificateSigningRequest | bytes,
    group: str | Group,
    now: datetime,
    *,
    max_validity_days: int | None = None,
    leeway: timedelta = timedelta(0),
) -> None:
    """Full match of the CSR against the claims; raises ChallengeRejected.

    CN equal to `sub`; SAN set equal to `sans`; requested EKU set equal to `eku`; key
    matching one of `key`; `validity_days` within the group maximum.
    """
    facts = csr if isinstance(csr, CsrFacts) else extract_csr_facts(csr)
    _check_time(claims, now, leeway)
    if claims.group != (group if isinstance(group, str) else group.name):
        raise _reject(ChallengeReason.WRONG_GROUP, claims.group)
    if facts.subject_cn != claims.sub:
        raise _reject(ChallengeReason.SUBJECT_MISMATCH, f"CN {facts.subject_cn!r}")
    if set(facts.sans) != set(claims.sans):
        raise _reject(ChallengeReason.SAN_MISMATCH, ",".join(facts.sans))
    if set(facts.ekus) != set(claims.eku):
        raise _reject(ChallengeReason.EKU_MISMATCH, ",".join(facts.ekus))
    if not claims.key:
        raise _reject(ChallengeReason.KEY_POLICY, "blob names no key spec")
    check_key_specs(facts, claims.key)
    if max_validity_days is not None and claims.validity_days > max_validity_days:
        raise _reject(
            ChallengeReason.VALIDITY_EXCEEDS_POLICY,
            f"{claims.validity_days} > {max_validity_days} days",
        )
