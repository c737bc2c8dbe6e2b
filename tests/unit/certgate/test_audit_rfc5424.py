"""RFC 5424 formatting of audit events: header fields, structured data escaping and
names, severity mapping, size bound with truncation that never splits an event."""

from __future__ import annotations

import datetime as dt

import pytest

from certgate.audit import events, rfc5424
from tests.syslog_support import flat_strings, parse

NOW = dt.datetime(2026, 12, 7, 12, 30, 15, 123000, tzinfo=dt.UTC)


def _auth(accepted: bool = False, **kw: object) -> dict:
    args = dict(now=NOW, accepted=accepted, reason="ok" if accepted else "revoked",
                client="ap-1", group="staff", tls_version="1.3",
                calling_station="AA-BB-CC-DD-EE-FF", identity="laptop-01", serial=0x1A2B,
                resumed=False, round_trips=7, duration_ms=12.34, detail="", node="n1:1812")
    args.update(kw)
    return events.authentication(**args)


def _fmt(ev: dict, **kw: object) -> bytes:
    return rfc5424.format_message(ev, hostname="node-1", procid=4242, **kw)


def test_header_and_every_field_in_structured_data() -> None:
    ev = _auth(accepted=False)
    p = parse(_fmt(ev))
    assert p.pri == 10 * 8 + 4  # authpriv.warning: a rejected authentication
    assert (p.version, p.timestamp, p.hostname, p.app_name, p.procid, p.msgid) == (
        "1", "2026-12-07T12:30:15.123+00:00", "node-1", "certgate", "4242",
        "radius-authentication")
    assert p.sd_id == "certgate@32473"
    assert dict(p.params) == flat_strings(ev)
    assert len(p.params) == len(flat_strings(ev))  # each field once
    assert ("event.category", '["authentication"]') in p.params
    assert ("certgate.radius.round_trips", "7") in p.params
    assert ("certgate.radius.resumed", "false") in p.params
    assert ("radius.calling_station_id", "AA-BB-CC-DD-EE-FF") in p.params  # 35 > 32 octets
    assert p.msg == (b"radius-authentication failure reason=revoked user=laptop-01 "
                     b"group=staff serial=1A2B")


@pytest.mark.parametrize(("facility", "level", "outcome", "expected"), [
    ("authpriv", "info", "success", 86), ("auth", "warning", "failure", 36),
    ("local3", "error", "failure", 155), ("daemon", None, "failure", 28),
    ("user", None, "success", 14), ("kern", "bogus", "unknown", 6),
])
def test_pri_from_facility_and_severity(facility: str, level: str | None, outcome: str,
                                        expected: int) -> None:
    ev: dict = {"event": {"action": "x", "outcome": outcome}}
    if level:
        ev["log"] = {"level": level}
    assert parse(_fmt(ev, facility=facility)).pri == expected


def test_values_are_escaped_and_utf8_and_msgid_is_sanitised() -> None:
    nasty = 'a "quoted" \\back\\ ]bracket] new\nline é'
    ev = {"@timestamp": "2026-12-07T13:00:00.5+01:00",
          "event": {"action": "weird action ü with a very long name beyond 32 chars",
                    "outcome": "success"},
          "user": {"name": nasty}}
    raw = _fmt(ev)
    assert b'\\"quoted\\" \\\\back\\\\ \\]bracket\\] new\nline \xc3\xa9' in raw
    p = parse(raw)
    assert dict(p.params)["user.name"] == nasty
    assert p.msgid == "weird_action___with_a_very_long_"[:32] and len(p.msgid) == 32
    assert p.timestamp == "2026-12-07T13:00:00.500+01:00"
    assert p.msg.startswith(rfc5424.BOM)  # non-ASCII MSG: UTF-8 with BOM
    assert "\n" not in p.msg.decode("utf-8")  # the human line stays one line


