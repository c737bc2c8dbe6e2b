"""What test-auth saw, as a JSON-ready dict and as text for a person. Pure.

The dict is the ``--json`` output (stable field names); ``render`` prints the same facts:
one line per round trip, the result with the reason, the TLS session, the reply attributes
and the MPPE key check.
"""

from __future__ import annotations

import re
import struct

from cryptography import x509

from radius import packet as rp
from radius.client.exchange import CODE_NAMES, Exchange, eap_summary
from radius.packet import Attr
from radius.reply import describe

EXIT_ACCEPT, EXIT_REJECT, EXIT_USAGE, EXIT_NO_ANSWER, EXIT_PROTOCOL = 0, 1, 2, 3, 4

_EXTRA_NAMES = {
    Attr.EAP_MESSAGE: "EAP-Message",
    Attr.MESSAGE_AUTHENTICATOR: "Message-Authenticator",
    Attr.STATE: "State",
    Attr.REPLY_MESSAGE: "Reply-Message",
    Attr.ERROR_CAUSE: "Error-Cause",
    Attr.PROXY_STATE: "Proxy-State",
}
_MPPE_NAMES = {rp.MS_MPPE_RECV_KEY: "MS-MPPE-Recv-Key", rp.MS_MPPE_SEND_KEY: "MS-MPPE-Send-Key"}


def exit_code(result: dict) -> int:
    if result["result"] == "accept":
        mppe = result.get("mppe") or {}
        return EXIT_ACCEPT if mppe.get("verified") else EXIT_PROTOCOL
    return {"reject": EXIT_REJECT, "no_answer": EXIT_NO_ANSWER}.get(result["result"], EXIT_PROTOCOL)


def _certificate(cert: x509.Certificate) -> dict:
    from radius.client.supplicant import names_of

    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:x}",
        "names": names_of(cert),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def attributes(attrs: list[tuple[int, bytes]], mppe_verified: bool | None) -> list[dict]:
    """Reply attributes by name; keys and authenticators are described, never printed."""
    out: list[dict] = []
    eap_seen = False
    for attr_type, value in attrs:
        if attr_type == Attr.EAP_MESSAGE:
            if not eap_seen:
                joined = b"".join(v for t, v in attrs if t == Attr.EAP_MESSAGE)
                out.append({"type": int(attr_type), "name": "EAP-Message",
                            "value": f"({eap_summary(joined)})"})
            eap_seen = True
            continue
        name = _EXTRA_NAMES.get(attr_type)
        if attr_type == Attr.VENDOR_SPECIFIC and len(value) >= 6:
            vendor, vtype, _ = struct.unpack_from("!IBB", value)
            if vendor == rp.VENDOR_MICROSOFT and vtype in _MPPE_NAMES:
                entry: dict = {"type": 26, "vendor": vendor, "vendor_type": vtype,
                               "name": _MPPE_NAMES[vtype], "value": f"({len(value) - 6} B encrypted)"}
                if mppe_verified is not None:
                    entry["verified"] = mppe_verified
                out.append(entry)
                continue
            out.append({"type": 26, "vendor": vendor, "vendor_type": vtype,
                        "name": f"Vendor-{vendor}-Attr-{vtype}", "value": value[6:].hex()})
            continue
        if name == "Reply-Message":
            out.append({"type": int(attr_type), "name": name,
                        "value": value.decode("utf-8", "backslashreplace")})
        elif name == "Error-Cause" and len(value) == 4:
            out.append({"type": int(attr_type), "name": name, "value": struct.unpack("!I", value)[0]})
        elif name is not None:
            out.append({"type": int(attr_type), "name": name, "value": f"({len(value)} B)"})
        else:
            out.extend(describe([(attr_type, value)]))
    return out


