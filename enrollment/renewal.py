"""Pure renewal classification and checks (scep.md §4.4).

`classify` decides whether a PKIOperation is a renewal: messageType 17
(RenewalReq), or any request whose signer certificate was issued by one of our
group intermediates (Cisco and macOS renew with PKCSReq signed by the old cert).
A RenewalReq whose signer is not ours is refused (`not_ours`); a PKCSReq signed by
a self-signed or foreign certificate is an initial enrolment (challenge applies).

`check_renewal` then applies the rules with the inventory's view of the old
certificate: ours, not revoked or superseded, unexpired (optional grace), same
group as the endpoint, same subject, and inside the renewal window. On success
the challenge is waived (a present one is still checked by the caller).

A PKCSReq (19) classified as Renewal that then fails `check_renewal` (say, the old
certificate expired while the device was offline) may fall back to initial
enrolment if it carries a challenge; that choice belongs to the endpoint policy in
the caller. A RenewalReq (17) that fails is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from enrollment.policy import CsrFacts, EnrollmentRejected
from pki.groups import Group, GroupTable

RENEWAL_REQ = 17
PKCS_REQ = 19
DEFAULT_WINDOW = 0.3
_OK_STATUSES = frozenset({"active", "issued"})


class RenewalReason(StrEnum):
    NOT_OURS = "not_ours"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"
    WRONG_GROUP = "wrong_group"
    SUBJECT_CHANGED = "subject_changed"
    OUTSIDE_WINDOW = "outside_window"
    KEY_REUSED = "key_reused"


class RenewalRejected(EnrollmentRejected):
    """The renewal is refused (peer's fault → CertRep FAILURE badRequest / badCertId)."""

    reason: RenewalReason


@dataclass(frozen=True)
class Initial:
    """Initial enrolment: a challenge is required."""


@dataclass(frozen=True)
class Renewal:
    old_cert: x509.Certificate
    group: Group


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _spki_sha256(cert: x509.Certificate) -> bytes:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def issuing_group(cert: x509.Certificate, groups: GroupTable) -> Group | None:
    """The group whose intermediate signed `cert` (name match *and* signature), else None."""
    for group in groups:
        if cert.issuer == group.intermediate.subject and _issued_by(cert, group.intermediate):
            return group
    return None


def classify(
    message_type: int,
    signer_cert: x509.Certificate,
    groups: GroupTable,
    now: datetime,
) -> Initial | Renewal:
    """Initial or Renewal(old_cert, group); RenewalReq by a foreign signer → not_ours.

    `now` is accepted for interface symmetry; validity is judged by `check_renewal`.
    """
    del now
    group = issuing_group(signer_cert, groups)
    if group is not None:
        return Renewal(signer_cert, group)
    if int(message_type) == RENEWAL_REQ:
        raise RenewalRejected(
            RenewalReason.NOT_OURS, f"RenewalReq signed by {signer_cert.issuer.rfc4514_string()}"
        )
    return Initial()


def window_start(old_cert: x509.Certificate, window: float | timedelta) -> datetime:
    """First instant a renewal is allowed.

    `window` is a fraction of the lifetime (0.3 = last 30 %) or a timedelta before expiry.
    """
    not_before, not_after = old_cert.not_valid_before_utc, old_cert.not_valid_after_utc
    if isinstance(window, timedelta):
        return not_after - window
    if not 0 < window <= 1:
        raise ValueError("renewal window fraction must be in (0, 1]")
    return not_after - (not_after - not_before) * window


def check_renewal(
    old_cert: x509.Certificate,
    old_status: str | None,
    group_of_old: Group | str | None,
    endpoint_group: Group | str,
    new_csr_facts: CsrFacts,
    now: datetime,
    *,
    window: float | timedelta = DEFAULT_WINDOW,
    grace: timedelta = timedelta(0),
    require_new_key: bool = False,
) -> None:
    """Raise RenewalRejected unless the renewal is allowed.

    old_status is the inventory status (None = not in our inventory). The old
    certificate is valid through notAfter inclusive; `grace` extends that.
    """
    if old_status is None or group_of_old is None:
        raise RenewalRejected(RenewalReason.NOT_OURS, "not in inventory")
    status = old_status.lower()
    if status == "revoked":
        raise RenewalRejected(RenewalReason.REVOKED, f"serial {old_cert.serial_number:x}")
    if status == "superseded":
        raise RenewalRejected(RenewalReason.SUPERSEDED, f"serial {old_cert.serial_number:x}")
    if status not in _OK_STATUSES:
        raise RenewalRejected(RenewalReason.NOT_OURS, f"inventory status {old_status!r}")
    if now > old_cert.not_valid_after_utc + grace:
        raise RenewalRejected(RenewalReason.EXPIRED, old_cert.not_valid_after_utc.isoformat())
    old_name = group_of_old if isinstance(group_of_old, str) else group_of_old.name
    new_name = endpoint_group if isinstance(endpoint_group, str) else endpoint_group.name
    if old_name != new_name:
        raise RenewalRejected(RenewalReason.WRONG_GROUP, f"{old_name} -> {new_name}")
    old_subject = old_cert.subject.rfc4514_string()
    if new_csr_facts.subject != old_subject:
        raise RenewalRejected(
            RenewalReason.SUBJECT_CHANGED, f"{old_subject} -> {new_csr_facts.subject}"
        )
    start = window_start(old_cert, window)
    if now < start or now < old_cert.not_valid_before_utc:
        raise RenewalRejected(RenewalReason.OUTSIDE_WINDOW, f"window opens {start.isoformat()}")
    if require_new_key and _spki_sha256(old_cert) == new_csr_facts.spki_sha256:
        raise RenewalRejected(RenewalReason.KEY_REUSED, "renewal must use a new key")
