"""One group's SCEP endpoint (RFC 8894): GetCACaps, GetCACert, PKIOperation.

PKIOperation in three steps:
  1. off the event loop (`GroupCrypto.open`, in a worker process or thread): parse + verify
     the pkiMessage, check algorithms and signingTime, decrypt, parse the inner request,
     CSR facts and renewal classification;
  2. on the loop: the decision (store reads/writes, `Enroller`; certificates are signed
     off the loop by `GroupCrypto.sign_and_build`, which also builds the CertRep SUCCESS
     for the certificate: used once the certificate is recorded, so an enrollment is two
     hops off the loop, not three);
  3. off the loop: build and sign any other CertRep (`GroupCrypto.build`).
Once the request parsed, every refusal is a signed CertRep FAILURE (failInfo + reason in
the log and metrics); only undecodable input raises `UndecodableRequest` (HTTP 400), and a
crypto worker that died while opening or answering raises `CryptoUnavailable` (HTTP 503).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from enrollment import scep_codec as codec
from enrollment.metrics import ALGORITHM_REFUSALS, CHALLENGE_FAILURES
from enrollment.policy import EnrollmentRejected
from enrollment.renewal import RenewalReason, RenewalRejected
from enrollment.scep_crypto import (
    Built,
    CryptoRunner,
    CryptoUnavailable,
    GroupCrypto,
    Opened,
    ReplyTo,
    ThreadCrypto,
    Undecodable,
)
from enrollment.scep_enroll import (
    Enroller,
    IssuanceCheckFn,
    Outcome,
    RevokeFn,
    ServiceConfig,
    record_der,
    success,
)
from enrollment.scep_types import FailInfo, MessageType, ScepError, UndecodableRequest
from pki.groups import GroupTable
from pki.hierarchy import GroupCa
from store import Store, StoreUnavailable
from store.records import Issued

log = logging.getLogger("certgate.scep")

CA_RA_CERT = "application/x-x509-ca-ra-cert"
CA_CERT = "application/x-x509-ca-cert"
PKI_MESSAGE = "application/x-pki-message"

CrlSource = Callable[[], Awaitable[bytes]]


@dataclass
class _Request:
    """The PKIOperation this task is answering: what a certificate signed for it needs to
    build its CertRep in the same hop, and that CertRep."""

    opened: Opened
    now: dt.datetime
    prebuilt: dict[bytes, Built] = field(default_factory=dict)  # certificate DER -> reply


_REQUEST: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("scep_request",
                                                                          default=None)


class ScepConfigError(ValueError):
    """The group cannot serve SCEP as configured (raised at start)."""


@dataclass(frozen=True)
class ScepReply:
    body: bytes
    message_type: str  # MessageType name or "-" (metric label)
    result: str  # success | failure | pending
    reason: str | None = None


def check_service_config(cfg: ServiceConfig, ca: GroupCa) -> None:
    """ScepConfigError if the group cannot serve SCEP as configured."""
    if cfg.ca_is_ra and not isinstance(ca.key, rsa.RSAPrivateKey):
        raise ScepConfigError(
            f"groups.{cfg.group}.ca_is_ra needs an RSA group CA (SCEP key transport is "
            f"RSA-only) but this CA's key is not RSA: set ca_key_type = \"rsa-2048\" for a "
            f"new group, or ca_is_ra = false to use the group's RSA RA certificate")


class ScepService:
    def __init__(self, cfg: ServiceConfig, ca: GroupCa, root: x509.Certificate, groups: GroupTable,
                 store: Store, executor: Executor, *, crypto: CryptoRunner | None = None,
                 crl_source: CrlSource | None = None, revoke: RevokeFn | None = None,
                 issuance_check: IssuanceCheckFn | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        """`crypto` runs the group's `GroupCrypto` (default: in `executor`, a thread pool,
        with `ca`'s keys); `executor` also runs the static-secret and blob checks;
        `issuance_check` asks the group's MDM before a certificate is issued."""
        check_service_config(cfg, ca)
        self.cfg = cfg
        self.ca = ca
        self.root = root
        self.groups = groups
        self.executor = executor
        self.crl_source = crl_source
        self.clock = clock
        self.crypto: CryptoRunner = crypto or ThreadCrypto(
            executor, {cfg.group: GroupCrypto(cfg, ca, groups)})
        self.enroller = Enroller(cfg, store, executor, revoke, sign=self._sign,
                                 issuance_check=issuance_check)
        # the certificate clients encrypt to (GroupCrypto holds the key and does the crypto)
        self.signer_cert = ca.certificate if cfg.ca_is_ra else ca.ra_certificate
        self._ca_certs = self._build_ca_certs()

    async def _sign(self, csr_der: bytes, serial: int, now: dt.datetime, days: int,
                    **kwargs: Any) -> Issued:
        """Enroller's signer: with the CertRep SUCCESS for the PKIOperation being answered."""
        request = _REQUEST.get()
        if request is None or request.now != now:
            return await self.crypto.call(self.cfg.group, "sign_device", csr_der, serial, now,
                                          days, **kwargs)
        opened = request.opened
        issued, built = await self.crypto.call(self.cfg.group, "sign_and_build", csr_der, serial,
                                               now, days, opened.reply_to, opened.algorithms,
                                               **kwargs)
        request.prebuilt[issued.der] = built
        return issued

    # -- GetCACaps / GetCACert -------------------------------------------------------------

    def caps(self) -> str:
        """GetCACaps: exactly what this group's algorithm policy accepts."""
        return "\n".join(self.cfg.algorithms.caps()) + "\n"

    def _build_ca_certs(self) -> tuple[bytes, str]:
        from cryptography.hazmat.primitives.serialization import Encoding

        with_root = self.cfg.root_in_ca_certs
        if self.cfg.ca_is_ra:
            if not with_root:
                return self.ca.certificate.public_bytes(Encoding.DER), CA_CERT
            return codec.degenerate_certificates([self.ca.certificate, self.root]), CA_RA_CERT
        chain = [self.ca.ra_certificate, self.ca.certificate]
        if with_root:
            chain.append(self.root)
        return codec.degenerate_certificates(chain), CA_RA_CERT

    def ca_certs(self) -> tuple[bytes, str]:
        """GetCACert body and content type (RA first, then the group CA [, root])."""
        return self._ca_certs

    # -- PKIOperation ----------------------------------------------------------------------

    async def pki_operation(self, body: bytes) -> ScepReply:
        """Answer one pkiMessage. Raises UndecodableRequest (HTTP 400) or CryptoUnavailable
        (HTTP 503: the worker died before the request could be read or answered)."""
        now = self.clock()
        opened = await self.crypto.call(self.cfg.group, "open", body, now)
        if isinstance(opened, Undecodable):
            raise UndecodableRequest(opened.reason)
        reply_to = opened.reply_to
        if opened.failure is not None:  # refused while opening: the FAILURE is already built
            fail_info, detail = opened.failure
            outcome = self._failure(FailInfo[fail_info], fail_info, detail)
            if opened.refused_algorithm is not None:
                ALGORITHM_REFUSALS.labels(group=self.cfg.group,
                                          algorithm=opened.refused_algorithm).inc()
            self._log_refusal(reply_to, outcome, opened.refused_algorithm)
            assert opened.failure_body is not None
            return ScepReply(opened.failure_body, reply_to.message_type.name, outcome.status,
                             outcome.reason)
        request = _Request(opened, now)
        token = _REQUEST.set(request)
        try:
            outcome = await self._decide(opened, now)
        except ScepError as exc:
            outcome = self._failure(exc.fail_info, exc.fail_info.name, exc.reason)
        except EnrollmentRejected as exc:
            outcome = self._rejected(exc)
        except CryptoUnavailable as exc:  # nothing was recorded: the client may retry
            log.error("scep PKIOperation not done group=%s message_type=%s transaction=%s "
                      "error=%s", self.cfg.group, reply_to.message_type.name,
                      reply_to.transaction_id, exc)
            outcome = self._failure(FailInfo.badRequest, "internal_error", "crypto worker died")
        except StoreUnavailable as exc:  # nothing was recorded: the client retries later
            outcome = self._failure(FailInfo.badRequest, "store_unavailable",
                                    f"{exc}; the client retries later")
        except Exception as exc:  # our bug: still a signed answer, never an HTTP 500
            log.exception("scep PKIOperation failed group=%s message_type=%s transaction=%s",
                          self.cfg.group, reply_to.message_type.name,
                          reply_to.transaction_id)
            outcome = self._failure(FailInfo.badRequest, "internal_error", type(exc).__name__)
        finally:
            _REQUEST.reset(token)
        if outcome.status == "success" and outcome.crl is None and len(outcome.certificates) == 1:
            built = request.prebuilt.get(outcome.certificates[0])
            if built is not None:  # signed in this request: its CertRep came with it
                return ScepReply(built.body, opened.reply_to.message_type.name,
                                 built.outcome.status, built.outcome.reason)
        return await self._reply(opened, outcome, now)

    async def _decide(self, opened: Opened, now: dt.datetime) -> Outcome:
        mtype = opened.reply_to.message_type
        if opened.refusal is not None:
            raise opened.refusal.exception()
        if opened.enroll is not None:
            return await self.enroller.enroll(opened.enroll, now)
        if opened.issuer_error is not None:
            raise ScepError(FailInfo.badCertId, opened.issuer_error)
        if mtype is MessageType.CertPoll:
            return await self._cert_poll(opened, now)
        if mtype is MessageType.GetCert:
            return await self._get_cert(opened)
        if mtype is MessageType.GetCRL:
            return await self._get_crl()
        raise ScepError(FailInfo.badRequest, f"{mtype.name} not supported")

    async def _cert_poll(self, opened: Opened, now: dt.datetime) -> Outcome:
        store = self.enroller.store
        txid = opened.reply_to.transaction_id
        request = await self.enroller.requests.find_request(self.cfg.group, txid)
        if request is not None:
            return await self.enroller.request_state(request, now)
        issued = [r for r in await store.find(group=self.cfg.group, transaction_id=txid)
                  if r.subject == opened.poll_subject]
        if issued:
            return success(record_der(issued[-1]))
        raise ScepError(FailInfo.badCertId, f"no request for transaction {txid}")

    async def _get_cert(self, opened: Opened) -> Outcome:
        assert opened.serial is not None
        record = await self.enroller.store.get(opened.serial)
        if record is None or record.group != self.cfg.group or record.profile != "device":
            raise ScepError(FailInfo.badCertId, f"no certificate {opened.serial:x}")
        return success(record_der(record))

    async def _get_crl(self) -> Outcome:
        if self.crl_source is None:
            raise ScepError(FailInfo.badRequest, "no CRL publisher")
        return Outcome("success", crl=await self.crl_source())

    # -- outcomes and replies --------------------------------------------------------------

    def _failure(self, fail_info: FailInfo, reason: str, detail: str) -> Outcome:
        return Outcome("failure", fail_info=fail_info.name, reason=reason, detail=detail)

    def _rejected(self, exc: EnrollmentRejected) -> Outcome:
        reason = str(exc.reason.value)
        CHALLENGE_FAILURES.labels(group=self.cfg.group, reason=reason).inc()
        info = FailInfo.badRequest
        if isinstance(exc, RenewalRejected) and exc.reason in (RenewalReason.NOT_OURS,
                                                                RenewalReason.REVOKED):
            info = FailInfo.badCertId
        return Outcome("failure", fail_info=info.name, reason=reason, detail=exc.detail)

    def _log_refusal(self, reply_to: ReplyTo, outcome: Outcome,
                     algorithm: str | None = None) -> None:
        if algorithm is not None:  # badAlg: which algorithm, and (detail) the setting
            log.warning("scep result=%s group=%s message_type=%s transaction=%s fail_info=%s "
                        "algorithm=%s detail=%s signer=%s", "refused", self.cfg.group,
                        reply_to.message_type.name, reply_to.transaction_id, outcome.fail_info,
                        algorithm, outcome.detail, reply_to.signer_subject)
            return
        log.warning("scep result=%s group=%s message_type=%s transaction=%s fail_info=%s "
                    "reason=%s detail=%s signer=%s", "refused", self.cfg.group,
                    reply_to.message_type.name, reply_to.transaction_id, outcome.fail_info,
                    outcome.reason, outcome.detail, reply_to.signer_subject)

    async def _reply(self, opened: Opened, outcome: Outcome, now: dt.datetime) -> ScepReply:
        reply_to = opened.reply_to
        if outcome.status == "failure":
            self._log_refusal(reply_to, outcome)
        args = (self.cfg.group, "build", reply_to, opened.algorithms, outcome, now)
        try:
            built = await self.crypto.call(*args)
        except CryptoUnavailable as exc:  # once more on the new pool, else HTTP 503
            log.error("scep reply built again group=%s message_type=%s transaction=%s error=%s",
                      self.cfg.group, reply_to.message_type.name, reply_to.transaction_id, exc)
            built = await self.crypto.call(*args)
        return ScepReply(built.body, reply_to.message_type.name, built.outcome.status,
                         built.outcome.reason)
