"""radius.client (test-auth's supplicant + NAS) against the real RADIUS server machine in memory:
two peers, no sockets (radius.server.RadiusServer.handle_datagram), TLS 1.2 and 1.3,
fragments both ways, accept with MPPE keys verified, reject, wrong secret, name pinning."""

from __future__ import annotations

import ipaddress

import pytest

from radius.client import report
from radius.client.exchange import Exchange, NasOptions
from radius.client.supplicant import Supplicant, client_context, name_matches
from radius.options import EapOptions, RadiusClient
from radius.packet import Code
from radius.server import RadiusServer

SECRET = b"testing123"
ADDR = ("127.0.0.1", 40001)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def server_for(context_factory, authorize_fn):  # type: ignore[no-untyped-def]
    def make(options: EapOptions | None = None) -> RadiusServer:
        options = options or EapOptions()
        clients = [RadiusClient("nas1", ipaddress.ip_network("127.0.0.0/8"), SECRET)]
        return RadiusServer(clients, options, context_factory(options), authorize_fn,
                            monotonic=Clock())

    return make


def _exchange(pki, name: str, *, tls: str | None = None, secret: bytes = SECRET,  # type: ignore[no-untyped-def]
              fragment_size: int = 1024, server_name: str | None = "radius.test",
              trust: bool = True, retries: int = 1) -> Exchange:
    issued = pki.clients[name]
    ctx = client_context(certificate=issued.cert, private_key=issued.key, chain=issued.chain,
                         trust=[pki.root.cert] if trust else None,
                         tls_min=tls or "1.2", tls_max=tls or "1.3")
    supplicant = Supplicant(ctx, b"anonymous@example.test", fragment_size=fragment_size,
                            server_name=server_name)
    return Exchange(supplicant, NasOptions(secret=secret, user_name=b"anonymous@example.test",
                                           retries=retries, timeout=1.0))


def _drive(exchange: Exchange, server: RadiusServer, max_datagrams: int = 200) -> dict:
    """Lockstep in memory; a dropped request lets the exchange's timer run (time passed in)."""
    now = 0.0
    data = exchange.start(now)
    for _ in range(max_datagrams):
        if exchange.done:
            break
        reply = server.handle_datagram(data, ADDR) if data is not None else None
        now += 0.001
        if reply is None:
            now = exchange.deadline or now
            data = exchange.timer(now)
        else:
            data = exchange.receive(reply, now)
    assert exchange.done, "exchange did not finish"
    return report.build(exchange, server="memory", tls_requested="test", verify="verified")


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_accept_with_mppe_keys_verified_and_vlan(server_for, pki, tls) -> None:  # type: ignore[no-untyped-def]
    result = _drive(_exchange(pki, "staff-ok", tls=tls), server_for())
    assert result["result"] == "accept", result
    assert result["exit_code"] == 0
    assert result["eap"] == "success"
    assert result["mppe"] == {"recv_key": True, "send_key": True, "verified": True,
                              "detail": "MS-MPPE-Recv-Key = MSK[0:32], MS-MPPE-Send-Key = MSK[32:64]"}
    assert result["tls"]["version"] == tls
    assert result["tls"]["commitment_message"] is (True if tls == "1.3" else None)
    attrs = {a["name"]: a for a in result["reply_attributes"]}
    assert attrs["Tunnel-Private-Group-Id"]["value"] == "10"
    assert attrs["Tunnel-Type"]["label"] == "VLAN"
    assert attrs["Filter-Id"]["value"] == "staff-acl"
    assert attrs["MS-MPPE-Recv-Key"]["verified"] is True
    assert attrs["EAP-Message"]["value"].startswith("(EAP-Success")
    assert 0 < attrs["Session-Timeout"]["value"] <= 3600
    # the text a person reads says the same
    text = report.render(result)
    assert "RESULT: Access-Accept" in text and "MPPE keys OK" in text
    assert "Tunnel-Private-Group-Id = \"10\"" in text
    assert "name radius.test OK" in text


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_fragments_both_ways(server_for, pki, tls) -> None:  # type: ignore[no-untyped-def]
    server = server_for(EapOptions(fragment_size=300))
    exchange = _exchange(pki, "staff-ok", tls=tls, fragment_size=200)
    result = _drive(exchange, server)
    assert result["result"] == "accept" and result["mppe"]["verified"], result
    assert any(f["fragments"] > 1 for f in result["tls"]["server_flights"]), result["tls"]
    assert any(f["fragments"] > 1 for f in result["tls"]["client_flights"]), result["tls"]
    notes = [t["note"] for t in result["round_trips"]]
    assert "ACK of the server's fragment" in notes
    assert any("EAP-Response/TLS" in t["request"] and "ACK" in t["request"]
               for t in result["round_trips"])


def test_reject_revoked(server_for, pki) -> None:  # type: ignore[no-untyped-def]
    result = _drive(_exchange(pki, "staff-revoked"), server_for())
    assert result["result"] == "reject" and result["exit_code"] == 1
    assert result["eap"] == "failure"
    # certgate sends a TLS alert before the EAP-Failure (E9): the reason the client can see
    assert "TLS:" in result["detail"], result["detail"]
    assert "RESULT: Access-Reject" in report.render(result)


def test_wrong_secret_is_no_answer(server_for, pki) -> None:  # type: ignore[no-untyped-def]
    exchange = _exchange(pki, "staff-ok", secret=b"not-the-secret", retries=2)
    result = _drive(exchange, server_for())
    assert result["result"] == "no_answer" and result["exit_code"] == 3
    assert "3 transmission(s)" in result["detail"]
    assert result["round_trips"] == []


