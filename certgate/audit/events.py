"""Audit events: one JSON-serialisable mapping per security decision (docs/audit-events.md).

Pure: values and the time in, a nested dict out, in Elastic Common Schema field names
where ECS has one and under ``certgate.*`` where it does not. The store's audit rows are
turned into events here too (``from_record``), so the live stream and
``certgate audit export`` print the same fields for the same decision.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

#: Bumped when a field is renamed, removed or changes meaning (adding fields does not).
SCHEMA_VERSION = 1
ECS_VERSION = "8.11.0"

AUTHENTICATION = "authentication"
IAM = "iam"
CONFIGURATION = "configuration"


def timestamp(when: dt.datetime) -> str:
    """RFC 3339 with milliseconds and an explicit offset (UTC: +00:00)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def _clean(value: Any) -> Any:
    """Drop None values and empty tables, recursively: absent fields stay absent."""
    if isinstance(value, Mapping):
        out = {k: _clean(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in out.items() if v != {}}
    return value


def event(
    action: str,
    outcome: str,
    *,
    now: dt.datetime,
    category: str,
    types: tuple[str, ...],
    level: str = "info",
    reason: str | None = None,
    provider: str | None = None,
    user: str | None = None,
    source_ip: str | None = None,
    serial: str | None = None,
    group: str | None = None,
    node: str | None = None,
    tls_version: str | None = None,
    certgate: Mapping[str, Any] | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """The common envelope; action-specific fields go in ``certgate``."""
    if outcome not in ("success", "failure", "unknown"):
        raise ValueError(f"outcome {outcome!r}")
    body: dict[str, Any] = {
        "@timestamp": timestamp(now),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "event",
            "category": [category],
            "type": list(types),
            "action": action,
            "outcome": outcome,
            "reason": reason,
            "provider": provider,
            "dataset": "certgate.audit",
        },
        "log": {"level": level, "logger": "certgate.audit"},
        "message": message,
        "user": {"name": user},
        "source": {"ip": source_ip},
        "tls": {"version": tls_version, "version_protocol": "tls" if tls_version else None},
        "x509": {"serial_number": serial.upper() if serial else None},
        "host": {"name": node},
        "certgate": {"audit": {"version": SCHEMA_VERSION}, "group": group, **(certgate or {})},
    }
    return _clean(body)


def actor_kind(actor: str | None) -> str:
    """Who acted, from the store's actor string: cli, admin_api, webhook, scep, reconcile
    (MDM reconciliation), system."""
    head = (actor or "").split(":", 1)[0]
    return {"cli": "cli", "api": "admin_api", "webhook": "webhook", "scep": "scep",
            "reconcile": "reconcile"}.get(head, "system")


# -- live-only events (not rows of the store's audit table) ---------------------------


def authentication(
    *, now: dt.datetime, accepted: bool, reason: str, client: str, group: str | None,
    tls_version: str | None, calling_station: str | None, identity: str | None,
    serial: int | None, resumed: bool, round_trips: int, duration_ms: float,
    detail: str, node: str | None, transport: str = "udp",
) -> dict[str, Any]:
    """One RADIUS EAP-TLS authentication result (Access-Accept or Access-Reject);
    ``transport``: "udp" or "radsec", the listener the NAS reached."""
    return event(
        "radius-authentication", "success" if accepted else "failure", now=now,
        category=AUTHENTICATION, types=("start",),
        level="info" if accepted else "warning", reason=reason, provider="radius",
        user=identity, serial=f"{serial:X}" if serial is not None else None, group=group,
        node=node, tls_version=tls_version,
        certgate={"radius": {"client": client, "calling_station_id": calling_station,
                             "transport": transport, "resumed": resumed, "round_trips": round_trips,
                             "duration_ms": round(duration_ms, 1), "detail": detail or None}},
    )


def admin_auth_failure(*, now: dt.datetime, reason: str, source_ip: str | None, path: str,
                       node: str | None) -> dict[str, Any]:
    return event("admin-authentication", "failure", now=now, category=AUTHENTICATION,
                 types=("info",), level="warning", reason=reason, provider="admin_api",
                 source_ip=source_ip, node=node, certgate={"http": {"path": path}})


def challenge_refused(*, now: dt.datetime, group: str, reason: str, detail: str,
                      transaction_id: str | None, source_ip: str | None,
                      node: str | None) -> dict[str, Any]:
    return event("challenge-refused", "failure", now=now, category=AUTHENTICATION,
                 types=("info",), level="warning", reason=reason, provider="scep",
                 source_ip=source_ip, group=group, node=node,
                 certgate={"scep": {"transaction_id": transaction_id, "detail": detail}})


def issuance_check_refused(*, now: dt.datetime, group: str, reason: str, result: str,
                           detail: str, kind: str, device_id: str | None, subject: str,
                           key_fingerprint: str, transaction_id: str,
                           node: str | None) -> dict[str, Any]:
    """The group's MDM issuance check refused a SCEP enrollment or renewal (a deny, or an MDM
    error on a fail-closed group): nothing issued, the challenge not consumed."""
    return event("issuance-check-refused", "failure", now=now, category=IAM,
                 types=("denied",), level="warning", reason=reason, provider="scep",
                 user=subject, group=group, node=node,
                 certgate={"scep": {"transaction_id": transaction_id, "kind": kind,
                                    "key_fingerprint": key_fingerprint},
                           "mdm": {"device_id": device_id, "result": result,
                                   "detail": detail or None}})


def reconcile_braked(*, now: dt.datetime, group: str, considered: int, missing: int,
                     fraction: float, max_fraction: float, mdm_devices: int,
                     node: str | None) -> dict[str, Any]:
    """MDM reconciliation found more of a group missing than [mdm] max_revoke_fraction and
    revoked nothing: an operator must look (a broken MDM export, or a real mass removal)."""
    return event("reconcile-braked", "failure", now=now, category=IAM, types=("denied",),
                 level="error", reason="max_revoke_fraction", provider="system", group=group,
                 node=node, certgate={"mdm": {"considered": considered, "missing": missing,
                                              "fraction": round(fraction, 4),
                                              "max_revoke_fraction": max_fraction,
                                              "devices": mdm_devices}})


def config_loaded(*, now: dt.datetime, path: str, sha256: str, groups: list[str],
                  node: str | None) -> dict[str, Any]:
    return event("config-loaded", "success", now=now, category=CONFIGURATION,
                 types=("info",), provider="system", node=node,
                 certgate={"config": {"path": path, "sha256": sha256, "groups": groups}})


# -- events from the store's audit rows ------------------------------------------------

#: store action -> (event.action, category, type); anything else is kept as it is.
_STORE_ACTIONS: dict[str, tuple[str, str, str]] = {
    "issue": ("certificate-issued", IAM, "creation"),
    "release-hold": ("certificate-released", IAM, "change"),
    "request-pending": ("request-pending", IAM, "creation"),
    "request-approved": ("request-approved", IAM, "change"),
    "request-rejected": ("request-rejected", IAM, "change"),
    "pki-create": ("pki-created", CONFIGURATION, "creation"),
    "pki-import": ("pki-imported", CONFIGURATION, "creation"),
}


def from_record(row: Mapping[str, Any], node: str | None = None) -> list[dict[str, Any]]:
    """The event(s) one audit row stands for (a renewal is two: renewed and superseded).

    ``row``: at (datetime), actor, action, serial (hex or None), group, details (dict).
    """
    if row["action"] == "radius-authentication" and "event" in (row.get("details") or {}):
        return [row["details"]["event"]]  # [audit] store_authentications keeps the event itself
    at: dt.datetime = row["at"]
    actor, action = row.get("actor"), str(row["action"])
    serial, group = row.get("serial"), row.get("group")
    if group == "-":  # the RADIUS server certificate belongs to no group
        group = None
    details = dict(row.get("details") or {})
    os_user = details.pop("os_user", None)
    common = {"now": at, "user": os_user or actor, "serial": serial, "group": group,
              "node": node, "provider": actor_kind(actor)}

    def extra(**more: Any) -> dict[str, Any]:
        return {"actor": {"kind": actor_kind(actor), "name": actor}, **more}

    if action == "issue":
        supersedes = details.pop("supersedes", None)
        challenge = details.pop("challenge", None)
        events = [event("certificate-renewed" if supersedes else "certificate-issued", "success",
                        category=IAM, types=("creation",), **common,
                        certgate=extra(certificate=details or None,
                                       supersedes=supersedes))]
        if challenge:
            events.append(event("challenge-consumed", "success", category=AUTHENTICATION,
                                types=("info",), **common,
                                certgate=extra(challenge={"jti": challenge})))
        return events
    if action == "revoke":
        reason = details.pop("reason", None)
        name = {"certificateHold": "certificate-held",
                "superseded": "certificate-superseded"}.get(reason or "", "certificate-revoked")
        return [event(name, "success", category=IAM, types=("change",), reason=reason,
                      **common, certgate=extra(revocation=details or None))]
    if action.startswith("challenge-create:"):
        kind = action.split(":", 1)[1]
        return [event("challenge-created", "success", category=IAM, types=("creation",),
                      **common, certgate=extra(challenge={"kind": kind, **details}))]
    if action == "admin-authentication":  # nobody authenticated: no user, as streamed live
        return [admin_auth_failure(now=at, reason=details.get("reason", "unknown"),
                                   source_ip=details.get("source_ip"),
                                   path=details.get("path", ""), node=node)]
    name, category, kind = _STORE_ACTIONS.get(action, (action, CONFIGURATION, "info"))
    return [event(name, "success", category=category, types=(kind,), **common,
                  certgate=extra(details=details or None))]


def text_line(ev: Mapping[str, Any]) -> str:
    """One human line per event (`audit export` without --json); control characters escaped."""
    from certgate.logs import escape_control

    e = ev.get("event", {})
    cg = ev.get("certgate", {})
    parts = [ev.get("@timestamp", "-"), e.get("action", "-"), e.get("outcome", "-")]
    for label, value in (
        ("reason", e.get("reason")), ("group", cg.get("group")),
        ("serial", ev.get("x509", {}).get("serial_number")),
        ("user", ev.get("user", {}).get("name")), ("source", ev.get("source", {}).get("ip")),
        ("client", cg.get("radius", {}).get("client")),
    ):
        if value is not None:
            parts.append(f"{label}={escape_control(str(value))}")
    return " ".join(str(p) for p in parts)
