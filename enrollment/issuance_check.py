"""The MDM issuance check: ask the device's MDM before a certificate is issued over SCEP.

Pure: the request body and the decision are functions of plain values; the HTTP call is
the composition root's (`certgate/issuance_check.py`). A group that sets
``issuance_webhook`` issues only when the MDM answers an explicit allow.

Request (certgate -> MDM), ``POST <issuance_webhook>``, ``Content-Type: application/json``,
signed like the inbound MDM webhooks (``X-Certgate-Signature: t=<unix>,v1=<hex>``,
HMAC-SHA256 over ``f"{t}."`` + the raw body with ``issuance_webhook_secret``; see
`revocation.webhook`) and, when configured, ``Authorization: Bearer <issuance_webhook_token>``::

    {"version": 1, "request_id": "8c0f...", "group": "staff", "kind": "enrollment",
     "device_id": "C02XK1ABJG5H", "subject": "CN=laptop-01", "subject_cn": "laptop-01",
     "sans": ["dns:laptop-01.corp.example"], "key_type": "ec-p256",
     "key_fingerprint": "sha256:<64 hex digits: SHA-256 of the CSR's SubjectPublicKeyInfo>",
     "transaction_id": "<SCEP transactionID>"}

``kind`` is ``enrollment`` (PKCSReq) or ``renewal`` (RenewalReq). Answer (MDM -> certgate)::

    HTTP 200  {"decision": "allow"}
    any       {"decision": "deny", "reason": "device not compliant"}

An allow counts only with status 200; a ``deny`` counts with any status (and is never
failed open). The answer may echo ``request_id``; if it does, it must match. Anything
else (another status, no JSON object, an unknown decision, a body over
:data:`MAX_ANSWER_BYTES`, a redirect) is an MDM error, like a timeout or a refused
connection: the request fails closed unless the group sets ``issuance_webhook_fail_open``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from enrollment.policy import CsrFacts, EnrollmentRejected

__all__ = [
    "CHALLENGE",
    "CHECKER_REASONS",
    "MAX_ANSWER_BYTES",
    "MAX_REASON_CHARS",
    "RESULTS",
    "DeviceIdSource",
    "IssuanceDecision",
    "IssuanceQuery",
    "IssuanceReason",
    "IssuanceRejected",
    "decide",
    "device_id_for",
    "failure",
    "no_device_id",
    "parse_device_id_source",
    "request_body",
]

MAX_ANSWER_BYTES = 64 * 1024
MAX_REASON_CHARS = 256
MAX_DEVICE_ID_CHARS = 256
CHALLENGE = "challenge"


class IssuanceReason(StrEnum):
    """Why an enrollment was refused by (or for) the issuance check: the SCEP FAILURE's
    reason label (``certgate_scep_challenge_failures_total{reason}``, logs, audit)."""

    DENIED = "issuance_denied"  # the MDM said deny
    TIMEOUT = "issuance_check_timeout"
    UNAVAILABLE = "issuance_check_unavailable"  # connection refused/reset, HTTP 5xx, TLS
    BAD_ANSWER = "issuance_check_bad_answer"  # not the documented answer shape
    NO_DEVICE_ID = "no_device_id"  # the group's device_id_from found none
    DEVICE_ID_MISMATCH = "device_id_mismatch"  # challenge and CSR name different devices
    DEVICE_ID_TOO_LONG = "device_id_too_long"  # the CSR's device id over 256 characters


#: ``certgate_scep_issuance_checks_total{result}`` values: the decision, or the MDM error
#: that refused it; ``failed_open``: an MDM error on a fail-open group (issued anyway).
RESULTS = ("allowed", "denied", "timeout", "unavailable", "bad_answer", "no_device_id",
           "failed_open")

_RESULT_OF = {
    IssuanceReason.DENIED: "denied",
    IssuanceReason.TIMEOUT: "timeout",
    IssuanceReason.UNAVAILABLE: "unavailable",
    IssuanceReason.BAD_ANSWER: "bad_answer",
    IssuanceReason.NO_DEVICE_ID: "no_device_id",
    IssuanceReason.DEVICE_ID_MISMATCH: "no_device_id",
    IssuanceReason.DEVICE_ID_TOO_LONG: "no_device_id",
}

#: Refusals certgate/issuance_check.py reports itself (metric, log, issuance-check-refused);
#: the others are raised before the check, and audited as enrollment-refused.
CHECKER_REASONS = frozenset({IssuanceReason.DENIED, IssuanceReason.TIMEOUT,
                             IssuanceReason.UNAVAILABLE, IssuanceReason.BAD_ANSWER,
                             IssuanceReason.NO_DEVICE_ID})


class IssuanceRejected(EnrollmentRejected):
    """Refused by the issuance check: a signed FAILURE (badRequest); nothing consumed."""

    reason: IssuanceReason

    @property
    def result(self) -> str:
        return _RESULT_OF[self.reason]


@dataclass(frozen=True)
class IssuanceQuery:
    """What the MDM is asked about (plain values)."""

    group: str
    kind: str  # "enrollment" | "renewal"
    device_id: str | None  # None: the group's device_id_from found none (refused, not asked)
    subject: str
    subject_cn: str | None
    sans: tuple[str, ...]
    key_type: str
    spki_sha256: bytes
    transaction_id: str

    @classmethod
    def of(cls, group: str, kind: str, device_id: str | None, facts: CsrFacts,
           transaction_id: str) -> IssuanceQuery:
        return cls(group=group, kind=kind, device_id=device_id, subject=facts.subject,
                   subject_cn=facts.subject_cn, sans=facts.sans, key_type=facts.key_spec,
                   spki_sha256=facts.spki_sha256, transaction_id=transaction_id)

    @property
    def key_fingerprint(self) -> str:
        return "sha256:" + self.spki_sha256.hex()


@dataclass(frozen=True)
class IssuanceDecision:
    """The check's outcome: ``allowed`` or the reason it was refused (or failed open)."""

    allowed: bool
    result: str  # one of RESULTS
    reason: IssuanceReason | None = None  # set unless a plain allow
    detail: str = ""  # the MDM's deny reason or what went wrong (logs and audit; escaped)

    def rejection(self) -> IssuanceRejected:
        assert self.reason is not None and not self.allowed
        return IssuanceRejected(self.reason, self.detail)