def build(exchange: Exchange, *, server: str, tls_requested: str, verify: str) -> dict:
    """The JSON-ready account of one finished exchange."""
    outcome = exchange.outcome
    assert outcome is not None
    s = exchange.supplicant
    trips = []
    for i, trip in enumerate(exchange.trips):
        nxt = exchange.trips[i + 1].step if i + 1 < len(exchange.trips) else None
        reply = CODE_NAMES.get(trip.reply_code, f"code {trip.reply_code}")  # type: ignore[arg-type]
        detail = nxt.request if nxt is not None else trip.reply_eap
        trips.append({
            "n": trip.number,
            "identifier": trip.identifier,
            "request": trip.step.response if trip.step else "EAP-Response/Identity (unprompted, "
                       "as a NAS relays it)",
            "request_bytes": trip.request_bytes,
            "reply": reply,
            "reply_eap": detail,
            "reply_bytes": trip.reply_bytes,
            "milliseconds": round(trip.seconds * 1000, 1),
            "retransmissions": trip.retransmissions,
            "note": (nxt.note if nxt is not None else ""),
        })
    mppe = outcome.mppe
    result: dict = {
        "server": server,
        "identity": s.identity.decode("utf-8", "backslashreplace"),
        "result": outcome.result,
        "reply_code": CODE_NAMES.get(outcome.reply_code) if outcome.reply_code else None,
        "detail": outcome.detail,
        "eap": outcome.eap_result,
        "reply_message": outcome.reply_message,
        "round_trips": trips,
        "elapsed_ms": round(((exchange.finished_at or 0) - (exchange.started or 0)) * 1000, 1),
        "tls": {
            "requested": tls_requested,
            "version": s.tls_version,
            "cipher": s.cipher,
            "handshake": s.phase.value.lower(),
            "error": s.tls_error,
            "server_flights": [{"bytes": b, "fragments": f} for b, f in s.flights.server],
            "client_flights": [{"bytes": b, "fragments": f} for b, f in s.flights.client],
            "commitment_message": s.commitment_seen if s.tls_version == "1.3" else None,
            "server_verification": verify,
            "server_name": s.server_name,
            "server_error": s.verify_error,
            "server_chain": [_certificate(c) for c in s.server_chain],
        },
        "reply_attributes": attributes(outcome.attributes, mppe.ok if mppe else None),
        "mppe": None if mppe is None else {
            "recv_key": mppe.recv_present, "send_key": mppe.send_present,
            "verified": mppe.ok, "detail": mppe.detail},
        "ignored_replies": outcome.ignored_replies,
    }
    result["exit_code"] = exit_code(result)
    return result


def _value(entry: dict) -> str:
    value = entry["value"]
    text = f"{value}" if isinstance(value, int) else f'"{value}"' if not str(value).startswith(
        "(") else str(value)
    if "label" in entry:
        text = f"{entry['label']} ({value})"
    if "tag" in entry:
        text += f" tag {entry['tag']}"
    if entry.get("verified") is True:
        text += " verified"
    elif entry.get("verified") is False:
        text += " MISMATCH"
    return text


