"""Property tests (hypothesis, bounded) for the RADIUS codec and EAP-TLS framing: what
one side encodes the other decodes to the same thing, any altered octet of a signed
packet is refused with a typed drop reason, and the buffer budget always balances."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radius import fragments as frag
from radius import packet as rp
from radius.buffers import BufferBudget
from radius.options import RadiusClient

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = b"property-secret"
CLIENT = RadiusClient("p", ipaddress.ip_network("127.0.0.0/8"), SECRET)

# Any attribute but Message-Authenticator (80), which encode_access_request adds itself.
attribute = st.tuples(
    st.integers(1, 255).filter(lambda t: t != rp.Attr.MESSAGE_AUTHENTICATOR),
    st.binary(max_size=rp.MAX_ATTR_VALUE),
)
attributes = st.lists(attribute, max_size=12).filter(
    lambda attrs: 20 + 18 + sum(2 + len(v) for _, v in attrs) <= rp.MAX_LENGTH)


@SETTINGS
@given(identifier=st.integers(0, 255), authenticator=st.binary(min_size=16, max_size=16),
       attrs=attributes, padding=st.binary(max_size=32))
def test_signed_request_decodes_to_what_was_encoded(identifier, authenticator, attrs, padding):
    datagram = rp.encode_access_request(identifier, authenticator, SECRET, attrs)
    request = rp.decode(datagram + padding, CLIENT)  # octets past Length are ignored
    assert request.identifier == identifier and request.authenticator == authenticator
    assert request.has_message_authenticator
    assert [a for a in request.attributes if a[0] != rp.Attr.MESSAGE_AUTHENTICATOR] == attrs
    eap = [v for t, v in attrs if t == rp.Attr.EAP_MESSAGE]
    assert request.eap_message == (b"".join(eap) if eap else None)
    assert list(request.proxy_state) == [v for t, v in attrs if t == rp.Attr.PROXY_STATE]


@SETTINGS
@given(attrs=attributes, data=st.data())
def test_any_altered_octet_is_refused_with_a_drop_reason(attrs, data):
    datagram = bytearray(rp.encode_access_request(1, bytes(16), SECRET, attrs))
    position = data.draw(st.integers(0, len(datagram) - 1))
    datagram[position] ^= data.draw(st.integers(1, 255))
    try:
        request = rp.decode(bytes(datagram), CLIENT)
    except rp.MalformedPacket as exc:
        assert isinstance(exc.reason, rp.DropReason)
        return
    # The Message-Authenticator covers every octet up to Length (the Length field too).
    raise AssertionError(f"altered octet {position} decoded: {request}")


@SETTINGS
@given(attrs=attributes, identifier=st.integers(0, 255),
       reply_attrs=st.lists(attribute, max_size=6))
def test_reply_round_trip_keeps_proxy_state_last_and_in_order(attrs, identifier, reply_attrs):
    request = rp.decode(rp.encode_access_request(identifier, bytes(range(16)), SECRET, attrs), CLIENT)
    reply_attrs = [(t, v) for t, v in reply_attrs if t != rp.Attr.PROXY_STATE]
    try:
        reply = rp.encode_reply(rp.Code.ACCESS_ACCEPT, request, SECRET, reply_attrs)
    except rp.PacketTooLarge:
        return
    decoded = rp.decode_reply(reply, SECRET, request.authenticator)
    assert decoded.identifier == identifier and decoded.code == rp.Code.ACCESS_ACCEPT
    assert decoded.attributes[0][0] == rp.Attr.MESSAGE_AUTHENTICATOR  # first (R4)
    n = len(request.proxy_state)
    tail = [v for _, v in decoded.attributes[len(decoded.attributes) - n:]] if n else []
    assert tail == list(request.proxy_state)


@SETTINGS
@given(message=st.binary(min_size=1, max_size=20_000), size=st.integers(64, 1400),
       peer_size=st.integers(1, 1400))
def test_fragmenter_and_reassembler_round_trip_within_budget(message, size, peer_size):
    sender = frag.Fragmenter(size)
    payloads = [sender.start(message)]
    while sender.state is frag.FragState.WAIT_FRAG_ACK:
        payloads.append(sender.next_fragment())
    assert all(len(p) <= size + 5 for p in payloads)
    budget = BufferBudget(1 << 20)
    receiver = frag.Reassembler(account=budget.account("nas"))
    results = [receiver.feed(frag.parse_payload(p)) for p in payloads]
    assert results[-1] == message and all(r is None for r in results[:-1])
    assert budget.used == 0  # the reservation is given back on completion
    # The peer's own fragmentation (no L bit after the first) reassembles the same.
    chunks = [message[i:i + peer_size] for i in range(0, len(message), peer_size)]
    for i, chunk in enumerate(chunks):
        more = i < len(chunks) - 1
        payload = frag.build_payload(frag.FLAG_MORE if more else 0, chunk,
                                     len(message) if i == 0 and more else None)
        out = receiver.feed(frag.parse_payload(payload))
        assert out == (None if more else message)
    assert budget.used == 0


@SETTINGS
@given(fragments=st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300),
                                    st.one_of(st.none(), st.integers(0, 1 << 17))), max_size=20))
def test_hostile_fragments_fail_typed_and_never_leak_the_budget(fragments):
    budget = BufferBudget(1 << 20)
    receiver = frag.Reassembler(account=budget.account("nas"))
    for flags, data, total in fragments:
        try:
            receiver.feed(frag.parse_payload(frag.build_payload(flags & ~frag.FLAG_LENGTH, data, total)))
        except frag.FragmentError:
            assert not receiver.in_progress
        assert budget.used <= frag.MAX_MESSAGE
    receiver.reset()
    assert budget.used == 0
