"""Fuzz MDM webhook verification (revocation/webhook.py): the X-Certgate-Signature
value, the signed timestamp and the body. Input: one mode byte, one offset byte, then
header and body split at the first NUL (header decoded as latin-1, as HTTP carries it).

- mode 0: the header exactly as given (forgeries: acceptance requires a v1 entry that
  really is HMAC-SHA256(secret, "t." + body), checked independently here);
- mode 1: a fresh ``sign()`` header at ``now + offset`` (offset byte as signed int
  times 3 s, so both sides of the 300 s tolerance) with the fuzzed header text appended
  as further elements, so the fuzzer reaches the timestamp and body checks;
- mode 2: as 1, but signed with the old of two rotating secrets, verified against both;
- mode 3: the fuzzed header text repeated up to the 1024-character limit (linear parse).

Invariants: only WebhookRejected, each with a RejectReason whose http_status is 400
(malformed body) or 401 (everything about the signature); every verify within 50 ms;
an accepted event's fields are the body's JSON fields and sent_at is the signed t; an
accepted header never verifies a mutated body (bad_signature), nor for another secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time

from revocation.webhook import (
    DEFAULT_TOLERANCE,
    EVENTS,
    MAX_HEADER_SIZE,
    RejectReason,
    WebhookRejected,
    sign,
    verify,
)

NOW = dt.datetime.fromtimestamp(1763769600, dt.UTC)
SECRET = b"whsec_example"
OLD_SECRET = "whsec_old_rotated"
OTHER_SECRET = b"whsec_someone_else"
BUDGET = 0.05  # CPU seconds (thread_time) per verify; the header is at most 1 KiB, the body 64 KiB
_STATUS = {RejectReason.MALFORMED: 400, RejectReason.MALFORMED_SIGNATURE: 401,
           RejectReason.BAD_SIGNATURE: 401, RejectReason.STALE_TIMESTAMP: 401}


def _verify(secrets, header: str | None, body: bytes):
    started = time.thread_time()
    try:
        return verify(secrets, header, body, NOW), None
    except WebhookRejected as exc:
        assert isinstance(exc.reason, RejectReason), exc.reason
        assert exc.reason.http_status == _STATUS[exc.reason], exc.reason
        return None, exc.reason
    finally:
        elapsed = time.thread_time() - started
        assert elapsed < BUDGET, f"verify took {elapsed:.3f} s (header {len(header or '')} chars)"


def _mac(secret: bytes | str, t: str, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, t.encode() + b"." + body, hashlib.sha256).hexdigest()


def _check_accepted(event, secrets, header: str, body: bytes) -> None:
    parts = [p.strip().partition("=") for p in header.split(",")]
    ts = [v for k, _, v in parts if k == "t"]
    assert len(ts) == 1, header
    t = ts[0]
    macs = {v for k, _, v in parts if k == "v1"}
    assert any(_mac(s, t, body) in macs for s in secrets), "accepted without a matching v1"
    assert abs(int(t) - NOW.timestamp()) <= DEFAULT_TOLERANCE.total_seconds()
    assert event.sent_at == dt.datetime.fromtimestamp(int(t), dt.UTC)
    obj = json.loads(body)
    assert (event.device_id, event.event, event.event_id) == (
        obj["device_id"], obj["event"], obj["event_id"])
    assert event.event in EVENTS
    for mutated in (body + b" ", body[:-1], bytes([body[0] ^ 1]) + body[1:]):
        if mutated != body:
            _, reason = _verify(secrets, header, mutated)
            assert reason is RejectReason.BAD_SIGNATURE, ("mutated body", reason)
    _, reason = _verify(OTHER_SECRET, header, body)
    assert reason is RejectReason.BAD_SIGNATURE, ("other secret", reason)


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, offset = data[0] % 4, int.from_bytes(data[1:2], signed=True) * 3
    head, _, body = data[2:].partition(b"\x00")
    text = head.decode("latin-1")
    secrets: list[bytes | str] = [SECRET]
    if mode == 0:
        header = text
    elif mode == 3:
        header = (text * (MAX_HEADER_SIZE // max(len(text), 1) + 1))[:MAX_HEADER_SIZE] if text else text
    else:
        if mode == 2:
            secrets = [SECRET, OLD_SECRET]
        signed = sign(secrets[-1], body, NOW + dt.timedelta(seconds=offset))
        header = signed + ("," + text if text else "")
    event, _ = _verify(secrets if len(secrets) > 1 else secrets[0], header, body)
    if event is not None:
        _check_accepted(event, secrets, header, body)
    if mode == 0:
        _verify(SECRET, None, body)  # missing header: 401 malformed_signature


def _seeds() -> list[bytes]:
    good = b'{"device_id": "C02XK1ABJG5H", "event": "device-removed", "event_id": "evt_81f3"}'
    bodies = [good, b'{"device_id": "x", "event": "device-removed", "event_id": "e", "extra": [1]}',
              b'{"device_id": "", "event": "device-removed", "event_id": "e"}',
              b'{"device_id": "d", "event": "enrolled", "event_id": "e"}', b"[]", b"{", b"\xff"]
    seeds = []
    for body in bodies:
        header = sign(SECRET, body, NOW).encode()
        seeds.append(b"\x00\x00" + header + b"\x00" + body)
        seeds.append(b"\x01\x00\x00" + body)
        seeds.append(b"\x02\x05\x00" + body)
        seeds.append(b"\x01\x7f\x00" + body)  # 381 s in the future: stale
    header = sign(SECRET, good, NOW)
    seeds += [
        b"\x01\x00v0=abc,v2=def\x00" + good,
        b"\x01\x00t=1\x00" + good,
        b"\x00\x00" + header.replace("v1=", "v1=,v1=").encode() + b"\x00" + good,
        b"\x00\x00" + header.upper().encode() + b"\x00" + good,
        b"\x03\x00t=1,\x00" + good,
        b"\x03\x00v1=" + b"0" * 64 + b",\x00" + good,
        b"\x00\x00 \x00" + good,
    ]
    return seeds


SEEDS = _seeds()

if __name__ == "__main__":
    from tests.fuzz._harness import run

    run("webhook", one_input, SEEDS)