def no_device_id(source: DeviceIdSource) -> IssuanceDecision:
    """Refused without asking: the MDM cannot judge a request that names no device."""
    return IssuanceDecision(False, "no_device_id", IssuanceReason.NO_DEVICE_ID,
                            f"device_id_from = {source} names no device in this request")


def request_body(query: IssuanceQuery, request_id: str) -> bytes:
    """The JSON the MDM receives (compact, keys in a fixed order: the bytes that are signed)."""
    if query.device_id is None:
        raise ValueError("no device id: refuse with no_device_id instead of asking")
    return json.dumps({
        "version": 1,
        "request_id": request_id,
        "group": query.group,
        "kind": query.kind,
        "device_id": query.device_id,
        "subject": query.subject,
        "subject_cn": query.subject_cn,
        "sans": list(query.sans),
        "key_type": query.key_type,
        "key_fingerprint": query.key_fingerprint,
        "transaction_id": query.transaction_id,
    }, separators=(",", ":"), ensure_ascii=True).encode()


def failure(reason: IssuanceReason, detail: str, *, fail_open: bool) -> IssuanceDecision:
    """An MDM error (timeout, unavailable, bad answer): refused, or allowed on a fail-open
    group. A deny is never an error and never fails open."""
    if reason is IssuanceReason.DENIED:
        raise ValueError("a deny is a decision, not an MDM error")
    if fail_open:
        return IssuanceDecision(True, "failed_open", reason, detail)
    return IssuanceDecision(False, _RESULT_OF[reason], reason, detail)


