"""PKCSReq / RenewalReq decisions for one group: challenge modes, renewal, manual approval.

The crypto-heavy work (parse, verify, decrypt, CSR facts, renewal signer check) was
done off the event loop by `ScepService` (`enrollment.scep_crypto`, maybe in another
process); this module runs on the loop between that and the reply: store reads/writes
plus the pure checks of `enrollment.challenges`, `enrollment.blob`, `enrollment.policy`
and `enrollment.renewal`. Certificates are signed off the loop by the `sign` callable.
Every refusal is an `EnrollmentRejected` (reason = metric label) that the service turns
into a FAILURE. Requests and outcomes are plain data (DER bytes, no cryptography objects).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hmac
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from enrollment import blob as blob_mod
from enrollment.algorithms import DEFAULT_CIPHERS, DEFAULT_DIGESTS, AlgorithmPolicy
from enrollment.challenge_store import BLOB, DYNAMIC, record_from_row
from enrollment.challenges import (
    ChallengeReason,
    ChallengeRejected,
    FirstUse,
    RetryPending,
    RetryReturnsIssued,
    StaticSecret,
    parse_token,
    verify_dynamic,
    verify_static,
)
from enrollment.issuance_check import (
    CHALLENGE,
    DeviceIdSource,
    IssuanceDecision,
    IssuanceQuery,
    device_id_for,
)
from enrollment.metrics import CERTIFICATES_ISSUED
from enrollment.policy import CsrFacts, EnrollmentRejected, GroupCsrPolicy, apply_policy
from enrollment.renewal import check_renewal
from enrollment.scep_types import MessageType
from pki.profiles import new_serial
from store import ChallengeUnavailable, RequestConflict, ScepStore, Store
from store.records import (
    APPROVED,
    ISSUED,
    PENDING,
    REJECTED,
    CertRecord,
    ChallengeUse,
    Issued,
    ScepRequest,
)

log = logging.getLogger("certgate.scep")


class EnrollReason(StrEnum):
    MISSING_CHALLENGE = "missing_challenge"
    REQUEST_REJECTED = "request_rejected"
    TXID_KEY_MISMATCH = "transaction_key_mismatch"


class EnrollRejected(EnrollmentRejected):
    reason: EnrollReason


@dataclass(frozen=True)
class ServiceConfig:
    """One group's SCEP endpoint, from [groups.<name>] and [scep]."""

    group: str
    public_url: str
    validity_days: int = 365
    key_types: tuple[str, ...] = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")
    challenge_modes: tuple[str, ...] = ("dynamic", "blob")
    static_secrets: tuple[StaticSecret, ...] = ()
    ciphers: tuple[str, ...] = DEFAULT_CIPHERS  # enrollment.algorithms names
    digests: tuple[str, ...] = DEFAULT_DIGESTS
    ca_is_ra: bool = False
    include_root: bool | None = None  # None: the root is in GetCACert unless ca_is_ra
    manual_approval: bool = False
    renewal_window: dt.timedelta = dt.timedelta(days=30)
    superseded_grace: dt.timedelta = dt.timedelta(hours=24)
    signing_time_skew: dt.timedelta = dt.timedelta(hours=1)
    challenge_secret: bytes | None = None
    blob_keys: tuple[ec.EllipticCurvePrivateKey, ...] = ()
    mdm_keys: tuple[ec.EllipticCurvePublicKey, ...] = ()
    device_id_from: DeviceIdSource = DeviceIdSource(CHALLENGE)

    @functools.cached_property
    def algorithms(self) -> AlgorithmPolicy:
        """What requests may use and GetCACaps advertises."""
        return AlgorithmPolicy.of(self.ciphers, self.digests, f"groups.{self.group}.scep")

    @property
    def root_in_ca_certs(self) -> bool:
        """GetCACert carries the root: by default yes with an RA (strongSwan `pki --scepca`
        needs it; NDES and OpenXPKI send it), no when the CA is the RA (a chain there is an
        `x509-ca-ra-cert` without an RA, which iOS/macOS refuse)."""
        return (not self.ca_is_ra) if self.include_root is None else self.include_root