def _accept_summary(attrs: list[dict]) -> str:
    by_name = {a["name"]: a["value"] for a in attrs}
    parts = []
    if "Tunnel-Private-Group-Id" in by_name:
        parts.append(f"VLAN {by_name['Tunnel-Private-Group-Id']}")
    if "Filter-Id" in by_name:
        parts.append(f"Filter-Id {by_name['Filter-Id']}")
    if "Session-Timeout" in by_name:
        parts.append(f"Session-Timeout {by_name['Session-Timeout']} s")
    if "User-Name" in by_name:
        parts.append(f"User-Name {by_name['User-Name']}")
    return ", ".join(parts)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(value):  # noqa: ANN001, ANN202
    """Every string (many came off the wire: Reply-Message, names, attribute values) with its
    control characters as visible escapes, so a server cannot write to the terminal."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100
                            else f"\\u{ord(m[0]):04x}", value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def render(r: dict, no_answer_hint: str = "") -> str:
    r, no_answer_hint = _escaped(r), _escaped(no_answer_hint)
    lines = [f"test-auth {r['server']} identity {r['identity']!r}, TLS {r['tls']['requested']}"]
    for t in r["round_trips"]:
        retx = f" ({t['retransmissions']} retransmission(s))" if t["retransmissions"] else ""
        lines.append(f"{t['n']:3d} -> {t['request']} [{t['request_bytes']} B]")
        lines.append(f"    <- {t['reply']} {t['reply_eap']} [{t['reply_bytes']} B] "
                     f"{t['milliseconds']} ms{retx}")
        if t["note"]:
            lines.append(f"       {t['note']}")
    tls = r["tls"]
    n = len(r["round_trips"])
    lines.append("")
    if r["result"] == "accept":
        lines.append(f"RESULT: Access-Accept after {n} round trip(s), {r['elapsed_ms']} ms")
        summary = _accept_summary(r["reply_attributes"])
        if summary:
            lines.append(f"  {summary}")
        if r["detail"]:
            lines.append(f"  warning: {r['detail']}")
    elif r["result"] == "reject":
        lines.append(f"RESULT: Access-Reject after {n} round trip(s), {r['elapsed_ms']} ms")
        lines.append(f"  reason: {r['detail'] or 'none given by the server'}")
        explained = r.get("server_explain")
        if explained and "error" in explained:
            lines.append(f"  certgate explain on this machine could not run: {explained['error']}")
        elif explained:
            lines.append(f"  certgate explain on this machine: {explained['verdict']}, reason "
                         f"{explained['reason']}: {explained['detail']}")
            if explained.get("hint"):
                lines.append(f"    {explained['hint']}")
        elif not r["detail"] or r["detail"].startswith("TLS: "):
            lines.append("  (no reason on the wire, as RFC 3579 wants with EAP; a certgate server "
                         "logs and counts it as `eap result=reject reason=...`, and "
                         "`certgate explain CERT` on it says why)")
    elif r["result"] == "no_answer":
        lines.append(f"RESULT: NO ANSWER from {r['server']}: {r['detail']}")
        if no_answer_hint:
            lines.append(f"  {no_answer_hint}")
    else:
        lines.append(f"RESULT: ERROR: {r['detail']}")
    for why, count in r["ignored_replies"].items():
        lines.append(f"  {why}: {count} time(s)")
    if tls["version"]:
        flights = ", ".join(f"{f['bytes']} B/{f['fragments']} frag" for f in tls["server_flights"])
        ours = ", ".join(f"{f['bytes']} B/{f['fragments']} frag" for f in tls["client_flights"])
        cipher = f" {tls['cipher']}" if tls["cipher"] else ""
        lines.append(f"TLS {tls['version']}{cipher} handshake {tls['handshake']}; "
                     f"server sent {flights or 'nothing'}; we sent {ours or 'nothing'}")
        if tls["commitment_message"] is not None:
            lines.append(f"  TLS 1.3 commitment message (0x00): "
                         f"{'received' if tls['commitment_message'] else 'not received'}")
    if tls["error"] and r["result"] != "reject":
        lines.append(f"  TLS error: {tls['error']}")
    if tls["server_chain"]:
        leaf = tls["server_chain"][0]
        lines.append(f"server certificate: {leaf['subject']} (issuer {leaf['issuer']}, "
                     f"names {', '.join(leaf['names'])}, until {leaf['not_after']})")
    check = tls["server_verification"]
    if tls["server_error"]:
        lines.append(f"  REFUSED: {tls['server_error']}")
    elif tls["server_chain"]:
        named = f", name {tls['server_name']} OK" if tls["server_name"] else ", name not checked"
        lines.append(f"  {check}{named if check != 'not verified' else ''}")
    if r["reply_attributes"]:
        lines.append("reply attributes:")
        for entry in r["reply_attributes"]:
            lines.append(f"  {entry['name']} = {_value(entry)}")
    mppe = r["mppe"]
    if mppe is not None:
        lines.append("MPPE keys OK" if mppe["verified"] else f"MPPE keys WRONG: {mppe['detail']}")
    return "\n".join(lines) + "\n"