def _printable(text: str, limit: int = MAX_REASON_CHARS) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def decide(status: int, body: bytes, request_id: str, *, fail_open: bool = False,
           truncated: bool = False) -> IssuanceDecision:
    """The decision for the MDM's answer: HTTP ``status`` and the ``body`` read (at most
    MAX_ANSWER_BYTES; ``truncated`` when the MDM sent more)."""
    if truncated or len(body) > MAX_ANSWER_BYTES:
        return failure(IssuanceReason.BAD_ANSWER, f"answer larger than {MAX_ANSWER_BYTES} bytes",
                       fail_open=fail_open)
    try:
        answer = json.loads(body) if body.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        answer = None
    decision = answer.get("decision") if isinstance(answer, dict) else None
    if isinstance(answer, dict) and "request_id" in answer and answer["request_id"] != request_id:
        return failure(IssuanceReason.BAD_ANSWER, "request_id does not match the request",
                       fail_open=fail_open)
    if decision == "deny":
        why = answer.get("reason") if isinstance(answer, dict) else None
        return IssuanceDecision(False, "denied", IssuanceReason.DENIED,
                                _printable(why) if isinstance(why, str) else "")
    if status >= 500 or status in (408, 429):
        return failure(IssuanceReason.UNAVAILABLE, f"HTTP {status}", fail_open=fail_open)
    if status != 200:
        return failure(IssuanceReason.BAD_ANSWER, f"HTTP {status} without a deny",
                       fail_open=fail_open)
    if decision == "allow":
        return IssuanceDecision(True, "allowed")
    if answer is None:
        return failure(IssuanceReason.BAD_ANSWER, "answer is not a JSON object",
                       fail_open=fail_open)
    shown = _printable(decision, 40) if isinstance(decision, str) else type(decision).__name__
    return failure(IssuanceReason.BAD_ANSWER,
                   f'decision must be "allow" or "deny", got {shown}', fail_open=fail_open)


# -- which device is asking ---------------------------------------------------------------


@dataclass(frozen=True)
class DeviceIdSource:
    """Where a group finds the device id: the challenge (dynamic binding or blob claim), the
    CSR subject CN, or the first CSR SAN of a type (``uri``, ``dns``, ...) starting with a
    prefix, the prefix removed (Intune: ``san:uri:IntuneDeviceId://``)."""

    kind: str  # "challenge" | "subject_cn" | "san"
    san_type: str = ""
    prefix: str = ""

    def __str__(self) -> str:
        if self.kind == "san":
            return f"san:{self.san_type}" + (f":{self.prefix}" if self.prefix else "")
        return self.kind


_SAN_TYPES = ("dns", "email", "uri", "upn", "ip")


def parse_device_id_source(text: str) -> DeviceIdSource:
    """ValueError (naming the accepted forms) for anything else."""
    if text in (CHALLENGE, "subject_cn"):
        return DeviceIdSource(text)
    kind, _, rest = text.partition(":")
    san_type, _, prefix = rest.partition(":")
    if kind == "san" and san_type in _SAN_TYPES:
        return DeviceIdSource("san", san_type, prefix)
    raise ValueError(f'expected "challenge", "subject_cn" or "san:TYPE[:PREFIX]" with TYPE one '
                     f'of {", ".join(_SAN_TYPES)} (e.g. "san:uri:IntuneDeviceId://")')


def _from_csr(source: DeviceIdSource, subject_cn: str | None, sans: Sequence[str]) -> str | None:
    if source.kind == "subject_cn":
        return subject_cn or None
    wanted = f"{source.san_type}:{source.prefix}"
    for san in sans:
        if san.startswith(wanted) and len(san) > len(wanted):
            return san[len(wanted):]
    return None


def device_id_for(source: DeviceIdSource, from_challenge: str | None,
                  facts: CsrFacts) -> str | None:
    """The device id of this request per the group's ``device_id_from``; None when it names
    none. IssuanceRejected(DEVICE_ID_MISMATCH) when the challenge is bound to one device and
    the CSR names another (a challenge for device A must not enroll device B)."""
    if source.kind == CHALLENGE:
        found = from_challenge or None
    else:
        found = _from_csr(source, facts.subject_cn, facts.sans)
        if found is not None and from_challenge and found != from_challenge:
            raise IssuanceRejected(IssuanceReason.DEVICE_ID_MISMATCH,
                                   f"{source} gives {_printable(found, 64)!r}, the challenge "
                                   f"{_printable(from_challenge, 64)!r}")
        if found is not None and len(found) > MAX_DEVICE_ID_CHARS:
            raise IssuanceRejected(IssuanceReason.DEVICE_ID_TOO_LONG,
                                   f"device id longer than {MAX_DEVICE_ID_CHARS} characters")
        found = found or from_challenge or None
    return found