def csr_policy(key_types: Sequence[str], validity_days: int) -> GroupCsrPolicy:
    """Map config key types ("ec-p256", "rsa-2048", ...) to the CSR policy."""
    ec_bits = frozenset(int(k[4:]) for k in key_types if k.startswith("ec-p"))
    rsa_sizes = [int(k[4:]) for k in key_types if k.startswith("rsa-")]
    return GroupCsrPolicy(
        ec_curve_bits=ec_bits,
        rsa_min_bits=min(rsa_sizes) if rsa_sizes else None,
        rsa_max_bits=max(rsa_sizes) if rsa_sizes else 8192,
        max_validity_days=validity_days,
    )


@dataclass(frozen=True)
class Outcome:
    """What to answer: SUCCESS with certificates, PENDING, or FAILURE (fail_info name)."""

    status: str  # "success" | "pending" | "failure"
    certificates: tuple[bytes, ...] = ()  # DER, issued certificate first
    crl: bytes | None = None
    fail_info: str | None = None
    reason: str | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def success(*certs: bytes) -> Outcome:
    """SUCCESS with these DER certificates."""
    return Outcome("success", certificates=tuple(certs))


def record_der(record: CertRecord) -> bytes:
    return ssl.PEM_cert_to_DER_cert(record.pem)


PENDING_OUTCOME = Outcome("pending")


@dataclass(frozen=True)
class RenewalSigner:
    """The request is signed by a certificate of one of our groups (a renewal)."""

    old_cert_der: bytes
    group: str


@dataclass(frozen=True)
class EnrollRequest:
    """A verified, decrypted PKCSReq / RenewalReq."""

    message_type: MessageType
    txid: str
    csr_der: bytes
    facts: CsrFacts
    renewal: RenewalSigner | None = None  # None: initial enrollment (a challenge applies)

    @property
    def spki_hex(self) -> str:
        return self.facts.spki_sha256.hex()


RevokeFn = Callable[[int, str, str], Awaitable[Any]]
# sign(csr_der, serial, now, days, *, device_id, source, transaction_id) -> Issued, off the loop
SignFn = Callable[..., Awaitable[Issued]]
# the group's MDM issuance check (certgate/issuance_check.py): query (device_id None when the
# group's device_id_from found none) -> decision; counted and audited by the callee
IssuanceCheckFn = Callable[[IssuanceQuery], Awaitable[IssuanceDecision]]


