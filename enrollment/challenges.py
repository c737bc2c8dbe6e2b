"""SCEP challengePassword modes (pure: no I/O; time is always an argument).

Dynamic one-time challenges (scep.md §4.3.1)
    token = base32(jti ‖ HMAC-SHA256(server_secret, DOMAIN ‖ jti)[:10]), no padding,
    upper-case A-Z2-7: 42 characters, PrintableString-safe. jti is 16 random bytes.
    DOMAIN = b"certgate/scep-challenge/v1\\x00" separates these MACs from any other use
    of the secret. Only SHA-256(token) is stored; the token itself is shown once and
    never logged (log the jti). `parse_token` rejects malformed and forged tokens
    without a store lookup; `check_binding` compares a CSR with the binding;
    `reuse_decision` is the idempotent-retry rule; `verify_dynamic` ties them together
    for the shell, given the record it looked up by jti.

Static legacy secret (scep.md §4.3.3)
    `StaticSecret` keeps only a salted PBKDF2-SHA256 hash of the configured secret
    and verifies in constant time; `verify_static` accepts any of the (≤ 2 during
    rotation) configured secrets.

The signed + encrypted blob mode lives in `enrollment.blob`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography import x509

from enrollment.patterns import UnsafePattern, compile_pattern, fullmatch
from enrollment.policy import CsrFacts, EnrollmentRejected, extract_csr_facts, key_matches_spec
from enrollment.policy import normalize_san as _normalize_san
from enrollment.policy import validate_key_spec as _validate_key_spec
from pki.groups import Group

JTI_BYTES = 16
MAC_BYTES = 10
TOKEN_CHARS = 42  # ceil((16 + 10) * 8 / 5)
MIN_SECRET_BYTES = 32
MAX_TTL = timedelta(days=7)
_DOMAIN = b"certgate/scep-challenge/v1\x00"
_TOKEN_RE = re.compile(f"[A-Z2-7]{{{TOKEN_CHARS}}}")


class ChallengeReason(StrEnum):
    BAD_FORMAT = "bad_format"
    UNKNOWN_CHALLENGE = "unknown_challenge"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_GROUP = "wrong_group"
    SUBJECT_MISMATCH = "subject_mismatch"
    SAN_MISMATCH = "san_mismatch"
    EKU_MISMATCH = "eku_mismatch"
    KEY_POLICY = "key_policy"
    VALIDITY_EXCEEDS_POLICY = "validity_exceeds_policy"
    REPLAY = "replay"
    BAD_SIGNATURE = "bad_signature"
    DECRYPT_FAILED = "decrypt_failed"
    BAD_SECRET = "bad_secret"


class ChallengeRejected(EnrollmentRejected):
    """The challenge does not authorise this request (peer's fault → CertRep badRequest)."""

    reason: ChallengeReason


# ---------------------------------------------------------------------------
# Binding and record


@dataclass(frozen=True)
class ChallengeBinding:
    """What a dynamic challenge authorises.

    subject_cn: exact CN, or ``re:<regex>`` fullmatched in linear time (RE2 syntax,
    enrollment/patterns.py); None = any CN.
    sans: allowed SANs as ``type:value`` strings (normalized on construction); an entry
    ``re:<regex>`` fullmatches the normalized SAN string. The CSR's SANs must all be
    allowed; an empty tuple allows none.
    ekus: allowed requested EKUs (dotted OIDs); None = leave it to the group policy.
    key_types: allowed key specs (``ec-p256``, ``rsa-2048+``, …); empty = any the policy
    allows. min_rsa_bits: extra floor for RSA keys.
    device_id: carried to audit and inventory; not matched against the CSR.
    """

    group: str
    expires_at: datetime
    subject_cn: str | None = None
    sans: tuple[str, ...] = ()
    device_id: str | None = None
    key_types: tuple[str, ...] = ()
    min_rsa_bits: int | None = None
    ekus: tuple[str, ...] | None = None
    not_before: datetime | None = None

    def __post_init__(self) -> None:
        if self.expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        if self.subject_cn is not None and self.subject_cn.startswith("re:"):
            try:
                compile_pattern(self.subject_cn[3:])
            except UnsafePattern as exc:
                raise ValueError(f"subject: {exc}") from None
        sans = []
        for s in self.sans:
            if s.startswith("re:"):
                try:
                    compile_pattern(s[3:])
                except UnsafePattern as exc:
                    raise ValueError(f"sans: {exc}") from None
                sans.append(s)
            else:
                sans.append(_normalize_san(s))
        object.__setattr__(self, "sans", tuple(sans))
        object.__setattr__(
            self, "key_types", tuple(_validate_key_spec(k) for k in self.key_types)
        )
        if self.ekus is not None:
            object.__setattr__(self, "ekus", tuple(self.ekus))


@dataclass(frozen=True)
class ChallengeRecord:
    """The stored row: jti (hex), SHA-256 of the token (hex), binding, use state."""

    jti: str
    token_sha256: str
    binding: ChallengeBinding
    created_at: datetime
    used_at: datetime | None = None
    used_txid: str | None = None
    used_spki_sha256: bytes | None = None
    issued_serial: int | None = None


def _mac(server_secret: bytes, jti: bytes) -> bytes:
    return hmac.new(server_secret, _DOMAIN + jti, hashlib.sha256).digest()[:MAC_BYTES]


def _check_secret(server_secret: bytes) -> None:
    if len(server_secret) < MIN_SECRET_BYTES:
        raise ValueError(f"server secret must be at least {MIN_SECRET_BYTES} bytes")


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def new_challenge(
    server_secret: bytes, binding: ChallengeBinding, now: datetime, *, jti: bytes | None = None
) -> tuple[str, ChallengeRecord]:
    """Mint a token (return it once to the caller) and the record to store."""
    _check_secret(server_secret)
    if binding.expires_at <= now:
        raise ValueError("binding already expired")
    if binding.expires_at - now > MAX_TTL:
        raise ValueError(f"challenge lifetime above {MAX_TTL}")
    jti = os.urandom(JTI_BYTES) if jti is None else jti
    if len(jti) != JTI_BYTES:
        raise ValueError("jti must be 16 bytes")
    token = base64.b32encode(jti + _mac(server_secret, jti)).decode("ascii").rstrip("=")
    record = ChallengeRecord(
        jti=jti.hex(), token_sha256=token_sha256(token), binding=binding, created_at=now
    )
    return token, record


def canonical_token(token: str) -> str:
    """Strip surrounding whitespace and upper-case (devices may lower-case); no other change."""
    return token.strip().upper()


def parse_token(server_secret: bytes, token: str) -> str:
    """Return the jti (hex) of a well-formed token with a valid MAC, else ChallengeRejected.

    bad_format: wrong length or alphabet; unknown_challenge: MAC mismatch (forged or
    minted with another secret). No store lookup; the MAC compare is constant time.
    """
    _check_secret(server_secret)
    if len(token) > 2 * TOKEN_CHARS:
        raise ChallengeRejected(ChallengeReason.BAD_FORMAT, "token length")
    token = canonical_token(token)
    if not _TOKEN_RE.fullmatch(token):
        raise ChallengeRejected(ChallengeReason.BAD_FORMAT, "not a dynamic challenge token")
    try:
        raw = base64.b32decode(token + "======")
    except binascii.Error as exc:
        raise ChallengeRejected(ChallengeReason.BAD_FORMAT, "base32") from exc
    # Non-canonical trailing bits would give two spellings of one token.
    if base64.b32encode(raw).decode("ascii").rstrip("=") != token:
        raise ChallengeRejected(ChallengeReason.BAD_FORMAT, "non-canonical base32")
    jti, mac = raw[:JTI_BYTES], raw[JTI_BYTES:]
    if not hmac.compare_digest(mac, _mac(server_secret, jti)):
        raise ChallengeRejected(ChallengeReason.UNKNOWN_CHALLENGE, "MAC mismatch")
    return jti.hex()


# ---------------------------------------------------------------------------
# Binding check


def _group_name(group: str | Group) -> str:
    return group if isinstance(group, str) else group.name


def _as_facts(csr: CsrFacts | x509.CertificateSigningRequest | bytes) -> CsrFacts:
    return csr if isinstance(csr, CsrFacts) else extract_csr_facts(csr)


def _san_allowed(san: str, allowed: Sequence[str]) -> bool:
    for entry in allowed:
        if entry.startswith("re:"):
            if fullmatch(entry[3:], san):
                return True
        elif entry == san:
            return True
    return False


def check_binding(
    binding: ChallengeBinding,
    csr: CsrFacts | x509.CertificateSigningRequest | bytes,
    group: str | Group,
    now: datetime,
) -> None:
    """Raise ChallengeRejected unless the CSR lies inside the binding for this endpoint group."""
    facts = _as_facts(csr)
    if now >= binding.expires_at:
        raise ChallengeRejected(ChallengeReason.EXPIRED, f"expired at {binding.expires_at}")
    if binding.not_before is not None and now < binding.not_before:
        raise ChallengeRejected(ChallengeReason.NOT_YET_VALID, str(binding.not_before))
    if binding.group != _group_name(group):
        raise ChallengeRejected(ChallengeReason.WRONG_GROUP, binding.group)
    if binding.subject_cn is not None:
        cn = facts.subject_cn or ""
        if binding.subject_cn.startswith("re:"):
            ok = fullmatch(binding.subject_cn[3:], cn)
        else:
            ok = cn == binding.subject_cn
        if not ok:
            raise ChallengeRejected(ChallengeReason.SUBJECT_MISMATCH, f"CN {cn!r}")
    for san in facts.sans:
        if not _san_allowed(san, binding.sans):
            raise ChallengeRejected(ChallengeReason.SAN_MISMATCH, san)
    if binding.ekus is not None:
        extra = [e for e in facts.ekus if e not in binding.ekus]
        if extra:
            raise ChallengeRejected(ChallengeReason.EKU_MISMATCH, ",".join(extra))
    check_key_specs(facts, binding.key_types, binding.min_rsa_bits)


def check_key_specs(
    facts: CsrFacts, specs: Sequence[str], min_rsa_bits: int | None = None
) -> None:
    """key_policy unless the key matches one of `specs` (empty = any) and the RSA floor."""
    if specs and not any(key_matches_spec(facts, s) for s in specs):
        raise ChallengeRejected(ChallengeReason.KEY_POLICY, facts.key_spec)
    if min_rsa_bits is not None and facts.key_type == "rsa" and facts.key_bits < min_rsa_bits:
        raise ChallengeRejected(ChallengeReason.KEY_POLICY, facts.key_spec)


# ---------------------------------------------------------------------------
# Single use and idempotent retry


@dataclass(frozen=True)
class FirstUse:
    """Unused: the shell atomically marks it used with (txid, spki) and the reserved serial."""


@dataclass(frozen=True)
class RetryReturnsIssued:
    """Same jti, transactionID and key within the TTL: answer with the already-issued cert."""

    serial: int


@dataclass(frozen=True)
class RetryPending:
    """Same jti, transactionID and key, but no serial recorded yet (first attempt in flight)."""


@dataclass(frozen=True)
class Replay:
    """A used challenge presented again. `theft_suspected`: another transactionID or key."""

    theft_suspected: bool
    detail: str


def reuse_decision(
    record: ChallengeRecord, txid: str, spki_sha256: bytes, now: datetime
) -> FirstUse | RetryReturnsIssued | RetryPending | Replay:
    """The idempotent-retry rule (scep.md §4.3.1). Pure; the shell acts on the answer."""
    if record.used_at is None:
        return FirstUse()
    same_txid = record.used_txid is not None and hmac.compare_digest(
        record.used_txid.encode(), txid.encode()
    )
    same_key = record.used_spki_sha256 is not None and hmac.compare_digest(
        record.used_spki_sha256, spki_sha256
    )
    if not (same_txid and same_key):
        what = "transactionID" if not same_txid else "key"
        return Replay(theft_suspected=True, detail=f"used with another {what}")
    if now >= record.binding.expires_at:
        return Replay(theft_suspected=False, detail="retry after the challenge expired")
    if record.issued_serial is None:
        return RetryPending()
    return RetryReturnsIssued(record.issued_serial)


def verify_dynamic(
    server_secret: bytes,
    token: str,
    record: ChallengeRecord | None,
    csr: CsrFacts | x509.CertificateSigningRequest | bytes,
    group: str | Group,
    txid: str,
    now: datetime,
) -> FirstUse | RetryReturnsIssued | RetryPending:
    """Whole dynamic-challenge decision once the shell has looked up `record` by jti.

    Call `parse_token` first to get the jti (cheap reject), look the row up, then call
    this. Raises ChallengeRejected (unknown_challenge, replay, or a binding reason).
    """
    jti = parse_token(server_secret, token)
    if record is None or record.jti != jti:
        raise ChallengeRejected(ChallengeReason.UNKNOWN_CHALLENGE, f"jti {jti}")
    if not hmac.compare_digest(record.token_sha256, token_sha256(canonical_token(token))):
        raise ChallengeRejected(ChallengeReason.UNKNOWN_CHALLENGE, f"jti {jti} hash")
    facts = _as_facts(csr)
    decision = reuse_decision(record, txid, facts.spki_sha256, now)
    if isinstance(decision, Replay):
        raise ChallengeRejected(ChallengeReason.REPLAY, f"jti {jti}: {decision.detail}")
    if isinstance(decision, FirstUse):
        check_binding(record.binding, facts, group, now)
    return decision


# ---------------------------------------------------------------------------
# Static legacy secret

# ~75 ms per verify on one core (measured, 2 cores, Python 3.11): run it off the event
# loop, rate-limit per endpoint, and configure a high-entropy secret (a machine secret,
# not a human password) so the iteration count is not what protects it.
_PBKDF2_ITERATIONS = 100_000
_SALT_BYTES = 16


@dataclass(frozen=True)
class StaticSecret:
    """A salted PBKDF2-SHA256 hash of a configured static challenge; never the secret.

    Encoded form (config/store): ``pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>``.
    """

    salt: bytes
    iterations: int
    digest: bytes

    @classmethod
    def from_secret(
        cls, secret: str, *, salt: bytes | None = None, iterations: int = _PBKDF2_ITERATIONS
    ) -> StaticSecret:
        if not secret:
            raise ValueError("empty static secret")
        salt = os.urandom(_SALT_BYTES) if salt is None else salt
        return cls(salt, iterations, _pbkdf2(secret, salt, iterations))

    @classmethod
    def from_encoded(cls, encoded: str) -> StaticSecret:
        try:
            scheme, iterations, salt, digest = encoded.split("$")
            if scheme != "pbkdf2-sha256":
                raise ValueError(scheme)
            return cls(base64.b64decode(salt), int(iterations), base64.b64decode(digest))
        except (ValueError, binascii.Error) as exc:
            raise ValueError("not a pbkdf2-sha256$iterations$salt$hash string") from exc

    def encoded(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"pbkdf2-sha256${self.iterations}${salt}${digest}"

    def verify(self, candidate: str) -> bool:
        if len(candidate) > 1024:
            return False
        return hmac.compare_digest(_pbkdf2(candidate, self.salt, self.iterations), self.digest)


def _pbkdf2(secret: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, iterations)


def verify_static(secrets: Sequence[StaticSecret], candidate: str) -> None:
    """Accept if any configured secret matches (all are checked: no early exit)."""
    results = [s.verify(candidate) for s in secrets]
    if not any(results):
        raise ChallengeRejected(ChallengeReason.BAD_SECRET, "static secret mismatch")
