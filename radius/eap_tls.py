"""EAP-TLS server method (RFC 5216, RFC 9190) over pyOpenSSL memory BIOs.

Pure in the design's sense: no sockets, no clock reads, no asyncio. ``handle(eap, now)``
takes one joined EAP-Message and returns exactly one of ``Challenge``, ``Accept``,
``Reject`` or ``Discard``; the RADIUS shell turns it into Access-Challenge /
Access-Accept / Access-Reject / silence. ``now`` is wall-clock epoch seconds: it is the
time certificates and revocation are judged at.

Peer faults never raise; they end in ``Reject(reason)``. Our own bugs (including an
exception from the ``authorize`` callable on a resumed handshake) do raise, and the shell
logs and counts them.

Policy is not decided here. The constructor takes ``authorize(leaf, chain, resumed,
now) -> Allow | Deny``; it is called

* from OpenSSL's verify callback at depth 0 on a full handshake (``radius.tls_verify``),
  so a denied client gets a TLS alert naming the reason (``radius.reasons.DENY_ALERT``:
  certificate_revoked, unknown_ca, ...) in an EAP-Request before the EAP-Failure (E9), and
* at handshake completion of a *resumed* handshake (no verify callback runs then; the
  cached leaf is re-checked), where a denial can only be an EAP-Failure, without an alert.

An exception from ``authorize`` inside the verify callback cannot propagate through
OpenSSL: the client gets the internal_error alert and the session a
``Reject(internal_error)``, logged with its traceback. Elsewhere our bugs raise.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import overload

from cryptography import x509
from OpenSSL import SSL, crypto
from OpenSSL._util import lib as _lib

from radius import eap, tls_verify
from radius.authorize import Allow, Decision, Deny
from radius.buffers import TLS_CONNECTION_BYTES, BufferAccount
from radius.eap import EapCode, EapType, MalformedEap
from radius.fragments import (
    FLAG_START,
    BufferRefused,
    Fragmenter,
    FragmentError,
    FragState,
    Reassembler,
    TlsPayload,
    build_payload,
    parse_payload,
)
from radius.reasons import X509_ERROR_REASONS, Reason

log = logging.getLogger(__name__)

AuthorizeFn = Callable[[x509.Certificate, Sequence[x509.Certificate] | None, bool, dt.datetime], Decision]

_TLS12_LABEL = b"client EAP encryption"
_TLS13_KEY_LABEL = b"EXPORTER_EAP_TLS_Key_Material"
_TLS13_METHOD_ID_LABEL = b"EXPORTER_EAP_TLS_Method-Id"
_EAP_TLS_TYPE = bytes((EapType.TLS,))
_VERSIONS = {"TLSv1.2": "1.2", "TLSv1.3": "1.3"}
_BIO_READ_SIZE = 65536
_NO_CERT_MARKERS = ("peer did not return a certificate", "certificate required")


class State(Enum):
    START = "START"  # waiting for EAP-Response/Identity
    HANDSHAKE = "HANDSHAKE"  # TLS Start sent; exchanging flights
    SEND_FINAL = "SEND_FINAL"  # final flight (1.2 Finished / 1.3 tickets + 0x00) sent
    ALERT = "ALERT"  # TLS alert sent; waiting for the peer's response, then Failure
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


@dataclass(frozen=True, slots=True)
class Keys:
    msk: bytes  # 64 bytes
    emsk: bytes  # 64 bytes
    session_id: bytes  # 0x0D || ...


@dataclass(frozen=True, slots=True)
class Challenge:
    eap: bytes


@dataclass(frozen=True, slots=True)
class Accept:
    eap: bytes
    allow: Allow
    keys: Keys
    tls_version: str
    resumed: bool


@dataclass(frozen=True, slots=True)
class Reject:
    eap: bytes
    reason: Reason
    detail: str
    tls_version: str | None
    resumed: bool
    group: str | None


@dataclass(frozen=True, slots=True)
class Discard:
    """Silently discard the EAP response (RFC 3748 §4.1: unexpected Identifier)."""

    detail: str


Result = Challenge | Accept | Reject | Discard


class EapTlsSession:
    """One EAP-TLS conversation (hostapd's eap_server_tls + eap_server state machine)."""

    def __init__(
        self,
        context: SSL.Context,
        authorize: AuthorizeFn,
        *,
        fragment_size: int = 1024,
        max_round_trips: int = 50,
        now: float,
        name: str = "",
        buffers: BufferAccount | None = None,
    ) -> None:
        self._context = context
        self._buffers = buffers
        self._authorize = authorize
        self._max_round_trips = max_round_trips
        self._name = name  # for log lines only
        self.state = State.START
        self.started = now
        self.round_trips = 0
        self.identity: str | None = None  # outer EAP identity: a hint, never authorized
        self.tls_version: str | None = None
        self.resumed = False
        self._now = now
        self._conn: SSL.Connection | None = None
        self._last_request_id: int | None = None
        self._response_id = 0
        self._reassembler = Reassembler(account=buffers)
        self._fragmenter = Fragmenter(fragment_size)
        self._chain: dict[int, x509.Certificate | crypto.X509] = {}  # depth -> verified cert
        self._verify_errno: int | None = None
        self._callback_error: BaseException | None = None  # raised inside the verify callback
        self._decision: Decision | None = None
        self._failure: tuple[Reason, str] | None = None  # reason held while an alert is sent
        self._accept: Accept | None = None  # held while the final flight is sent

    # --- state ------------------------------------------------------------------------

    def _set_state(self, new: State) -> None:
        if new is not self.state:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("EAP-TLS %s: %s -> %s", self._name, self.state.value, new.value)
            self.state = new

    @property
    def done(self) -> bool:
        return self.state in (State.SUCCESS, State.FAILURE)

    # --- entry point --------------------------------------------------------------------

    def handle(self, eap_message: bytes, now: float) -> Result:
        if self.done:
            raise RuntimeError("handle() on a finished EAP-TLS session")
        self._now = now
        if not eap_message and self.state is State.START and self._last_request_id is None:
            # EAP-Start (RFC 3579 §2.1): ask for the identity.
            return self._request_identity()
        try:
            packet = eap.parse(eap_message)
        except MalformedEap as e:
            return self._fail(Reason.MALFORMED_EAP, str(e))
        if packet.code != EapCode.RESPONSE:
            return self._fail(Reason.MALFORMED_EAP, f"EAP code {packet.code} from peer")
        if self._last_request_id is not None and packet.identifier != self._last_request_id:
            return Discard(f"EAP identifier {packet.identifier} != {self._last_request_id}")
        self._response_id = packet.identifier
        self.round_trips += 1
        if self.round_trips > self._max_round_trips:
            return self._fail(Reason.TOO_MANY_ROUND_TRIPS, f"{self.round_trips} round trips")
        if packet.type == EapType.NAK:
            return self._fail(Reason.NAK, f"peer Nak, desired types {packet.data.hex()}")
        if self.state is State.START:
            if packet.type != EapType.IDENTITY:
                return self._fail(Reason.MALFORMED_EAP, f"EAP type {packet.type} before TLS")
            self.identity = packet.data[:253].decode("utf-8", "backslashreplace")
            return self._start_tls()
        if packet.type != EapType.TLS:
            return self._fail(Reason.MALFORMED_EAP, f"EAP type {packet.type} during TLS")
        try:
            payload = parse_payload(packet.data)
        except FragmentError as e:
            return self._fail(Reason.MALFORMED_EAP, str(e))
        return self._on_tls(payload)

    # --- EAP-TLS steps -----------------------------------------------------------------

    def _request_identity(self) -> Challenge:
        self._last_request_id = 1
        return Challenge(eap.request(1, EapType.IDENTITY))

    def _start_tls(self) -> Result:
        # The TLS connection (~19 KB in OpenSSL) is made when the ClientHello arrives, so
        # a flood of Identity responses holds only Python objects.
        self._set_state(State.HANDSHAKE)
        return self._request(build_payload(FLAG_START))

    def _connection(self) -> SSL.Connection:
        conn = self._conn
        if conn is None:
            conn = SSL.Connection(self._context, None)
            conn.set_accept_state()
            tls_verify.register(conn, self)
            self._conn = conn
        return conn

    def _on_tls(self, payload: TlsPayload) -> Result:
        if self._fragmenter.state is FragState.WAIT_FRAG_ACK:
            if not payload.is_ack:
                return self._fail(Reason.MALFORMED_EAP, "expected an ACK of our fragment")
            return self._request(self._fragmenter.next_fragment())
        if self.state is State.SEND_FINAL:
            if not payload.is_ack:
                return self._fail(Reason.TLS_ERROR, "peer sent data instead of the final ACK")
            assert self._accept is not None
            return self._succeed()
        if self.state is State.ALERT:
            assert self._failure is not None
            return self._fail(*self._failure)
        # HANDSHAKE
        if payload.is_ack and not self._reassembler.in_progress:
            return self._fail(Reason.MALFORMED_EAP, "empty response not answering a fragment")
        try:
            message = self._reassembler.feed(payload)
        except BufferRefused as e:
            return self._fail(Reason.BUFFERS_FULL, str(e))
        except FragmentError as e:
            return self._fail(Reason.MALFORMED_EAP, str(e))
        if message is None:
            return self._request(build_payload(0))  # ACK the peer's fragment (E7)
        return self._tls_step(message)

    def _tls_step(self, message: bytes) -> Result:
        if self._conn is None and self._buffers is not None and not self._buffers.reserve(
                TLS_CONNECTION_BYTES):
            return self._fail(Reason.BUFFERS_FULL, "no buffer room for a TLS connection")
        conn = self._connection()
        conn.bio_write(message)
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            self._note_version()
            out = self._drain()
            return self._send(out) if out else self._request(build_payload(0))
        except SSL.Error as e:
            self._note_version()
            reason, detail = self._handshake_failure(e)
            out = self._drain()
            if not out:
                return self._fail(reason, detail)
            self._failure = (reason, detail)
            self._set_state(State.ALERT)
            return self._send(out)
        return self._handshake_done()

    def _handshake_done(self) -> Result:
        conn = self._conn
        assert conn is not None
        self._note_version()
        self.resumed = bool(_lib.SSL_session_reused(conn._ssl))
        # The verify callback of a full handshake has already converted the leaf.
        leaf = None if self.resumed else self._chain.get(0)
        if not isinstance(leaf, x509.Certificate):
            leaf = conn.get_peer_certificate(as_cryptography=True)
        if leaf is None:
            return self._fail(Reason.NO_CERTIFICATE, "handshake completed without a client cert")
        decision = self._decision
        if self.resumed or decision is None:
            chain = None if self.resumed else conn.get_verified_chain(as_cryptography=True)
            decision = self._authorize(leaf, chain, self.resumed, self._wall_clock())
            self._decision = decision
        if isinstance(decision, Deny):
            # The handshake is over: no alert is possible, only EAP-Failure.
            return self._fail(decision.reason, decision.detail, decision.group)
        keys = self._export_keys(conn)
        if self.tls_version == "1.3":
            conn.send(b"\x00")  # RFC 9190 §2.5 commitment message
        out = self._drain()
        # EAP-TLS never sends close_notify; without this the session is marked bad.
        conn.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)
        self._accept = Accept(
            eap=b"",
            allow=decision,
            keys=keys,
            tls_version=self.tls_version or "none",
            resumed=self.resumed,
        )
        if not out:  # TLS 1.2 resumption: the peer's Finished was the last message
            return self._succeed()
        self._set_state(State.SEND_FINAL)
        return self._send(out)

    def _export_keys(self, conn: SSL.Connection) -> Keys:
        if self.tls_version == "1.3":
            material = conn.export_keying_material(_TLS13_KEY_LABEL, 128, _EAP_TLS_TYPE)
            method_id = conn.export_keying_material(_TLS13_METHOD_ID_LABEL, 64, _EAP_TLS_TYPE)
            session_id = _EAP_TLS_TYPE + method_id
        else:
            material = conn.export_keying_material(_TLS12_LABEL, 128)
            client_random = conn.client_random() or b""
            server_random = conn.server_random() or b""
            session_id = _EAP_TLS_TYPE + client_random + server_random
        return Keys(msk=material[:64], emsk=material[64:128], session_id=session_id)

    # --- verification ------------------------------------------------------------------

    def _on_verify(self, cert: crypto.X509 | None, errno: int, depth: int, ok: int) -> bool:
        """Called by ``radius.tls_verify`` per chain element; ``cert`` is None when not ok."""
        if not ok:
            if self._verify_errno is None:
                self._verify_errno = errno
            return False
        if depth != 0:
            # Kept as pyOpenSSL's X509: converted only if authorize looks at it (the
            # intermediate, yes; the root, normally never: ~7.6 µs saved per auth).
            assert cert is not None
            self._chain[depth] = cert
            return True
        assert cert is not None
        leaf = cert.to_cryptography()
        self._chain[0] = leaf
        chain = _VerifiedChain([self._chain[d] for d in sorted(self._chain)])
        decision = self._authorize(leaf, chain, False, self._wall_clock())
        self._decision = decision
        return isinstance(decision, Allow)

    def _deny_reason(self) -> Reason | None:
        """The reason of the denial the verify callback is returning (sets the alert)."""
        decision = self._decision
        return decision.reason if isinstance(decision, Deny) else None

    def _callback_failed(self, exc: BaseException) -> None:
        log.error("EAP-TLS %s: verify callback raised; denied with internal_error",
                  self._name, exc_info=exc)
        if self._callback_error is None:
            self._callback_error = exc

    def _handshake_failure(self, error: SSL.Error) -> tuple[Reason, str]:
        text = ssl_error_text(error)
        if self._callback_error is not None:
            exc = self._callback_error
            return Reason.INTERNAL_ERROR, f"verify callback raised {type(exc).__name__}"
        if isinstance(self._decision, Deny):
            return self._decision.reason, self._decision.detail
        if self._verify_errno is not None:
            reason = X509_ERROR_REASONS.get(self._verify_errno, Reason.CHAIN_INVALID)
            return reason, f"X509 verify error {self._verify_errno}: {text}"
        if any(marker in text for marker in _NO_CERT_MARKERS):
            return Reason.NO_CERTIFICATE, text
        return Reason.TLS_ERROR, text

    # --- output helpers ----------------------------------------------------------------

    def _drain(self) -> bytes:
        conn = self._conn
        assert conn is not None
        chunks = []
        while True:
            try:
                chunk = conn.bio_read(_BIO_READ_SIZE)
            except SSL.WantReadError:
                break
            chunks.append(chunk)
            if len(chunk) < _BIO_READ_SIZE:
                # A memory BIO hands over everything it holds, up to the size asked for:
                # a short read emptied it (saves a read that would raise WantReadError).
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _send(self, data: bytes) -> Challenge:
        return self._request(self._fragmenter.start(data))

    def _request(self, tls_payload: bytes) -> Challenge:
        ident = eap.next_identifier(
            self._response_id if self._last_request_id is None else self._last_request_id
        )
        self._last_request_id = ident
        return Challenge(eap.request(ident, EapType.TLS, tls_payload))

    def _succeed(self) -> Accept:
        accept = self._accept
        assert accept is not None
        self._set_state(State.SUCCESS)
        self._release()
        return Accept(
            eap=eap.success(self._response_id),
            allow=accept.allow,
            keys=accept.keys,
            tls_version=accept.tls_version,
            resumed=accept.resumed,
        )

    def _fail(self, reason: Reason, detail: str, group: str | None = None) -> Reject:
        if group is None and isinstance(self._decision, Deny):
            group = self._decision.group
        self._set_state(State.FAILURE)
        self._release()
        return Reject(
            eap=eap.failure(self._response_id),
            reason=reason,
            detail=detail,
            tls_version=self.tls_version,
            resumed=self.resumed,
            group=group,
        )

    def fail_timeout(self) -> None:
        """The shell expired this conversation."""
        if not self.done:
            self._set_state(State.FAILURE)
            self._release()

    def _release(self) -> None:
        if self._conn is not None:
            tls_verify.unregister(self._conn)
            self._conn = None
        self._reassembler.reset()
        if self._buffers is not None:
            self._buffers.release()

    def _note_version(self) -> None:
        if self._conn is not None and self.tls_version is None:
            self.tls_version = _VERSIONS.get(self._conn.get_protocol_version_name())

    def _wall_clock(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._now, dt.UTC)


class _VerifiedChain(Sequence[x509.Certificate]):
    """The verified chain, leaf first, as cryptography certificates converted on access."""

    __slots__ = ("_certs",)

    def __init__(self, certs: list[x509.Certificate | crypto.X509]) -> None:
        self._certs = certs

    def __len__(self) -> int:
        return len(self._certs)

    @overload
    def __getitem__(self, index: int) -> x509.Certificate: ...

    @overload
    def __getitem__(self, index: slice) -> list[x509.Certificate]: ...

    def __getitem__(self, index: int | slice) -> x509.Certificate | list[x509.Certificate]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._certs)))]
        cert = self._certs[index]
        if isinstance(cert, crypto.X509):
            cert = cert.to_cryptography()
            self._certs[index] = cert
        return cert

    def __repr__(self) -> str:
        return f"_VerifiedChain({list(self)!r})"


def ssl_error_text(error: SSL.Error) -> str:
    """OpenSSL's error queue as one line (the reason strings, innermost last)."""
    parts = []
    for arg in error.args:
        if isinstance(arg, list):
            parts.extend(str(item[-1]) if isinstance(item, tuple) else str(item) for item in arg)
        else:
            parts.append(str(arg))
    return "; ".join(parts) or type(error).__name__