class Enroller:
    def __init__(self, cfg: ServiceConfig, store: Store, executor: Executor,
                 revoke: RevokeFn | None = None, *, sign: SignFn,
                 issuance_check: IssuanceCheckFn | None = None) -> None:
        self.cfg = cfg
        self.issuance_check = issuance_check
        self.store = store
        self.requests = ScepStore(store)
        self.executor = executor
        self.revoke = revoke
        self.sign = sign
        self.policy = csr_policy(cfg.key_types, cfg.validity_days)
        self._approval_lock = asyncio.Lock()

    async def _off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # -- entry point ----------------------------------------------------------------------

    async def enroll(self, req: EnrollRequest, now: dt.datetime) -> Outcome:
        apply_policy(req.facts, self.policy)
        if req.renewal is not None:
            return await self._renew(req, req.renewal, now)
        if self.cfg.manual_approval:
            existing = await self.requests.find_request(self.cfg.group, req.txid)
            if existing is not None:
                if existing.spki_sha256 != req.spki_hex:
                    raise EnrollRejected(EnrollReason.TXID_KEY_MISMATCH, f"request {existing.id}")
                return await self.request_state(existing, now)
        return await self._initial(req, now)

    # -- initial enrollment: challenge modes ------------------------------------------------

    def _mode(self, challenge: str) -> str:
        modes = self.cfg.challenge_modes
        if "dynamic" in modes and self.cfg.challenge_secret is not None:
            try:
                parse_token(self.cfg.challenge_secret, challenge)
                return DYNAMIC
            except ChallengeRejected as exc:
                if exc.reason is not ChallengeReason.BAD_FORMAT:
                    return DYNAMIC  # well-formed token with a bad MAC: report it as such
        if "blob" in modes and self.cfg.blob_keys and blob_mod.looks_like_blob(challenge):
            return BLOB
        if "static" in modes and self.cfg.static_secrets:
            return "static"
        raise ChallengeRejected(ChallengeReason.BAD_FORMAT, "no enabled challenge mode matches")

    async def _initial(self, req: EnrollRequest, now: dt.datetime) -> Outcome:
        challenge = req.facts.challenge_password
        if not challenge:
            raise EnrollRejected(EnrollReason.MISSING_CHALLENGE, "no challengePassword in the CSR")
        mode = self._mode(challenge)
        if mode == DYNAMIC:
            return await self._dynamic(req, challenge, now)
        if mode == BLOB:
            return await self._blob(req, challenge, now)
        await self._off_loop(verify_static, self.cfg.static_secrets, challenge)
        log.warning("scep static secret used group=%s transaction=%s", self.cfg.group, req.txid)
        return await self._issue_or_hold(req, now, challenge=None, device_id=None)

    async def _dynamic(self, req: EnrollRequest, token: str, now: dt.datetime) -> Outcome:
        secret = self.cfg.challenge_secret
        assert secret is not None
        jti = parse_token(secret, token)
        row = await self.store.get_challenge(jti)
        record = record_from_row(row) if row is not None and row.kind == DYNAMIC else None
        decision = verify_dynamic(secret, token, record, req.facts, self.cfg.group, req.txid, now)
        if isinstance(decision, RetryReturnsIssued):
            return await self._already_issued(decision.serial, jti)
        if isinstance(decision, RetryPending):
            return await self._retry_pending(req, now)
        assert isinstance(decision, FirstUse) and record is not None
        use = ChallengeUse(jti, req.txid, req.spki_hex)
        return await self._issue_or_hold(req, now, challenge=use,
                                         device_id=record.binding.device_id)

    async def _blob(self, req: EnrollRequest, blob: str, now: dt.datetime) -> Outcome:
        claims = await self._off_loop(blob_mod.open_blob, blob, list(self.cfg.blob_keys),
                                      list(self.cfg.mdm_keys), now)
        blob_mod.check_blob_claims(claims, req.facts, self.cfg.group, now,
                                   max_validity_days=self.cfg.validity_days)
        ledger = f"blob:{claims.kid}:{claims.jti}"
        row = await self.store.get_challenge(ledger)
        if row is None:
            try:
                await self.store.add_challenge(
                    ledger, BLOB, self.cfg.group, None,
                    {"kid": claims.kid, "sub": claims.sub, "device_id": claims.device_id},
                    now, claims.exp, f"mdm:{claims.kid}")
            except ChallengeUnavailable:
                row = await self.store.get_challenge(ledger)
        if row is not None and row.used_at is not None:
            same = (row.used_txid is not None and hmac.compare_digest(row.used_txid, req.txid)
                    and row.used_spki == req.spki_hex)
            if not same:
                raise ChallengeRejected(ChallengeReason.REPLAY, f"blob {ledger} already used")
            if row.issued_serial is not None:
                return await self._already_issued(row.issued_serial, ledger)
            return await self._retry_pending(req, now)
        use = ChallengeUse(ledger, req.txid, req.spki_hex)
        return await self._issue_or_hold(req, now, challenge=use, device_id=claims.device_id,
                                         days=min(claims.validity_days, self.cfg.validity_days))

    async def _already_issued(self, serial: int, jti: str) -> Outcome:
        record = await self.store.get(serial)
        if record is None:  # the inventory lost it: never SUCCESS without a certificate
            raise ChallengeRejected(ChallengeReason.REPLAY, f"{jti}: issued {serial:x} not found")
        log.info("scep result=%s group=%s challenge=%s serial=%s: idempotent retry, same "
                 "certificate", "retry", self.cfg.group, jti, record.serial_hex)
        return success(record_der(record))

    async def _retry_pending(self, req: EnrollRequest, now: dt.datetime) -> Outcome:
        """The challenge is reserved for this transaction but no certificate yet."""
        existing = await self.requests.find_request(self.cfg.group, req.txid)
        if existing is not None:
            return await self.request_state(existing, now)
        return PENDING_OUTCOME  # a first attempt is still in flight

    async def _issue_or_hold(self, req: EnrollRequest, now: dt.datetime, *,
                             challenge: ChallengeUse | None, device_id: str | None,
                             days: int | None = None) -> Outcome:
        device_id = await self._check_issuance(req, device_id, "enrollment")
        if self.cfg.manual_approval:
            try:
                pending = await self.requests.add_request(
                    self.cfg.group, req.txid, req.facts.subject, req.spki_hex,
                    req.csr_der, now, challenge=challenge, device_id=device_id,
                    details={"days": days} if days else None)
            except RequestConflict:
                existing = await self.requests.find_request(self.cfg.group, req.txid)
                assert existing is not None
                return await self.request_state(existing, now)
            except ChallengeUnavailable as exc:
                raise ChallengeRejected(ChallengeReason.REPLAY, f"{exc} consumed meanwhile") from None
            log.info("scep result=%s group=%s request=%d subject=%s transaction=%s: pending "
                     "approval", "pending", self.cfg.group, pending.id, pending.subject, req.txid)
            return PENDING_OUTCOME
        try:
            issued = await self.issue(req.csr_der, req.txid, now, challenge=challenge,
                                      device_id=device_id, days=days)
        except ChallengeUnavailable as exc:
            raise ChallengeRejected(ChallengeReason.REPLAY, f"{exc} consumed meanwhile") from None
        return success(issued.der)

    async def _check_issuance(self, req: EnrollRequest, from_challenge: str | None,
                              kind: str) -> str | None:
        """The device id to record, once the MDM allowed the issuance (when the group asks
        it). Runs before anything is written: a refusal consumes no challenge, so the same
        challenge enrolls once the MDM allows it."""
        device_id = device_id_for(self.cfg.device_id_from, from_challenge, req.facts)
        if self.issuance_check is None:
            return device_id
        query = IssuanceQuery.of(self.cfg.group, kind, device_id, req.facts, req.txid)
        decision = await self.issuance_check(query)
        if not decision.allowed:
            raise decision.rejection()
        return device_id

    async def issue(self, csr_der: bytes, txid: str, now: dt.datetime, *,
                    challenge: ChallengeUse | None = None, device_id: str | None = None,
                    supersedes: int | None = None, days: int | None = None) -> Issued:
        """Sign off the loop, then record (with the challenge consumed) before returning."""
        days = days or self.cfg.validity_days

        async def sign(serial: int) -> Issued:
            return await self.sign(csr_der, serial, now, days, device_id=device_id,
                                   source="scep", transaction_id=txid)

        issued = await self.store.record_signed(sign, new_serial, actor=f"scep:{self.cfg.group}",
                                     challenge=challenge, supersedes=supersedes, now=now)
        CERTIFICATES_ISSUED.labels(group=self.cfg.group).inc()
        log.info("scep result=%s group=%s serial=%s subject=%s transaction=%s supersedes=%s",
                 "issued", self.cfg.group, issued.record.serial_hex, issued.record.subject, txid,
                 f"{supersedes:x}" if supersedes is not None else None)
        return issued

    # -- manual approval ------------------------------------------------------------------

    async def request_state(self, req: ScepRequest, now: dt.datetime) -> Outcome:
        if req.status == PENDING:
            return PENDING_OUTCOME
        if req.status == REJECTED:
            raise EnrollRejected(EnrollReason.REQUEST_REJECTED, f"request {req.id} rejected")
        if req.status == ISSUED and req.issued_serial is not None:
            return await self._already_issued(req.issued_serial, f"request {req.id}")
        assert req.status == APPROVED
        async with self._approval_lock:
            fresh = await self.requests.get_request(req.id)
            assert fresh is not None
            if fresh.status != APPROVED:
                return await self.request_state(fresh, now)
            issued = await self.issue(fresh.csr_der, fresh.transaction_id, now,
                                      device_id=fresh.device_id, days=fresh.details.get("days"))
            await self.requests.mark_issued(fresh.id, issued.record.serial)
        return success(issued.der)

    # -- renewal --------------------------------------------------------------------------

    async def _renew(self, req: EnrollRequest, renewal: RenewalSigner, now: dt.datetime) -> Outcome:
        old = x509.load_der_x509_certificate(renewal.old_cert_der)
        record = await self.store.get(old.serial_number)
        if record is not None and record.superseded_by is not None:
            newer = await self.store.get(record.superseded_by)
            if (newer is not None and newer.transaction_id == req.txid
                    and newer.spki_sha256 == req.spki_hex):
                return success(record_der(newer))  # retry of a renewal that went through
        status = None if record is None else ("superseded" if record.superseded_by else record.status)
        check_renewal(old, status, record.group if record else None, self.cfg.group, req.facts,
                      now, window=self.cfg.renewal_window)
        use = await self._renewal_challenge(req, old, now)
        device_id = await self._check_issuance(req, record.device_id if record else None,
                                               "renewal")
        issued = await self.issue(req.csr_der, req.txid, now, challenge=use,
                                  device_id=device_id, supersedes=old.serial_number)
        await self._retire(old.serial_number, now)
        return success(issued.der)

    async def _renewal_challenge(self, req: EnrollRequest, old: x509.Certificate,
                                 now: dt.datetime) -> ChallengeUse | None:
        """A present challenge is still checked, except the device's original one re-sent
        (micromdm scepclient reuses its CSR): used, and its certificate has our subject."""
        challenge = req.facts.challenge_password
        if not challenge:
            return None
        mode = self._mode(challenge)
        if mode == "static":
            await self._off_loop(verify_static, self.cfg.static_secrets, challenge)
            return None
        if mode == BLOB:
            claims = await self._off_loop(blob_mod.open_blob, challenge, list(self.cfg.blob_keys),
                                          list(self.cfg.mdm_keys), now)
            jti = f"blob:{claims.kid}:{claims.jti}"
        else:
            assert self.cfg.challenge_secret is not None
            jti = parse_token(self.cfg.challenge_secret, challenge)
        row = await self.store.get_challenge(jti)
        if row is not None and row.used_at is not None and row.issued_serial is not None:
            first = await self.store.get(row.issued_serial)
            if first is not None and first.subject == old.subject.rfc4514_string() \
                    and first.group == self.cfg.group:
                log.info("scep renewal group=%s challenge=%s: re-sent its enrollment challenge "
                         "(ignored)", self.cfg.group, jti)
                return None
        if mode == BLOB:
            raise ChallengeRejected(ChallengeReason.REPLAY, f"{jti} on renewal")
        record = record_from_row(row) if row is not None and row.kind == DYNAMIC else None
        assert self.cfg.challenge_secret is not None
        decision = verify_dynamic(self.cfg.challenge_secret, challenge, record, req.facts,
                                  self.cfg.group, req.txid, now)
        if not isinstance(decision, FirstUse):
            raise ChallengeRejected(ChallengeReason.REPLAY, f"{jti} on renewal")
        return ChallengeUse(jti, req.txid, req.spki_hex)

    async def _retire(self, old_serial: int, now: dt.datetime) -> None:
        """Revoke the superseded certificate now (grace 0) or when its grace period ends."""
        if self.cfg.superseded_grace <= dt.timedelta(0) and self.revoke is not None:
            await self.revoke(old_serial, "superseded", f"scep:{self.cfg.group}:renewal")
            return
        await self.requests.schedule_revocation(
            old_serial, self.cfg.group, "superseded", now + self.cfg.superseded_grace,
            f"scep:{self.cfg.group}:renewal", now)


async def revoke_due(store: Store, revoke: RevokeFn, now: dt.datetime | None = None) -> int:
    """Periodic task: revoke superseded certificates whose grace period has ended."""
    requests = ScepStore(store)
    done = 0
    for serial, group, reason, actor in await requests.due_revocations(now or dt.datetime.now(dt.UTC)):
        try:
            await revoke(serial, reason, actor)
        except Exception:
            log.exception("scheduled revocation failed serial=%x group=%s; retried later", serial,
                          group)
            continue
        await requests.revocation_done(serial)
        done += 1
    return done

