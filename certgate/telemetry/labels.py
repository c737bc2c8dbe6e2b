"""Labelled series created at 0 when `certgate serve` starts.

A counter child exists only once it has been incremented, so before the first drop,
revocation or replay a dashboard shows "no data" and `rate()` / `increase()` have nothing to
work on (an alert on `increase(x[5m]) > 0` cannot fire on the first event, which has no
earlier sample). Every label value that is known in advance is created here: configured
groups and RADIUS clients crossed with closed sets of reasons, results and operations.
Nothing per device (serials, MACs, user names) and no open-ended value is ever created here.
"""

from __future__ import annotations

from collections.abc import Iterable

from certgate import metrics as cg
from certgate.admin import ADMIN_DENIED, WEBHOOK_REQUESTS
from certgate.issuance_check import ISSUANCE_CHECKS
from certgate.revocation_http import CRL_REQUESTS, OCSP_REQUESTS
from certgate.revocations import REVOCATIONS
from certgate.scep_http import OPERATIONS
from certgate.sessions import COA_FALLBACKS, COA_REQUESTS, COA_RETRANSMISSIONS
from enrollment import metrics as scep
from enrollment.algorithms import ALGORITHM_LABELS
from enrollment.challenges import ChallengeReason
from enrollment.issuance_check import RESULTS as ISSUANCE_RESULTS
from enrollment.issuance_check import IssuanceReason
from enrollment.policy import CsrReason
from enrollment.renewal import RenewalReason
from radius import metrics as rm
from radius.accounting import ACCOUNTING_DROPPED, ACCOUNTING_REQUESTS, StatusType
from radius.packet import DropReason
from radius.radsec import zero_series as radsec_zero_series
from radius.reasons import Reason
from revocation.ocsp import Outcome
from revocation.reasons import REVOCATION_REASONS, canonical_name
from revocation.webhook import RejectReason

TLS_VERSIONS = ("1.2", "1.3")
# Codes a NAS sends us and codes we answer with (radius.server._code_label spelling).
REQUEST_CODES = ("access_request", "status_server")
RESPONSE_CODES = ("access_accept", "access_reject", "access_challenge")
# Drops that can happen before the client is known are labelled client="unknown".
UNKNOWN_CLIENT_DROPS = (DropReason.UNKNOWN_CLIENT, DropReason.QUEUE_FULL)
ACCOUNTING_DROPS = ("malformed", "bad_authenticator", "unknown_code", "queue_full",
                    "internal_error")
COA_RESULTS = ("ack", "nak", "timeout", "error", "no_coa_port")
COA_KINDS = ("disconnect", "coa")
OCSP_OUTCOMES = tuple(o.value for o in Outcome) + ("try_later",)
CRL_FORMATS = ("crl", "pem", "delta-crl", "delta-pem", "base-crl", "base-pem")
RESUMPTION_RESULTS = ("resumed", "refused_revoked", "refused")
ADMIN_DENIALS = ("missing_token", "bad_token")
WEBHOOK_RESULTS = ("ok",) + tuple(r.value for r in RejectReason)
STORE_OPS = ("feed", "record_certificate", "revoke", "get", "find")
ENROLLMENT_REASONS = tuple(dict.fromkeys(
    r.value for enum in (ChallengeReason, CsrReason, RenewalReason, IssuanceReason)
    for r in enum))
# (operation, message_type, result) triples a SCEP endpoint answers with; not the cross
# product, which would be mostly impossible combinations.
SCEP_OUTCOMES = (
    ("GetCACaps", "none", "success"),
    ("GetCACert", "none", "success"),
    *(("PKIOperation", m, r) for m in ("PKCSReq", "RenewalReq", "CertPoll")
      for r in ("success", "failure", "pending")),
    ("PKIOperation", "unknown", "bad_request"),
    ("PKIOperation", "unknown", "unavailable"),
    ("PKIOperation", "unknown", "shed"),
)


def zero_series(groups: Iterable[str], clients: Iterable[str], *,
                issuance_groups: Iterable[str] = ()) -> None:
    """Create every known series at 0 (idempotent: `labels()` never resets a child).
    `issuance_groups`: the groups with an MDM issuance check."""
    groups, clients = list(groups), list(clients)
    _radius(groups, clients)
    _enrollment(groups)
    for g in issuance_groups:
        for result in ISSUANCE_RESULTS:
            ISSUANCE_CHECKS.labels(group=g, result=result)
    _revocation(groups)
    _process()


