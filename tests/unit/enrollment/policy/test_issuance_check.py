"""enrollment.issuance_check: the request body, the decision on the MDM's answer, device ids."""

from __future__ import annotations

import json

import pytest

from enrollment.issuance_check import (
    MAX_ANSWER_BYTES,
    IssuanceQuery,
    IssuanceReason,
    IssuanceRejected,
    decide,
    device_id_for,
    failure,
    parse_device_id_source,
    request_body,
)
from enrollment.policy import CsrFacts


def facts(cn: str | None = "laptop-01", sans: tuple[str, ...] = ()) -> CsrFacts:
    return CsrFacts(subject=f"CN={cn}" if cn else "", subject_cn=cn, sans=sans, ekus=(),
                    key_type="ec", key_bits=256, key_spec="ec-p256", rsa_exponent=None,
                    requests_ca=False, challenge_password="x", spki_sha256=bytes(range(32)),
                    signature_valid=True)


def test_request_body_is_the_documented_shape() -> None:
    q = IssuanceQuery.of("staff", "enrollment", "C02XK1", facts(sans=("dns:l.example",)), "tx1")
    body = json.loads(request_body(q, "rid"))
    assert body == {"version": 1, "request_id": "rid", "group": "staff", "kind": "enrollment",
                    "device_id": "C02XK1", "subject": "CN=laptop-01", "subject_cn": "laptop-01",
                    "sans": ["dns:l.example"], "key_type": "ec-p256",
                    "key_fingerprint": "sha256:" + bytes(range(32)).hex(), "transaction_id": "tx1"}
    with pytest.raises(ValueError):
        request_body(IssuanceQuery.of("staff", "enrollment", None, facts(), "tx1"), "rid")


@pytest.mark.parametrize("status,body,allowed,result,reason", [
    (200, b'{"decision": "allow"}', True, "allowed", None),
    (200, b'{"decision": "allow", "request_id": "rid"}', True, "allowed", None),
    (200, b'{"decision": "deny", "reason": "lost"}', False, "denied", IssuanceReason.DENIED),
    (403, b'{"decision": "deny"}', False, "denied", IssuanceReason.DENIED),
    (500, b'{"decision": "deny"}', False, "denied", IssuanceReason.DENIED),
    (200, b'{"decision": "allow", "request_id": "other"}', False, "bad_answer",
     IssuanceReason.BAD_ANSWER),
    (201, b'{"decision": "allow"}', False, "bad_answer", IssuanceReason.BAD_ANSWER),
    (403, b"forbidden", False, "bad_answer", IssuanceReason.BAD_ANSWER),
    (302, b"", False, "bad_answer", IssuanceReason.BAD_ANSWER),
    (503, b"", False, "unavailable", IssuanceReason.UNAVAILABLE),
    (429, b"", False, "unavailable", IssuanceReason.UNAVAILABLE),
    (200, b'{"decision": "ALLOW"}', False, "bad_answer", IssuanceReason.BAD_ANSWER),
    (200, b'{"decision": true}', False, "bad_answer", IssuanceReason.BAD_ANSWER),
    (200, b'["allow"]', False, "bad_answer", IssuanceReason.BAD_ANSWER),
    (200, b"allow", False, "bad_answer", IssuanceReason.BAD_ANSWER),
    (200, b"\xff\xfe", False, "bad_answer", IssuanceReason.BAD_ANSWER),
    (200, b"", False, "bad_answer", IssuanceReason.BAD_ANSWER),
    (200, b"[" * 100_000, False, "bad_answer", IssuanceReason.BAD_ANSWER),
])
def test_only_an_explicit_allow_allows(status, body, allowed, result, reason) -> None:
    d = decide(status, body, "rid")
    assert (d.allowed, d.result, d.reason) == (allowed, result, reason)


def test_fail_open_applies_to_errors_never_to_a_deny() -> None:
    d = decide(503, b"", "rid", fail_open=True)
    assert d.allowed and d.result == "failed_open" and d.reason is IssuanceReason.UNAVAILABLE
    d = decide(200, b'{"decision": "deny"}', "rid", fail_open=True)
    assert not d.allowed and d.result == "denied"
    with pytest.raises(ValueError):
        failure(IssuanceReason.DENIED, "x", fail_open=True)
    big = decide(200, b'{"decision": "allow"}', "rid", truncated=True)
    assert not big.allowed and big.result == "bad_answer" and str(MAX_ANSWER_BYTES) in big.detail


def test_deny_reason_is_printable_and_bounded() -> None:
    d = decide(200, json.dumps({"decision": "deny", "reason": "a\nb" + "x" * 1000}).encode(), "r")
    assert "\n" not in d.detail and len(d.detail) == 256
    rejection = d.rejection()
    assert isinstance(rejection, IssuanceRejected) and rejection.result == "denied"


def test_device_id_sources() -> None:
    assert str(parse_device_id_source("san:uri:IntuneDeviceId://")) == "san:uri:IntuneDeviceId://"
    for bad in ("cn", "san", "san:x400", ""):
        with pytest.raises(ValueError, match="subject_cn"):
            parse_device_id_source(bad)
    challenge = parse_device_id_source("challenge")
    assert device_id_for(challenge, "D1", facts()) == "D1"
    assert device_id_for(challenge, None, facts()) is None
    cn = parse_device_id_source("subject_cn")
    assert device_id_for(cn, None, facts("C02")) == "C02"
    assert device_id_for(cn, "C02", facts("C02")) == "C02"
    assert device_id_for(cn, "D9", facts(None)) == "D9"  # the CSR names none: the challenge's
    with pytest.raises(IssuanceRejected) as exc:
        device_id_for(cn, "OTHER", facts("C02"))
    assert exc.value.reason is IssuanceReason.DEVICE_ID_MISMATCH
    intune = parse_device_id_source("san:uri:IntuneDeviceId://")
    f = facts(sans=("dns:a.example", "uri:IntuneDeviceId://1234-abcd"))
    assert device_id_for(intune, None, f) == "1234-abcd"
    assert device_id_for(intune, None, facts(sans=("uri:IntuneDeviceId://",))) is None
    with pytest.raises(IssuanceRejected):
        device_id_for(cn, None, facts("x" * 300))