def test_reply_with_bad_authenticator_is_ignored(pki) -> None:  # type: ignore[no-untyped-def]
    from radius import packet as rp

    exchange = _exchange(pki, "staff-ok", retries=0)
    request = exchange.start(0.0)
    forged = rp.encode_access_request(request[1], bytes(16), b"other", [], code=Code.ACCESS_REJECT)
    assert exchange.receive(forged, 0.01) is None and not exchange.done
    assert exchange.timer(2.0) is None and exchange.outcome is not None
    assert exchange.outcome.result == "no_answer"
    assert any("wrong secret" in why for why in exchange.outcome.ignored_replies)


def test_server_name_mismatch_refused(server_for, pki) -> None:  # type: ignore[no-untyped-def]
    result = _drive(_exchange(pki, "staff-ok", server_name="radius.example.org"), server_for())
    assert result["result"] == "reject"
    assert "do not include --server-name radius.example.org" in result["detail"]
    assert result["tls"]["server_error"]


def test_untrusted_server_refused(server_for, pki) -> None:  # type: ignore[no-untyped-def]
    issued = pki.clients["staff-ok"]
    ctx = client_context(certificate=issued.cert, private_key=issued.key, chain=issued.chain,
                         trust=[pki.rogue_root.cert])
    exchange = Exchange(Supplicant(ctx, b"x"), NasOptions(secret=SECRET, user_name=b"x"))
    result = _drive(exchange, server_for())
    assert result["result"] == "reject"
    assert "does not verify" in result["detail"], result["detail"]


def test_no_verification_still_accepts(server_for, pki) -> None:  # type: ignore[no-untyped-def]
    result = _drive(_exchange(pki, "staff-ok", trust=False, server_name=None), server_for())
    assert result["result"] == "accept" and result["mppe"]["verified"]
    assert result["tls"]["server_chain"][0]["names"] == ["radius.test"]


def test_name_matching() -> None:
    assert name_matches("radius.test", "RADIUS.test.")
    assert name_matches("*.example.org", "radius.example.org")
    assert not name_matches("*.example.org", "a.b.example.org")
    assert not name_matches("*.example.org", "example.org")


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_no_client_certificate_rejected(server_for, pki, tls) -> None:  # type: ignore[no-untyped-def]
    ctx = client_context(certificate=None, private_key=None, trust=[pki.root.cert],
                         tls_min=tls, tls_max=tls)
    exchange = Exchange(Supplicant(ctx, b"nocert"), NasOptions(secret=SECRET, user_name=b"nocert"))
    result = _drive(exchange, server_for())
    assert result["result"] == "reject" and result["eap"] == "failure", result
    assert result["mppe"] is None


def test_udp_shell_closed_port_is_no_answer_with_icmp_noted(pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    from radius.client import udp

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cert, key = pki.clients["staff-ok"].write(tmp_path, "staff-ok")
    outcome, exchange = udp.authenticate("127.0.0.1", port, SECRET, ca_file=None,
                                         cert_file=str(cert), key_file=str(key),
                                         timeout=0.2, retries=1)
    assert outcome.result == "no_answer" and exchange.trips == []
    assert "2 transmission(s)" in outcome.detail
    assert any("ICMP port unreachable" in why for why in outcome.ignored_replies)


def test_reply_message_cannot_write_to_the_terminal(pki) -> None:  # type: ignore[no-untyped-def]
    from radius import packet as rp
    from radius.packet import Attr

    exchange = _exchange(pki, "staff-ok")
    sent = rp.decode(exchange.start(0.0),
                     RadiusClient("s", ipaddress.ip_network("127.0.0.0/8"), SECRET))
    hostile = b"denied\x1b[2J\nRESULT: Access-Accept"
    reply = rp.encode_reply(Code.ACCESS_REJECT, sent, SECRET, [(Attr.REPLY_MESSAGE, hostile)])
    assert exchange.receive(reply, 0.01) is None and exchange.done
    result = report.build(exchange, server="memory", tls_requested="test", verify="verified")
    assert result["reply_message"] == hostile.decode()  # JSON keeps the value (encoded safely)
    assert result["exit_code"] == 1
    text = report.render(result)
    assert "\x1b" not in text and "\nRESULT: Access-Accept" not in text
    assert "Reply-Message: denied\\x1b[2J\\x0aRESULT: Access-Accept" in text


@pytest.mark.parametrize("swap", [True, False])
def test_accept_with_wrong_or_missing_mppe_keys_is_exit_4(pki, swap) -> None:  # type: ignore[no-untyped-def]
    from radius import eap
    from radius import packet as rp
    from radius.client.supplicant import Keys

    exchange = _exchange(pki, "staff-ok")
    sent = rp.decode(exchange.start(0.0),
                     RadiusClient("s", ipaddress.ip_network("127.0.0.0/8"), SECRET))
    msk = bytes(range(64))
    exchange.supplicant.keys = Keys(msk=msk, emsk=bytes(64), session_id=b"\x0d")
    attrs = rp.eap_message_attributes(eap.success(0))
    if swap:
        attrs += rp.mppe_key_attributes(msk[32:] + msk[:32], SECRET, sent.authenticator)
    reply = rp.encode_reply(Code.ACCESS_ACCEPT, sent, SECRET, attrs)
    exchange.receive(reply, 0.01)
    result = report.build(exchange, server="memory", tls_requested="test", verify="verified")
    assert result["result"] == "accept" and result["exit_code"] == 4
    assert result["mppe"]["verified"] is False
    want = "(Send and Recv swapped)" if swap else "MS-MPPE-Recv-Key and MS-MPPE-Send-Key missing"
    assert want in result["mppe"]["detail"]
    assert "Access-Accept before our TLS handshake completed" in result["detail"]
    assert "MPPE keys WRONG" in report.render(result)
