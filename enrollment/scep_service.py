"""One group's SCEP endpoint (RFC 8894): GetCACaps, GetCACert, PKIOperation.

PKIOperation in three steps:
  1. off the event loop: parse + verify the pkiMessage, check algorithms and signingTime,
     decrypt, parse the inner request, CSR facts and renewal classification;
  2. on the loop: the decision (store reads/writes, `Enroller`);
  3. off the loop: build and sign the CertRep.
Once the request parsed, every refusal is a signed CertRep FAILURE (failInfo + reason in
the log and metrics); only undecodable input raises `UndecodableRequest` (HTTP 400).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from enrollment import scep_codec as codec
from enrollment.metrics import CHALLENGE_FAILURES
from enrollment.policy import CsrRejected, EnrollmentRejected, extract_csr_facts
from enrollment.renewal import RenewalReason, RenewalRejected, classify
from enrollment.scep_enroll import Enroller, EnrollRequest, Outcome, RevokeFn, ServiceConfig, success
from enrollment.scep_types import REQUEST_TYPES, FailInfo, MessageType, ScepError, UndecodableRequest
from pki.groups import GroupTable
from pki.hierarchy import GroupCa
from revocation.store import Store

log = logging.getLogger("certgate.scep")

CA_RA_CERT = "application/x-x509-ca-ra-cert"
CA_CERT = "application/x-x509-ca-cert"
PKI_MESSAGE = "application/x-pki-message"

CrlSource = Callable[[], Awaitable[bytes]]


class ScepConfigError(ValueError):
    """The group cannot serve SCEP as configured (raised at start)."""


@dataclass(frozen=True)
class ScepReply:
    body: bytes
    message_type: str  # MessageType name or "-" (metric label)
    result: str  # success | failure | pending
    reason: str | None = None


@dataclass(frozen=True)
class _Opened:
    msg: codec.PkiMessage
    algorithms: codec.EnvelopeAlgorithms | None
    inner: Any = None
    enroll: EnrollRequest | None = None
    rejection: EnrollmentRejected | None = None  # found off-loop (CSR format, renewal signer)


class ScepService:
    def __init__(self, cfg: ServiceConfig, ca: GroupCa, root: x509.Certificate, groups: GroupTable,
                 store: Store, executor: Executor, *, crl_source: CrlSource | None = None,
                 revoke: RevokeFn | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        if cfg.ca_is_ra and not isinstance(ca.key, rsa.RSAPrivateKey):
            raise ScepConfigError(
                f"groups.{cfg.group}.ca_is_ra needs an RSA group CA (SCEP key transport is "
                f"RSA-only) but this CA's key is not RSA: set ca_key_type = \"rsa-2048\" for a "
                f"new group, or ca_is_ra = false to use the group's RSA RA certificate")
        self.cfg = cfg
        self.ca = ca
        self.root = root
        self.groups = groups
        self.executor = executor
        self.crl_source = crl_source
        self.clock = clock
        self.enroller = Enroller(cfg, ca, store, executor, revoke)
        if cfg.ca_is_ra:
            self.signer_cert, self.signer_key = ca.certificate, ca.key
            self.reply_chain: tuple[x509.Certificate, ...] = ()
        else:
            self.signer_cert, self.signer_key = ca.ra_certificate, ca.ra_key
            self.reply_chain = (ca.certificate,)
        self._ca_certs = self._build_ca_certs()

    # -- GetCACaps / GetCACert -------------------------------------------------------------

    def caps(self) -> str:
        words = ["POSTPKIOperation", "Renewal", "SHA-256", "SHA-512", "AES", "SCEPStandard"]
        if self.cfg.legacy_algorithms:
            words += ["DES3", "SHA-1"]
        return "\n".join(words) + "\n"

    def _build_ca_certs(self) -> tuple[bytes, str]:
        from cryptography.hazmat.primitives.serialization import Encoding

        if self.cfg.ca_is_ra:
            if not self.cfg.include_root:
                return self.ca.certificate.public_bytes(Encoding.DER), CA_CERT
            return codec.degenerate_certificates([self.ca.certificate, self.root]), CA_RA_CERT
        chain = [self.ca.ra_certificate, self.ca.certificate]
        if self.cfg.include_root:
            chain.append(self.root)
        return codec.degenerate_certificates(chain), CA_RA_CERT

    def ca_certs(self) -> tuple[bytes, str]:
        """GetCACert body and content type (RA first, then the group CA [, root])."""
        return self._ca_certs

    # -- PKIOperation ----------------------------------------------------------------------

    async def _off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def pki_operation(self, body: bytes) -> ScepReply:
        """Answer one pkiMessage. Raises UndecodableRequest only (HTTP 400)."""
        now = self.clock()
        try:
            opened = await self._off_loop(self._open, body, now)
        except ScepError as exc:
            if not isinstance(exc.request, codec.PkiMessage):
                raise UndecodableRequest(exc.reason) from exc
            outcome = self._failure(exc.fail_info, exc.fail_info.name, exc.reason)
            return await self._reply(exc.request, None, outcome, now)
        msg = opened.msg
        try:
            outcome = await self._decide(opened, now)
        except ScepError as exc:
            outcome = self._failure(exc.fail_info, exc.fail_info.name, exc.reason)
        except EnrollmentRejected as exc:
            outcome = self._rejected(exc)
        except Exception as exc:  # our bug: still a signed answer, never an HTTP 500
            log.exception("group %s: PKIOperation %s %s failed", self.cfg.group,
                          msg.message_type.name, msg.transaction_id)
            outcome = self._failure(FailInfo.badRequest, "internal_error", type(exc).__name__)
        return await self._reply(msg, opened.algorithms, outcome, now)

    def _open(self, body: bytes, now: dt.datetime) -> _Opened:
        """Crypto-heavy, pure: runs in the executor."""
        msg = codec.parse_pki_message(body)
        if msg.message_type not in REQUEST_TYPES:
            raise ScepError(FailInfo.badRequest, f"{msg.message_type.name} is not a request",
                            request=msg)
        if not isinstance(msg.signer_certificate.public_key(), rsa.RSAPublicKey):
            # The reply is enveloped to the signer certificate: RSA key transport only.
            raise ScepError(FailInfo.badAlg, "signer certificate key is not RSA", request=msg)
        codec.check_signing_time(msg, now, self.cfg.signing_time_skew)
        codec.check_algorithms(msg, legacy=self.cfg.legacy_algorithms)
        decrypted = codec.decrypt_inner(msg, self.signer_cert, self.signer_key)  # type: ignore[arg-type]
        codec.check_algorithms(msg, decrypted.algorithms, legacy=self.cfg.legacy_algorithms)
        inner = codec.parse_inner(msg.message_type, decrypted.content, msg)
        opened = _Opened(msg, decrypted.algorithms, inner)
        if msg.message_type not in (MessageType.PKCSReq, MessageType.RenewalReq):
            return opened
        try:
            facts = extract_csr_facts(inner)
            classification = classify(msg.message_type, msg.signer_certificate, self.groups, now)
        except (CsrRejected, RenewalRejected) as exc:
            return replace(opened, rejection=exc)
        return replace(opened, enroll=EnrollRequest(msg, inner, facts, classification))

    async def _decide(self, opened: _Opened, now: dt.datetime) -> Outcome:
        msg = opened.msg
        if opened.rejection is not None:
            raise opened.rejection
        if opened.enroll is not None:
            return await self.enroller.enroll(opened.enroll, now)
        if msg.message_type is MessageType.CertPoll:
            return await self._cert_poll(msg, opened.inner, now)
        if msg.message_type is MessageType.GetCert:
            return await self._get_cert(opened.inner)
        if msg.message_type is MessageType.GetCRL:
            return await self._get_crl(opened.inner)
        raise ScepError(FailInfo.badRequest, f"{msg.message_type.name} not supported", request=msg)

    def _check_issuer(self, issuer: x509.Name) -> None:
        if issuer != self.ca.certificate.subject:
            raise ScepError(FailInfo.badCertId, f"issuer {issuer.rfc4514_string()} is not this "
                            f"group's CA")

    async def _cert_poll(self, msg: codec.PkiMessage, ias: codec.IssuerAndSubject,
                         now: dt.datetime) -> Outcome:
        self._check_issuer(ias.issuer)
        store = self.enroller.store
        request = await self.enroller.requests.find_request(self.cfg.group, msg.transaction_id)
        if request is not None:
            return await self.enroller.request_state(request, now)
        subject = ias.subject.rfc4514_string()
        issued = [r for r in await store.find(group=self.cfg.group, transaction_id=msg.transaction_id)
                  if r.subject == subject]
        if issued:
            return success(issued[-1].certificate())
        raise ScepError(FailInfo.badCertId, f"no request for transaction {msg.transaction_id}")

    async def _get_cert(self, ias: codec.IssuerAndSerial) -> Outcome:
        self._check_issuer(ias.issuer)
        record = await self.enroller.store.get(ias.serial_number)
        if record is None or record.group != self.cfg.group or record.profile != "device":
            raise ScepError(FailInfo.badCertId, f"no certificate {ias.serial_number:x}")
        return success(record.certificate())

    async def _get_crl(self, ias: codec.IssuerAndSerial) -> Outcome:
        self._check_issuer(ias.issuer)
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

    async def _reply(self, msg: codec.PkiMessage, algorithms: codec.EnvelopeAlgorithms | None,
                     outcome: Outcome, now: dt.datetime) -> ScepReply:
        mtype = msg.message_type.name
        if outcome.status == "failure":
            log.warning("group %s: %s %s refused: %s (%s) %s; signer %s", self.cfg.group, mtype,
                        msg.transaction_id, outcome.fail_info, outcome.reason, outcome.detail,
                        msg.signer_certificate.subject.rfc4514_string())
        try:
            body = await self._off_loop(self._build, msg, algorithms, outcome, now)
        except ScepError as exc:  # e.g. the reply cannot be enveloped to the signer
            outcome = self._failure(exc.fail_info, exc.fail_info.name, exc.reason)
            body = await self._off_loop(self._build, msg, None, outcome, now)
        return ScepReply(body, mtype, outcome.status, outcome.reason)

    def _build(self, msg: codec.PkiMessage, algorithms: codec.EnvelopeAlgorithms | None,
               outcome: Outcome, now: dt.datetime) -> bytes:
        # Replies follow the request's algorithms floored at AES-128 / SHA-256 even when the
        # group accepts legacy requests: OpenSSL 3 clients cannot open DES (scep.md pitfall 1).
        opts = codec.ReplyOptions(algorithms=algorithms, legacy=False, ra_chain=self.reply_chain,
                                  now=now)
        key, cert = self.signer_key, self.signer_cert
        if outcome.status == "success" and outcome.crl is not None:
            return codec.build_cert_rep_crl(msg, outcome.crl, cert, key, opts)  # type: ignore[arg-type]
        if outcome.status == "success":
            return codec.build_cert_rep_success(msg, outcome.certificates, cert, key, opts)  # type: ignore[arg-type]
        if outcome.status == "pending":
            return codec.build_cert_rep_pending(msg, cert, key, opts)  # type: ignore[arg-type]
        text = outcome.reason if outcome.reason != "internal_error" else None
        return codec.build_cert_rep_failure(msg, FailInfo[outcome.fail_info or "badRequest"], cert,
                                            key, text, opts)  # type: ignore[arg-type]