def test_no_timestamp_uses_the_time_passed_in_and_nil_without_either() -> None:
    ev = {"event": {"action": "a"}}
    assert parse(_fmt(ev, now=NOW)).timestamp == "2026-12-07T12:30:15.123+00:00"
    assert parse(_fmt(ev)).timestamp == "-"
    assert parse(_fmt({"@timestamp": "not a time", "event": {"action": "a"}})).timestamp == "-"


def test_param_names_forbidden_chars_and_long_names() -> None:
    long_a = "x." + "a" * 40
    long_b = "x." + "a" * 41
    ev = {"event": {"action": "a"}, "we ird=na]me\"": "v", long_a: "1", long_b: "2"}
    names = [n for n, _ in parse(_fmt(ev)).params]
    assert "we_ird_na_me_" in names
    shortened = [n for n in names if "~" in n]
    assert len(shortened) == 2 and len(set(shortened)) == 2
    assert all(len(n) == 32 and n.startswith("x.aaaaaaaaaaaaaaaaaaaaa~") for n in shortened)
    assert rfc5424.param_name(long_a) == rfc5424.param_name(long_a)  # stable


def test_a_big_event_is_cut_not_split_and_says_what_was_cut() -> None:
    ev = _auth(detail="x" * 5000)
    ev["certgate"]["other"] = "é" * 3000
    raw = _fmt(ev)
    assert len(raw) <= rfc5424.UDP_MAX_SIZE
    p = parse(raw)
    got = dict(p.params)
    cut = set(got[rfc5424.TRUNCATED_PARAM].split())
    assert cut == {"certgate.radius.detail", "certgate.other"}
    assert got["certgate.radius.detail"].endswith("...")
    want = flat_strings(ev)
    for name, value in got.items():  # everything else is intact
        if name not in cut and name != rfc5424.TRUNCATED_PARAM:
            assert value == want[name]
    assert p.msgid == "radius-authentication"
    big = _fmt(ev, max_size=rfc5424.STREAM_MAX_SIZE)
    assert len(big) <= rfc5424.STREAM_MAX_SIZE and rfc5424.TRUNCATED_PARAM.encode() in big


def test_too_many_fields_drops_whole_params_and_lists_them() -> None:
    ev = {"event": {"action": "a"}, "f": {f"k{i:03d}": "v" * 10 for i in range(300)}}
    raw = _fmt(ev)
    assert len(raw) <= rfc5424.UDP_MAX_SIZE
    got = dict(parse(raw).params)
    assert got["event.action"] == "a"
    listed = set(got[rfc5424.TRUNCATED_PARAM].split())
    assert "f.k000" in got and "f.k299" not in got  # the last fields go, the first stay
    assert "f.k298" not in listed  # the list itself is bounded (256 characters) ...
    assert got[rfc5424.TRUNCATED_PARAM].endswith("...")  # ... and says so
    assert all(n.startswith("f.k") for n in listed - {"f..."})
    assert all(got[k] == "v" * 10 for k in got if k.startswith("f."))


def test_bad_parameters_are_typed_errors() -> None:
    with pytest.raises(rfc5424.FormatError, match="facility"):
        _fmt({}, facility="local9")
    for bad in ("certgate", "certgate@", "cert gate@1", "x@12a", "a@1@2", "a" * 30 + "@1234"):
        with pytest.raises(rfc5424.FormatError, match="SD-ID"):
            rfc5424.check_sd_id(bad)
    assert rfc5424.check_sd_id("certgate@32473.1.2") == "certgate@32473.1.2"
    with pytest.raises(rfc5424.FormatError, match="480"):
        _fmt({}, max_size=100)


def test_custom_sd_id_and_octet_counting() -> None:
    raw = _fmt({"event": {"action": "a"}}, sd_id="certgate@99999")
    assert parse(raw).sd_id == "certgate@99999"
    assert rfc5424.octet_counted(b"ab\ncd") == b"5 ab\ncd"
