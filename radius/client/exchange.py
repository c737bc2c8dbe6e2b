"""The NAS side of one EAP-TLS authentication: Access-Requests out, replies in, a verdict.

Pure and lockstep, in aioquic's shape: ``start(now)`` gives the first datagram,
``receive(data, now)`` the next one (or None: finished, or the datagram was ignored),
``timer(now)`` a retransmission of the same bytes (or None: gave up), ``deadline`` when to
call it. Every request carries Message-Authenticator (RFC 3579, Blast-RADIUS); replies are
checked with radius.packet.decode_reply (Response Authenticator and Message-Authenticator).
A reply that fails the check is ignored, not trusted, and counted: with a wrong secret a
server answers nothing (it drops the request) or answers with authenticators we reject,
and the outcome says which.

On Access-Accept the MS-MPPE-Recv/Send-Key attributes are decrypted with the secret and
the authenticator of the request they answer (RFC 2548 §2.4) and compared with the MSK the
supplicant derived from its own TLS session: MS-MPPE-Recv-Key = MSK[0:32],
MS-MPPE-Send-Key = MSK[32:64] (RFC 5216 §2.3).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from radius import eap
from radius import packet as rp
from radius.client.supplicant import Phase, ProtocolError, Step, Supplicant
from radius.packet import Attr, Code, MalformedPacket

NAS_PORT_TYPE_WIRELESS = 19  # Wireless-802.11 (RFC 2865 §5.41)
CODE_NAMES = {Code.ACCESS_ACCEPT: "Access-Accept", Code.ACCESS_REJECT: "Access-Reject",
              Code.ACCESS_CHALLENGE: "Access-Challenge", Code.ACCESS_REQUEST: "Access-Request"}


@dataclass(frozen=True, slots=True)
class NasOptions:
    secret: bytes
    user_name: bytes
    nas_ip: str | None = "127.0.0.1"
    calling_station: str = "02-00-00-00-00-01"
    called_station: str = "02-00-00-00-00-00:certgate-test-auth"
    nas_identifier: str = "certgate-test-auth"
    framed_mtu: int = 1400
    timeout: float = 3.0  # seconds to wait for each reply before retransmitting
    retries: int = 2  # retransmissions of one request before giving up
    max_round_trips: int = 60


@dataclass(frozen=True, slots=True)
class RoundTrip:
    number: int
    identifier: int
    request_bytes: int
    step: Step | None  # None for the first request (our Identity, unprompted)
    reply_code: int | None = None
    reply_bytes: int = 0
    reply_eap: str = ""
    seconds: float = 0.0
    retransmissions: int = 0


@dataclass(frozen=True, slots=True)
class MppeCheck:
    recv_present: bool
    send_present: bool
    ok: bool  # both present and equal to the keys derived from our TLS session
    detail: str


@dataclass
class Outcome:
    result: str  # "accept" | "reject" | "no_answer" | "error"
    detail: str = ""
    reply_code: int | None = None
    attributes: list[tuple[int, bytes]] = field(default_factory=list)
    reply_message: str | None = None
    eap_result: str | None = None  # "success" | "failure" | None (no EAP-Message)
    mppe: MppeCheck | None = None
    ignored_replies: dict[str, int] = field(default_factory=dict)


@dataclass
class _Pending:
    identifier: int
    authenticator: bytes
    data: bytes
    sent: float  # first transmission
    step: Step | None
    last_sent: float = 0.0
    retransmissions: int = 0


def eap_summary(message: bytes | None) -> str:
    if message is None:
        return ""
    try:
        p = eap.parse(message)
    except eap.MalformedEap as e:
        return f"malformed EAP ({e})"
    names = {eap.EapCode.SUCCESS: "EAP-Success", eap.EapCode.FAILURE: "EAP-Failure"}
    if p.code in names:
        return f"{names[p.code]} id={p.identifier}"
    return f"EAP-{'Request' if p.code == eap.EapCode.REQUEST else 'Response'}/type-{p.type}"


class Exchange:
    """One authentication: a Supplicant behind a NAS that talks RADIUS to the server."""

    def __init__(self, supplicant: Supplicant, options: NasOptions,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        self.supplicant = supplicant
        self.options = options
        self.trips: list[RoundTrip] = []
        self.outcome: Outcome | None = None
        self.started: float | None = None
        self.finished_at: float | None = None
        self._random = random
        self._identifier = random(1)[0]
        self._state: bytes | None = None
        self._pending: _Pending | None = None
        self._ignored: dict[str, int] = {}

    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def deadline(self) -> float | None:
        p = self._pending
        return None if p is None or self.done else p.last_sent + self.options.timeout

    # --- entry points ----------------------------------------------------------------

    def start(self, now: float) -> bytes:
        self.started = now
        identity = eap.response(0, eap.EapType.IDENTITY, self.supplicant.identity)
        return self._request(identity, None, now)

    def receive(self, data: bytes, now: float) -> bytes | None:
        """A datagram from the server: the next request, or None (finished or ignored)."""
        p = self._pending
        if p is None or self.done:
            return None
        if len(data) >= 2 and data[1] != p.identifier:
            return self._ignore("late or duplicate reply (identifier of an earlier request)")
        try:
            reply = rp.decode_reply(data, self.options.secret, p.authenticator)
        except MalformedPacket as e:
            return self._ignore(f"{e.detail} check failed (wrong secret?)"
                                if e.reason is rp.DropReason.BAD_AUTHENTICATOR else
                                f"malformed: {e.detail}")
        if reply.code in (Code.ACCESS_CHALLENGE, Code.ACCESS_ACCEPT, Code.ACCESS_REJECT) and \
                reply.eap_message is not None and reply.get(Attr.MESSAGE_AUTHENTICATOR) is None:
            return self._ignore("EAP-Message without Message-Authenticator (RFC 3579 §3.2)")
        self._pending = None
        self.trips.append(RoundTrip(
            number=len(self.trips) + 1, identifier=p.identifier, request_bytes=len(p.data),
            step=p.step, reply_code=reply.code, reply_bytes=len(data),
            reply_eap=eap_summary(reply.eap_message), seconds=now - p.sent,
            retransmissions=p.retransmissions))
        if reply.code == Code.ACCESS_CHALLENGE:
            return self._challenge(reply, now)
        if reply.code == Code.ACCESS_ACCEPT:
            self._finish(self._accept(reply, p.authenticator), now)
        elif reply.code == Code.ACCESS_REJECT:
            self._finish(self._reject(reply), now)
        else:
            self._finish(Outcome("error", f"unexpected reply code {reply.code}",
                                 reply_code=reply.code, attributes=list(reply.attributes)), now)
        return None

    def timer(self, now: float) -> bytes | None:
        """The deadline passed: the same datagram again, or None when out of retries."""
        p = self._pending
        if p is None or self.done:
            return None
        if p.retransmissions >= self.options.retries:
            waited = now - p.sent
            detail = (f"no answer to request {len(self.trips) + 1} after {p.retransmissions + 1} "
                      f"transmission(s) over {waited:.1f} s")
            self._finish(Outcome("no_answer", detail), now)
            return None
        p.retransmissions += 1
        p.last_sent = now
        return p.data

    # --- steps -----------------------------------------------------------------------

    def _challenge(self, reply: rp.Reply, now: float) -> bytes | None:
        if reply.eap_message is None:
            self._finish(Outcome("error", "Access-Challenge without EAP-Message",
                                 reply_code=reply.code), now)
            return None
        if len(self.trips) >= self.options.max_round_trips:
            self._finish(Outcome("error", f"more than {self.options.max_round_trips} round trips"),
                         now)
            return None
        self._state = reply.get(Attr.STATE)
        try:
            response, step = self.supplicant.respond(reply.eap_message)
        except ProtocolError as e:
            self._finish(Outcome("error", f"server protocol error: {e}", reply_code=reply.code), now)
            return None
        return self._request(response, step, now)

    def _accept(self, reply: rp.Reply, authenticator: bytes) -> Outcome:
        out = self._final("accept", reply)
        if out.eap_result != "success":
            out.detail = "Access-Accept without EAP-Success"
        s = self.supplicant
        if s.phase is not Phase.DONE:
            out.detail = (out.detail + "; " if out.detail else "") + \
                "Access-Accept before our TLS handshake completed"
        out.mppe = self._check_mppe(reply, authenticator)
        return out

    def _reject(self, reply: rp.Reply) -> Outcome:
        out = self._final("reject", reply)
        s = self.supplicant
        reasons = []
        if out.reply_message:
            reasons.append(f"Reply-Message: {out.reply_message}")
        cause = reply.get(Attr.ERROR_CAUSE)
        if cause is not None and len(cause) == 4:
            reasons.append(f"Error-Cause {struct.unpack('!I', cause)[0]}")
        if s.verify_error:
            reasons.append(f"we refused the server: {s.verify_error}")
        elif s.tls_error:
            reasons.append(f"TLS: {s.tls_error}")
        out.detail = "; ".join(reasons)
        return out

    def _final(self, result: str, reply: rp.Reply) -> Outcome:
        eap_result = None
        if reply.eap_message is not None:
            try:
                code = eap.parse(reply.eap_message).code
            except eap.MalformedEap:
                code = None
            eap_result = {eap.EapCode.SUCCESS: "success", eap.EapCode.FAILURE: "failure"}.get(
                code, "other")  # type: ignore[arg-type]
        message = reply.get(Attr.REPLY_MESSAGE)
        return Outcome(result, reply_code=reply.code, attributes=list(reply.attributes),
                       reply_message=None if message is None else
                       message.decode("utf-8", "backslashreplace"),
                       eap_result=eap_result)

    def _check_mppe(self, reply: rp.Reply, authenticator: bytes) -> MppeCheck:
        keys: dict[int, bytes | None] = {}
        for t, v in reply.attributes:
            if t != Attr.VENDOR_SPECIFIC or len(v) < 6:
                continue
            vendor, vtype, vlen = struct.unpack_from("!IBB", v)
            if vendor != rp.VENDOR_MICROSOFT or vtype not in (rp.MS_MPPE_SEND_KEY,
                                                              rp.MS_MPPE_RECV_KEY):
                continue
            try:
                keys[vtype] = rp.salt_decrypt(v[6:4 + vlen], self.options.secret, authenticator)
            except ValueError:
                keys[vtype] = None
        recv, send = rp.MS_MPPE_RECV_KEY in keys, rp.MS_MPPE_SEND_KEY in keys
        if not (recv and send):
            missing = [n for n, there in (("MS-MPPE-Recv-Key", recv), ("MS-MPPE-Send-Key", send))
                       if not there]
            return MppeCheck(recv, send, False, f"{' and '.join(missing)} missing")
        msk = self.supplicant.keys.msk if self.supplicant.keys else None
        if msk is None:
            return MppeCheck(True, True, False, "no TLS session keys to compare with")
        got_recv, got_send = keys[rp.MS_MPPE_RECV_KEY], keys[rp.MS_MPPE_SEND_KEY]
        if got_recv is None or got_send is None:
            return MppeCheck(True, True, False, "an MS-MPPE key does not decrypt (bad length)")
        ok_recv = hmac.compare_digest(got_recv, msk[:32])
        ok_send = hmac.compare_digest(got_send, msk[32:64])
        if ok_recv and ok_send:
            return MppeCheck(True, True, True, "MS-MPPE-Recv-Key = MSK[0:32], "
                             "MS-MPPE-Send-Key = MSK[32:64]")
        wrong = [n for n, ok in (("MS-MPPE-Recv-Key", ok_recv), ("MS-MPPE-Send-Key", ok_send))
                 if not ok]
        swapped = got_recv == msk[32:64] and got_send == msk[:32]
        return MppeCheck(True, True, False, f"{' and '.join(wrong)} differ from the TLS session's "
                         "MSK" + (" (Send and Recv swapped)" if swapped else ""))

    # --- helpers ---------------------------------------------------------------------

    def _request(self, eap_message: bytes, step: Step | None, now: float) -> bytes:
        self._identifier = (self._identifier + 1) & 0xFF
        o = self.options
        attrs: list[tuple[int, bytes]] = [(Attr.USER_NAME, o.user_name[: rp.MAX_ATTR_VALUE])]
        if o.nas_ip is not None:
            address = ipaddress.ip_address(o.nas_ip)
            attrs.append((Attr.NAS_IP_ADDRESS, address.packed) if address.version == 4
                         else (95, address.packed))  # NAS-IPv6-Address (RFC 3162)
        attrs += [
            (Attr.NAS_IDENTIFIER, o.nas_identifier.encode()),
            (Attr.CALLED_STATION_ID, o.called_station.encode()),
            (Attr.CALLING_STATION_ID, o.calling_station.encode()),
            (Attr.NAS_PORT_TYPE, rp.integer(NAS_PORT_TYPE_WIRELESS)),
            (Attr.FRAMED_MTU, rp.integer(o.framed_mtu)),
            *rp.eap_message_attributes(eap_message),
        ]
        if self._state is not None:
            attrs.append((Attr.STATE, self._state))
        authenticator = self._random(16)
        data = rp.encode_access_request(self._identifier, authenticator, o.secret, attrs)
        self._pending = _Pending(self._identifier, authenticator, data, now, step, last_sent=now)
        return data

    def note_unreachable(self) -> None:
        """The shell saw ICMP port unreachable for our request."""
        self._ignore("ICMP port unreachable (nothing listens on that port)")

    def _ignore(self, why: str) -> None:
        self._ignored[why] = self._ignored.get(why, 0) + 1
        return None

    def _finish(self, outcome: Outcome, now: float) -> None:
        outcome.ignored_replies = dict(self._ignored)
        self.outcome = outcome
        self.finished_at = now
        self._pending = None
        self.supplicant.close()