def _radius(groups: list[str], clients: list[str]) -> None:
    for g in groups:
        for tls in TLS_VERSIONS:
            rm.authentications("accept", Reason.OK.value, g, tls)
            rm.authentications("accept", Reason.QUARANTINED.value, g, tls)
            rm.authentications("reject", Reason.REVOKED.value, g, tls)
    for reason in Reason:
        if reason not in (Reason.OK, Reason.QUARANTINED):
            rm.authentications("reject", reason.value, "none", "none")
    for result in ("accept", "reject"):
        rm.auth_duration(result)
    for result in RESUMPTION_RESULTS:
        rm.resumptions(result)
    for why in UNKNOWN_CLIENT_DROPS:
        rm.dropped("unknown", why.value)
    ACCOUNTING_DROPPED.labels(client="unknown", reason="unknown_client")
    radsec_zero_series(clients)  # handshake results and close reasons, RadSec on or off
    for c in clients:
        for transport in rm.TRANSPORTS:
            for code in REQUEST_CODES:
                rm.requests(c, code, transport)
            for code in RESPONSE_CODES:
                rm.responses(c, code, transport)
            for status in StatusType:
                ACCOUNTING_REQUESTS.labels(client=c, status_type=status.name.lower(),
                                           transport=transport)
        for why in DropReason:
            if why is not DropReason.UNKNOWN_CLIENT:
                rm.dropped(c, why.value)
        rm.duplicates(c)
        for why in rm.SHED_REASONS:
            rm.shed(c, why)
        for why in ACCOUNTING_DROPS:
            ACCOUNTING_DROPPED.labels(client=c, reason=why)
        for kind in COA_KINDS:
            for result in COA_RESULTS:
                COA_REQUESTS.labels(client=c, kind=kind, result=result)
            COA_RETRANSMISSIONS.labels(client=c, kind=kind)
        COA_FALLBACKS.labels(client=c)


def _enrollment(groups: list[str]) -> None:
    for op in (*OPERATIONS, "unknown"):
        scep.SCEP_DURATION.labels(operation=op)
    scep.SCEP_REQUESTS.labels(group="unknown", operation="PKIOperation", message_type="none",
                              result="not_found")
    for g in groups:
        for op, mtype, result in SCEP_OUTCOMES:
            scep.SCEP_REQUESTS.labels(group=g, operation=op, message_type=mtype, result=result)
        scep.CERTIFICATES_ISSUED.labels(group=g)
        for reason in ENROLLMENT_REASONS:
            scep.CHALLENGE_FAILURES.labels(group=g, reason=reason)
        for algorithm in ALGORITHM_LABELS:
            scep.ALGORITHM_REFUSALS.labels(group=g, algorithm=algorithm)
        cg.SCEP_PENDING.labels(group=g)


def _revocation(groups: list[str]) -> None:
    for g in groups:
        for flag in REVOCATION_REASONS:
            REVOCATIONS.labels(group=g, reason=canonical_name(flag))
        for outcome in OCSP_OUTCOMES:
            OCSP_REQUESTS.labels(group=g, outcome=outcome)
        for fmt in CRL_FORMATS:
            CRL_REQUESTS.labels(group=g, format=fmt)
        for status in ("active", "revoked"):
            cg.CERTIFICATES.labels(group=g, status=status)
        for within in cg.EXPIRY_WINDOWS:
            cg.EXPIRING.labels(group=g, within=within)
    for outcome in (Outcome.MALFORMED, Outcome.UNAUTHORIZED):  # issuer not one of ours
        OCSP_REQUESTS.labels(group="unknown", outcome=outcome.value)
    for result in WEBHOOK_RESULTS:
        WEBHOOK_REQUESTS.labels(result=result)


def _process() -> None:
    for reason in ADMIN_DENIALS:
        ADMIN_DENIED.labels(reason=reason)
    for op in STORE_OPS:
        cg.STORE_ERRORS.labels(op=op)
