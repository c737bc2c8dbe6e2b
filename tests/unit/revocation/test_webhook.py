from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest

from revocation.webhook import (
    HEADER,
    MAX_BODY_SIZE,
    RejectReason,
    WebhookEvent,
    WebhookRejected,
    sign,
    verify,
)

T0 = dt.datetime.fromtimestamp(1763769600, dt.UTC)
SECRET = b"whsec_example"
BODY = b'{"device_id": "C02XK1ABJG5H", "event": "device-removed", "event_id": "evt_81f3"}'
S = dt.timedelta(seconds=1)


def _reason(excinfo) -> RejectReason:
    return excinfo.value.reason


class TestSign:
    def test_known_vector(self):
        # printf '%s' "1763769600.$BODY" | openssl dgst -sha256 -hmac whsec_example
        assert sign(SECRET, BODY, T0) == (
            "t=1763769600,v1=6f942e387851c839da2c3d2369811361aa807e7a60eb805d6866103623c9dc78"
        )

    def test_independent_hmac(self):
        header = sign("s3cret", b"{}", T0)
        mac = hmac.new(b"s3cret", b"1763769600.{}", hashlib.sha256).hexdigest()
        assert header == f"t=1763769600,v1={mac}"

    def test_argument_types(self):
        with pytest.raises(TypeError):
            sign(SECRET, "body", T0)
        with pytest.raises(ValueError):
            sign(b"", BODY, T0)
        with pytest.raises(ValueError):
            sign(SECRET, BODY, T0.replace(tzinfo=None))


class TestVerifyAccepts:
    def test_round_trip(self):
        event = verify(SECRET, sign(SECRET, BODY, T0), BODY, T0 + 10 * S)
        assert event == WebhookEvent("C02XK1ABJG5H", "device-removed", "evt_81f3", T0)

    @pytest.mark.parametrize("skew", [-300, 300])
    def test_tolerance_edges_inclusive(self, skew):
        verify(SECRET, sign(SECRET, BODY, T0), BODY, T0 + skew * S)

    def test_custom_tolerance(self):
        verify(SECRET, sign(SECRET, BODY, T0), BODY, T0 + 3600 * S, tolerance=dt.timedelta(hours=1))

    def test_rotation_several_secrets_and_v1s(self):
        old, new = b"old-secret", b"new-secret"
        header = sign(old, BODY, T0) + "," + sign(new, BODY, T0).split(",")[1]
        verify([new], header, BODY, T0)
        verify([old], header, BODY, T0)
        verify([b"other", new], sign(new, BODY, T0), BODY, T0)

    def test_spaces_and_unknown_keys_ignored(self):
        t, v1 = sign(SECRET, BODY, T0).split(",")
        verify(SECRET, f" {t} , v0=legacy, {v1} ", BODY, T0)
        verify(SECRET, f"{v1},{t}", BODY, T0)

    def test_extra_body_keys_ignored(self):
        body = json.dumps(
            {
                "device_id": "d",
                "event": "device-removed",
                "event_id": "e",
                "serial": "abc",
                "nested": {"x": 1},
            }
        ).encode()
        assert verify(SECRET, sign(SECRET, body, T0), body, T0).device_id == "d"


