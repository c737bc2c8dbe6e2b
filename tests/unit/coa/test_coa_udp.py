"""send_disconnect against real UDP responders on 127.0.0.1 (replies made with pyrad)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import pytest
from pyrad import packet as rp

from radius.coa import CoaResult, Session, send_disconnect

SECRET = b"coa-secret"
SESSION = Session(nas_ip_address="127.0.0.1", calling_station_id="AA-BB-CC-DD-EE-FF")
T0 = dt.datetime.fromtimestamp(1763769600, dt.UTC)
# Short windows keep the suite quick; no assertion depends on elapsed time.
FAST = {"timeout": 0.1, "backoff": 1.5}

Answer = Callable[[rp.CoAPacket, int], list[bytes]]


class Das(asyncio.DatagramProtocol):
    """A NAS's Dynamic Authorization Server: verifies requests with pyrad, answers via
    ``answer(request, n)`` (n = 1-based datagram count) with zero or more datagrams."""

    def __init__(self, rad_dict, answer: Answer) -> None:
        self.rad_dict = rad_dict
        self.answer = answer
        self.received: list[bytes] = []
        self.valid: list[bool] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.received.append(data)
        req = rp.CoAPacket(packet=data, secret=SECRET, dict=self.rad_dict)
        ok = req.VerifyCoARequest() and req.verify_message_authenticator()
        self.valid.append(ok)
        if ok:
            for out in self.answer(req, len(self.received)):
                self.transport.sendto(out, addr)


def reply(
    req: rp.CoAPacket,
    code: int = rp.DisconnectACK,
    *,
    secret: bytes = SECRET,
    error_cause: int | None = None,
    ma: bool = True,
) -> bytes:
    r = req.CreateReply()
    r.code = code
    r.secret = secret
    if error_cause is not None:
        r["Error-Cause"] = error_cause
    if ma:
        r.add_message_authenticator()
    return r.ReplyPacket()


@pytest.fixture
async def das(rad_dict):
    loop = asyncio.get_running_loop()
    transports = []

    async def start(answer: Answer) -> tuple[Das, int]:
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Das(rad_dict, answer), local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        return proto, transport.get_extra_info("sockname")[1]

    yield start
    for t in transports:
        t.close()


async def test_ack(das):
    proto, port = await das(lambda req, n: [reply(req)])
    result = await send_disconnect("127.0.0.1", port, SECRET, SESSION, now=T0)
    assert result == CoaResult("ack", None, attempts=1, ignored=0)
    assert proto.valid == [True]


async def test_nak_with_error_cause(das):
    _, port = await das(lambda req, n: [reply(req, rp.DisconnectNAK, error_cause=503)])
    result = await send_disconnect(
        "127.0.0.1", port, SECRET, SESSION, now=T0, require_message_authenticator=True
    )
    assert (result.result, result.error_cause) == ("nak", 503)


async def test_retransmits_identical_packet_after_drops(das):
    proto, port = await das(lambda req, n: [reply(req)] if n >= 3 else [])
    result = await send_disconnect("127.0.0.1", port, SECRET, SESSION, retries=3, **FAST)
    assert (result.result, result.attempts) == ("ack", 3)
    assert len(proto.received) == 3 and len(set(proto.received)) == 1


async def test_gives_up_after_retries(das):
    proto, port = await das(lambda req, n: [])
    result = await send_disconnect("127.0.0.1", port, SECRET, SESSION, retries=2, **FAST)
    assert result == CoaResult("timeout", None, attempts=2, ignored=0)
    assert len(proto.received) == 2


async def test_wrong_authenticator_ignored(das):
    """A reply signed with another secret is ignored: the client times out."""
    proto, port = await das(lambda req, n: [reply(req, secret=b"not-the-secret")])
    result = await send_disconnect("127.0.0.1", port, SECRET, SESSION, retries=3, **FAST)
    assert (result.result, result.attempts, result.ignored) == ("timeout", 3, 3)
    assert len(set(proto.received)) == 1


async def test_invalid_reply_then_valid_one(das):
    """Forged/garbled datagrams before the real answer don't end the wait."""
    _, port = await das(
        lambda req, n: [
            b"junk",
            reply(req, secret=b"forged"),
            reply(req, rp.DisconnectNAK, error_cause=501),
        ]
    )
    result = await send_disconnect("127.0.0.1", port, SECRET, SESSION, **FAST)
    assert result == CoaResult("nak", 501, attempts=1, ignored=2)


async def test_duplicate_acks_harmless(das):
    _, port = await das(lambda req, n: [reply(req), reply(req)])
    result = await send_disconnect("127.0.0.1", port, SECRET, SESSION, **FAST)
    assert result.result == "ack"


async def test_required_message_authenticator_missing_is_ignored(das):
    _, port = await das(lambda req, n: [reply(req, ma=False)])
    result = await send_disconnect(
        "127.0.0.1", port, SECRET, SESSION, retries=1, **FAST, require_message_authenticator=True
    )
    assert (result.result, result.ignored) == ("timeout", 1)
    ok = await send_disconnect("127.0.0.1", port, SECRET, SESSION, retries=1, **FAST)
    assert ok.result == "ack"


async def test_nobody_listening(das):
    # bind then close to get a port with (very likely) no listener: ICMP unreachable
    # surfaces as error_received and must not crash the sender
    proto, port = await das(lambda req, n: [])
    proto.transport.close()
    result = await send_disconnect("127.0.0.1", port, SECRET, SESSION, retries=2, **FAST)
    assert result.result == "timeout"


async def test_argument_checks():
    with pytest.raises(ValueError, match="retries"):
        await send_disconnect("127.0.0.1", 3799, SECRET, SESSION, retries=0)
    with pytest.raises(ValueError, match="timeout"):
        await send_disconnect("127.0.0.1", 3799, SECRET, SESSION, timeout=0)


async def test_coa_ack_nak_and_source_address(das):
    from radius.coa import send_coa
    from radius.dynamic_auth import authorization

    seen: list[tuple[int, str]] = []

    def answer(req, n):
        seen.append((req.code, req["Tunnel-Private-Group-Id"][0]))
        return [reply(req, rp.CoAACK if n == 1 else rp.CoANAK, error_cause=None if n == 1 else 401)]

    proto, port = await das(answer)
    change = authorization("999", None)
    ok = await send_coa("127.0.0.1", port, SECRET, SESSION, change, source="127.0.0.1", **FAST)
    assert ok == CoaResult("ack", None, 1, 0)
    nak = await send_coa("127.0.0.1", port, SECRET, SESSION, change, **FAST)
    assert (nak.result, nak.error_cause) == ("nak", 401)
    assert seen == [(rp.CoARequest, "999")] * 2
    # a Disconnect-ACK is not an answer to a CoA-Request: ignored, then timeout
    proto.answer = lambda req, n: [reply(req, rp.DisconnectACK)]
    wrong = await send_coa("127.0.0.1", port, SECRET, SESSION, change, retries=1, **FAST)
    assert (wrong.result, wrong.ignored) == ("timeout", 1)
    with pytest.raises(OSError):  # not an address of this host
        await send_coa("127.0.0.1", port, SECRET, SESSION, change, source="192.0.2.1", **FAST)
