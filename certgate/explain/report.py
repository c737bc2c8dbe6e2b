"""An explanation as JSON fields (CLI `--json` and the API answer the same) and as text."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from cryptography import x509

from pki.groups import ExtraAttribute, Group, GroupTable
from pki.hierarchy import reply_attributes
from radius.authorize import Allow, identity_of
from radius.reasons import Reason
from radius.reply import PER_SESSION, describe
from radius.verdict import Verdict
from revocation.snapshot import RevocationIndex
from store.records import ACTIVE, REVOKED, CertRecord

# What a real EAP-TLS handshake checks and explain cannot (radius.verdict's docstring).
NOT_CHECKED = (
    "possession of the private key (TLS CertificateVerify)",
    "TLS versions, ciphers and key-exchange groups the device offers",
    "OpenSSL's security-level floor on key sizes and signature hashes",
    "the verify depth limit (4 intermediates)",
    "the RADIUS side: client secret, Message-Authenticator, fragmentation, conversation limits",
)


def utc(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def group_table(intermediates: dict[str, x509.Certificate], group_settings: tuple) -> GroupTable:
    """The groups as RADIUS sees them, from the intermediates alone (no CA key is read),
    with the same [reply] mapping as pki.hierarchy.LoadedPki.group_table."""
    return GroupTable(
        Group(g.name, intermediates[g.name], reply_attributes(g))
        for g in group_settings
    )


def record_lookups(record: CertRecord | None, now: dt.datetime
                   ) -> tuple[RevocationIndex, Callable[[str, int], bool]]:
    """The revocation index and inventory check RADIUS would hold for this one certificate,
    from its store row (what ChangeFeed.load builds: revoked rows; unexpired device rows)."""
    revoked = RevocationIndex()
    if record is not None and record.status == REVOKED:
        revoked.add(record.group, record.serial, held=record.reason == "certificateHold")

    def issued(group: str, serial: int) -> bool:
        return (record is not None and record.serial == serial and record.group == group
                and record.profile == "device" and record.not_after > now)

    return revoked, issued


def build(verdict: Verdict, leaf: x509.Certificate, *, now: dt.datetime,
          inventory: dict[str, Any] | None, record: CertRecord | None = None,
          source: str) -> dict[str, Any]:
    """``inventory``: the store row as ``inventory_fields`` gives it, None if the store has no
    such serial, or ``{"error": ...}`` when the store could not be asked. RADIUS, like this,
    looks certificates up by (group, serial): ``same_certificate`` says whether the row is
    this very certificate (a forgery can reuse a serial)."""
    accepted = verdict.accepted
    if record is not None and inventory is not None and "error" not in inventory:
        inventory = {**inventory, "same_certificate": _same(record, leaf)}
    report: dict[str, Any] = {
        "verdict": "accept" if accepted else "reject",
        "reason": verdict.reason.value,
        "detail": verdict.detail,
        "group": verdict.group,
        "certificate": {
            "serial": format(leaf.serial_number, "x"),
            "subject": leaf.subject.rfc4514_string(),
            "issuer": leaf.issuer.rfc4514_string(),
            "not_before": utc(leaf.not_valid_before_utc),
            "not_after": utc(leaf.not_valid_after_utc),
            "identity": identity_of(leaf),
        },
        "chain": [c.subject.rfc4514_string() for c in verdict.chain],
        "reply": describe(list(verdict.attributes), _extra(verdict)),
        "reply_per_session": list(PER_SESSION) if accepted else [],
        "inventory": inventory,
        "hint": hint(verdict, leaf, inventory, now),
        "evaluated_at": utc(now),
        "source": source,
        "not_checked": list(NOT_CHECKED),
    }
    return report


def _extra(verdict: Verdict) -> tuple[ExtraAttribute, ...]:
    """The group's [reply] attributes, so the report names them as configured."""
    decision = verdict.decision
    return decision.group.reply.extra if isinstance(decision, Allow) else ()


def _same(record: CertRecord, leaf: x509.Certificate) -> bool:
    try:
        stored = x509.load_pem_x509_certificate(record.pem.encode())
    except ValueError:
        return False
    return stored == leaf


def inventory_fields(record: CertRecord, revoked_by: str | None) -> dict[str, Any]:
    return {
        "serial": record.serial_hex, "group": record.group, "profile": record.profile,
        "status": record.status, "reason": record.reason, "revoked_at": utc(record.revoked_at),
        "revoked_by": revoked_by, "device_id": record.device_id,
        "not_after": utc(record.not_after),
    }


def revoked_by(audit: list[dict]) -> str | None:
    """The actor of the latest revoke entry of a certificate's audit trail (newest first)."""
    for entry in audit:
        if entry.get("action") == "revoke":
            return entry.get("actor")
    return None


