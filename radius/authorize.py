"""Who may connect, and with which attributes. Pure: takes ``now``, returns a decision.

Rules (radius-eap-tls.md §5):

* the issuer must be *exactly* a configured group intermediate (DER equality through
  ``GroupTable.for_intermediate``; never the DN, which rogue chains copy). Trusting the
  root alone would admit every intermediate under it;
* a resumed session has no verified chain: the cached leaf is matched to the group whose
  intermediate signed it (``verify_directly_issued_by``) and everything else is
  re-checked exactly as on a full handshake, so revocation between the first and the
  resumed handshake is honoured;
* clientAuth EKU, validity at ``now`` (leaf and group intermediate), not revoked. A
  certificate on hold (certificateHold) is admitted into the group's quarantine
  (``quarantine_vlan`` / ``quarantine_filter_id``) when the group has one, else rejected
  as revoked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki.groups import Group, GroupTable
from radius.reasons import Reason
from revocation.snapshot import RevocationIndex

UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


@dataclass(frozen=True, slots=True)
class Allow:
    group: Group
    identity: str  # User-Name for the Accept: first SAN email/DNS/UPN, else subject CN
    serial: int
    session_timeout: int  # seconds; never past the leaf's notAfter
    not_after: dt.datetime
    quarantined: bool = False  # on hold: the Accept carries the group's quarantine


@dataclass(frozen=True, slots=True)
class Deny:
    reason: Reason
    detail: str = ""
    group: str | None = None


Decision = Allow | Deny


def authorize(
    leaf: x509.Certificate,
    verified_chain: Sequence[x509.Certificate] | None,
    resumed: bool,
    groups: GroupTable,
    revoked: RevocationIndex,
    now: dt.datetime,
    issued: Callable[[str, int], bool | None] | None = None,
) -> Decision:
    """``issued(group, serial)``, when given, must confirm the leaf is a device certificate
    certgate issued (the inventory allow-list): False is Deny(not_issued), None (the node
    cannot know: its store is unreachable) Deny(store_unavailable), failing closed."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if resumed or verified_chain is None:
        group = group_by_signature(leaf, groups)
        if group is None:
            return Deny(Reason.UNKNOWN_GROUP, "cached leaf not issued by a group CA")
    else:
        if len(verified_chain) < 2:
            return Deny(Reason.UNKNOWN_GROUP, "chain without an intermediate")
        group = groups.for_intermediate(verified_chain[1])
        if group is None:
            return Deny(
                Reason.UNKNOWN_GROUP,
                f"issuer {verified_chain[1].subject.rfc4514_string()} is not a group CA",
            )
    for cert, what in ((leaf, "certificate"), (group.intermediate, "group CA")):
        if now < cert.not_valid_before_utc:
            return Deny(Reason.NOT_YET_VALID, f"{what} not valid before", group.name)
        if now > cert.not_valid_after_utc:
            return Deny(Reason.EXPIRED, f"{what} expired", group.name)
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return Deny(Reason.BAD_EKU, "no extendedKeyUsage", group.name)
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        return Deny(Reason.BAD_EKU, "no clientAuth EKU", group.name)
    quarantined = False
    if revoked.is_revoked(group.name, leaf.serial_number):
        if not (revoked.is_held(group.name, leaf.serial_number) and group.reply.has_quarantine):
            return Deny(Reason.REVOKED, f"serial {leaf.serial_number:x} revoked", group.name)
        quarantined = True
    if issued is not None:
        known = issued(group.name, leaf.serial_number)
        if known is None:
            return Deny(Reason.STORE_UNAVAILABLE, f"serial {leaf.serial_number:x} not seen by "
                        "this node and the store is unreachable", group.name)
        if not known:
            return Deny(Reason.NOT_ISSUED, f"serial {leaf.serial_number:x} not in the inventory",
                        group.name)
    remaining = int((leaf.not_valid_after_utc - now).total_seconds())
    timeout = remaining
    if group.reply.session_timeout is not None:
        timeout = min(group.reply.session_timeout, remaining)
    return Allow(
        group=group,
        identity=identity_of(leaf),
        serial=leaf.serial_number,
        session_timeout=max(1, timeout),
        not_after=leaf.not_valid_after_utc,
        quarantined=quarantined,
    )


def group_by_signature(leaf: x509.Certificate, groups: GroupTable) -> Group | None:
    """The group whose intermediate signed ``leaf`` (name and signature checked), or None."""
    for group in groups:
        if group.intermediate.subject != leaf.issuer:
            continue
        try:
            leaf.verify_directly_issued_by(group.intermediate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return group
    return None


def identity_of(cert: x509.Certificate) -> str:
    """First SAN rfc822Name / dNSName / UPN, else the subject CN, else the serial."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for name in san:
            if isinstance(name, x509.RFC822Name | x509.DNSName):
                return name.value
            if isinstance(name, x509.OtherName) and name.type_id == UPN_OID:
                upn = _der_utf8string(name.value)
                if upn:
                    return upn
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        value = cns[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return f"serial:{cert.serial_number:x}"


def _der_utf8string(der: bytes) -> str | None:
    """Decode a DER UTF8String (tag 0x0C) with a short or long length, else None."""
    if len(der) < 2 or der[0] != 0x0C:
        return None
    n, pos = der[1], 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 2 or len(der) < 2 + k:
            return None
        n, pos = int.from_bytes(der[2 : 2 + k], "big"), 2 + k
    if pos + n != len(der):
        return None
    return der[pos:].decode("utf-8", "replace")