class TestVerifyRejects:
    def _reject(self, header, body=BODY, now=T0, secrets=SECRET, **kw) -> RejectReason:
        with pytest.raises(WebhookRejected) as e:
            verify(secrets, header, body, now, **kw)
        assert isinstance(e.value, ValueError)
        return _reason(e)

    @pytest.mark.parametrize("skew", [-301, 301, 86400])
    def test_stale(self, skew):
        assert self._reject(sign(SECRET, BODY, T0), now=T0 + skew * S) is (RejectReason.STALE_TIMESTAMP)

    def test_wrong_secret(self):
        assert self._reject(sign(b"nope", BODY, T0)) is RejectReason.BAD_SIGNATURE

    def test_body_tampered(self):
        assert self._reject(sign(SECRET, BODY, T0), body=BODY.replace(b"C02", b"C03")) is (
            RejectReason.BAD_SIGNATURE
        )

    def test_timestamp_tampered(self):
        v1 = sign(SECRET, BODY, T0).split(",")[1]
        assert self._reject(f"t=1763769601,{v1}") is RejectReason.BAD_SIGNATURE

    def test_signature_checked_before_timestamp(self):
        """A forged header with an old t says bad_signature, not stale_timestamp."""
        assert self._reject(sign(b"nope", BODY, T0), now=T0 + 3600 * S) is (RejectReason.BAD_SIGNATURE)

    def test_uppercase_hex_is_malformed(self):
        t, v1 = sign(SECRET, BODY, T0).split(",")
        assert (self._reject(f"{t},{v1.upper().replace('V1', 'v1')}")
                is RejectReason.MALFORMED_SIGNATURE)

    @pytest.mark.parametrize(
        "header",
        [
            None,
            "",
            "   ",
            "garbage",
            "t=1763769600",
            "v1=" + "0" * 64,
            "t=abc,v1=" + "0" * 64,
            "t=-5,v1=" + "0" * 64,
            "t=1763769600,v1=abc",
            "t=1763769600,t=1763769600,v1=" + "0" * 64,
            "t=１２３,v1=" + "0" * 64,  # non-ASCII digits
            "t=1763769600,v1=" + "0" * 64 + ",x" * 600,
        ],
    )
    def test_malformed_header(self, header):
        """Not authenticated, whatever the way: 401 like a wrong MAC (the README's promise)."""
        assert self._reject(header) is RejectReason.MALFORMED_SIGNATURE

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"\xff\xfe",
            b"[]",
            b'"device-removed"',
            b'{"event": "device-removed", "event_id": "e"}',
            b'{"device_id": "", "event": "device-removed", "event_id": "e"}',
            b'{"device_id": 5, "event": "device-removed", "event_id": "e"}',
            b'{"device_id": "d", "event": "device-enrolled", "event_id": "e"}',
            b'{"device_id": "d", "event": "device-removed"}',
            b'{"device_id": "' + b"x" * 257 + b'", "event": "device-removed", "event_id": "e"}',
            b"[" * 100000 + b"]" * 100000,
        ],
    )
    def test_malformed_body_even_when_signed(self, body):
        if len(body) > MAX_BODY_SIZE:
            body = b"[" * 30000 + b"]" * 30000  # deep nesting under the size cap
        assert self._reject(sign(SECRET, body, T0), body=body) is RejectReason.MALFORMED

    def test_body_too_large(self):
        body = b" " * (MAX_BODY_SIZE + 1)
        assert self._reject(sign(SECRET, body, T0), body=body) is RejectReason.MALFORMED

    def test_http_status(self):
        assert RejectReason.MALFORMED.http_status == 400
        assert RejectReason.MALFORMED_SIGNATURE.http_status == 401
        assert RejectReason.BAD_SIGNATURE.http_status == 401
        assert RejectReason.STALE_TIMESTAMP.http_status == 401

    def test_message_names_reason(self):
        with pytest.raises(WebhookRejected, match="^bad_signature: "):
            verify(SECRET, sign(b"x", BODY, T0), BODY, T0)


class TestOurMistakes:
    def test_arguments(self):
        header = sign(SECRET, BODY, T0)
        with pytest.raises(ValueError, match="secret"):
            verify([], header, BODY, T0)
        with pytest.raises(ValueError):
            verify(b"", header, BODY, T0)
        with pytest.raises(TypeError):
            verify(SECRET, header, BODY.decode(), T0)
        with pytest.raises(ValueError, match="timezone-aware"):
            verify(SECRET, header, BODY, T0.replace(tzinfo=None))
        with pytest.raises(ValueError, match="tolerance"):
            verify(SECRET, header, BODY, T0, tolerance=-S)

    def test_header_name(self):
        assert HEADER == "X-Certgate-Signature"


class TestComplianceEvents:
    """device-noncompliant / device-compliant and the optional occurred_at that orders them."""

    def _verify(self, **fields):
        body = json.dumps({"device_id": "dev-1", "event_id": "e1", **fields}).encode()
        return verify(SECRET, sign(SECRET, body, T0), body, T0)

    def test_events_and_default_time(self):
        for name in ("device-noncompliant", "device-compliant", "device-removed"):
            event = self._verify(event=name)
            assert event.event == name and event.occurred_at is None
            assert event.event_time == T0  # the signed t orders it

    @pytest.mark.parametrize(("value", "expected"), [
        ("2025-11-21T23:59:59.250Z", dt.datetime(2025, 11, 21, 23, 59, 59, 250000, dt.UTC)),
        ("2025-11-22T00:59:59+01:00", dt.datetime(2025, 11, 21, 23, 59, 59, tzinfo=dt.UTC)),
        (1763769000, dt.datetime.fromtimestamp(1763769000, dt.UTC)),
        (1763769000.5, dt.datetime.fromtimestamp(1763769000.5, dt.UTC)),
    ])
    def test_occurred_at(self, value, expected):
        event = self._verify(event="device-noncompliant", occurred_at=value)
        assert event.occurred_at == expected and event.event_time == expected

    @pytest.mark.parametrize(("value", "words"), [
        ("yesterday", "RFC 3339"), ("2025-11-21T23:59:59", "offset"), (True, "RFC 3339"),
        (-1, "Unix time"), ([1], "RFC 3339"), ("2099-01-01T00:00:00Z", "future"),
        ("x" * 65, "longer"),
    ])
    def test_bad_occurred_at_is_malformed(self, value, words):
        with pytest.raises(WebhookRejected) as e:
            self._verify(event="device-compliant", occurred_at=value)
        assert _reason(e) is RejectReason.MALFORMED and words in e.value.detail