def hint(verdict: Verdict, leaf: x509.Certificate, inventory: dict[str, Any] | None,
         now: dt.datetime) -> str:
    """What an on-call engineer does next."""
    reason, serial = verdict.reason, format(leaf.serial_number, "x")
    row = inventory if inventory is not None and "error" not in inventory else None
    if reason is Reason.OK:
        return "accepted: if the device is still refused, look at the NAS, the supplicant's " \
               "trust of the RADIUS server certificate, or the RADIUS log for this serial"
    if reason is Reason.QUARANTINED:
        return (f"on hold, admitted into the group's quarantine (quarantine_vlan / "
                f"quarantine_filter_id): `certgate revoke --serial {serial} --release-hold`, POST "
                f"/api/v1/certificates/{serial}/release-hold or the MDM's device-compliant "
                "webhook moves it back")
    if reason is Reason.REVOKED:
        if row is not None and row.get("reason") == "certificateHold":
            return (f"on hold since {row.get('revoked_at')} (by {row.get('revoked_by')}): "
                    f"`certgate revoke --serial {serial} --release-hold` or POST "
                    f"/api/v1/certificates/{serial}/release-hold lets it in again")
        if row is not None and row.get("status") == REVOKED:
            return (f"revoked ({row.get('reason')}) at {row.get('revoked_at')} by "
                    f"{row.get('revoked_by')}: the device needs a new certificate (re-enroll)")
        return "in this node's revocation index: the device needs a new certificate"
    if reason is Reason.NOT_ISSUED:
        if row is None:
            return ("signed by a group CA but not in certgate's inventory: issued elsewhere "
                    "with the group CA's key. Legitimate: register it in the inventory; "
                    "otherwise treat the group CA key as compromised")
        if row.get("profile") != "device":
            return f"a {row.get('profile')} certificate, not a device certificate"
        if row.get("group") != verdict.group:
            return (f"the inventory records it under group {row.get('group')!r}, but group "
                    f"{verdict.group!r}'s CA signed it")
        return "in the inventory but not as an unexpired device certificate of this group"
    if reason is Reason.EXPIRED:
        return (f"valid until {utc(leaf.not_valid_after_utc)}, evaluated at {utc(now)}: the "
                "device must renew (SCEP RenewalReq) or re-enroll; if the group CA expired, "
                "renew the CA")
    if reason is Reason.NOT_YET_VALID:
        return (f"valid from {utc(leaf.not_valid_before_utc)}, evaluated at {utc(now)}: check "
                "this server's clock (and the CA's when it was issued)")
    if reason is Reason.BAD_EKU:
        return "no clientAuth extended key usage: issue a device certificate from the group"
    if reason is Reason.UNKNOWN_ISSUER:
        return ("the chain does not reach certgate's root: another CA issued it, or an "
                "intermediate between it and a group CA is missing (pass it with --chain; the "
                "device must send it too)")
    if reason is Reason.UNKNOWN_GROUP:
        return (f"the chain reaches certgate's root, but through {leaf.issuer.rfc4514_string()}"
                ", which is not a configured group intermediate (compared by DER, not by name)")
    if reason is Reason.STORE_UNAVAILABLE:
        return ("this node cannot reach the store and has not seen this certificate (or the "
                "outage grace has passed): fix the store; /readyz says why")
    if reason is Reason.CHAIN_INVALID:
        return "OpenSSL refused the chain (see detail)"
    return ""


def render(report: dict[str, Any]) -> str:
    """The text form: one field per line, the reply as radclient prints attributes."""
    cert = report["certificate"]
    width = 11

    def line(key: str, value: object) -> str:
        return f"{key + ':' if key else '':<{width}}{value}"

    reason = report["reason"] + (f"  ({report['detail']})" if report["detail"] else "")
    lines = [
        line("verdict", report["verdict"].upper()),
        line("reason", reason),
        line("group", report["group"] or "-"),
        line("serial", cert["serial"]),
        line("subject", cert["subject"]),
        line("issuer", cert["issuer"]),
        line("valid", f"{cert['not_before']} .. {cert['not_after']}"),
        line("identity", cert["identity"]),
        line("chain", " <- ".join(report["chain"]) if report["chain"] else "(did not verify)"),
        line("inventory", _inventory_text(report["inventory"])),
    ]
    if report["reply"]:
        first = True
        for attr in report["reply"]:
            value = attr["value"]
            text = f'"{value}"' if isinstance(value, str) else value
            if attr.get("label"):
                text = f"{attr['label']} ({value})"
            tag = f":{attr['tag']}" if attr.get("tag") else ""
            lines.append(line("reply" if first else "", f"{attr['name']}{tag} = {text}"))
            first = False
        lines.append(line("", "+ per session: " + ", ".join(report["reply_per_session"])))
    else:
        lines.append(line("reply", "Access-Reject (EAP-Failure only)"))
    if report["hint"]:
        lines.append(line("hint", report["hint"]))
    lines.append(line("at", f"{report['evaluated_at']} ({report['source']})"))
    lines.append(line("unchecked", "needs a real handshake: " + "; ".join(report["not_checked"])))
    return "\n".join(lines) + "\n"


def _inventory_text(inventory: dict[str, Any] | None) -> str:
    if inventory is None:
        return "not in the inventory"
    if "error" in inventory:
        return str(inventory["error"])
    text = f"{inventory['status']} {inventory['profile']} certificate of group {inventory['group']}"
    if inventory["status"] != ACTIVE:
        text += f" ({inventory['reason']}, {inventory['revoked_at']}, by {inventory['revoked_by']})"
    if inventory.get("device_id"):
        text += f", device {inventory['device_id']}"
    return text


async def lookup(store: Any, serial: int) -> tuple[CertRecord | None, dict[str, Any] | None]:
    """The store row of a serial and its inventory fields (with who revoked it, from the
    audit trail). StoreUnavailable propagates: the caller decides what an outage means."""
    record = await store.get(serial)
    if record is None:
        return None, None
    actor = revoked_by(await store.audit_log(serial, limit=20)) if record.status == REVOKED \
        else None
    return record, inventory_fields(record, actor)
