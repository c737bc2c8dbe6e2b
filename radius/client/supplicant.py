"""EAP-TLS peer (RFC 5216, RFC 9190) over pyOpenSSL memory BIOs: the supplicant of test-auth.

Pure: ``respond(eap_request)`` takes one joined EAP-Request and returns the EAP-Response
plus a ``Step`` saying what happened (for the round-trip listing). It answers Identity,
Notification, Nak for any other method, and EAP-TLS with the framing of
radius.fragments (the server's own reassembler and fragmenter: the same rules both ways).

The MSK/EMSK are derived here from the client's TLS session, independently of any server
(RFC 5216 §2.3 for TLS 1.2, RFC 9190 §2.3 for TLS 1.3), so the NAS side can check the
MS-MPPE keys a server sends against them, the way eapol_test prints "MPPE keys OK".

Server certificate checks: the chain must verify to the given trust anchors (unless
verification is off) and, with ``server_name``, the leaf must carry that DNS name (SAN
dNSName, or the CN when there is no SAN); a failure makes OpenSSL send the server a TLS
alert, as a real supplicant does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

from radius import eap
from radius.eap import EapCode, EapType, MalformedEap
from radius.eap_tls import ssl_error_text
from radius.fragments import (
    FLAG_LENGTH,
    FLAG_MORE,
    FLAG_START,
    Fragmenter,
    FragmentError,
    FragState,
    Reassembler,
    build_payload,
    parse_payload,
)

_VERSION = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
_VERSION_NAMES = {"TLSv1.2": "1.2", "TLSv1.3": "1.3"}
_EAP_TLS_TYPE = b"\x0d"


class ProtocolError(Exception):
    """The server broke EAP or EAP-TLS framing (its fault): no answer is possible."""


@dataclass(frozen=True, slots=True)
class Keys:
    msk: bytes  # 64 bytes: MS-MPPE-Recv-Key = msk[0:32], MS-MPPE-Send-Key = msk[32:64]
    emsk: bytes
    session_id: bytes  # 0x0D || client.random || server.random (1.2) | Method-Id (1.3)


@dataclass(frozen=True, slots=True)
class Step:
    """One EAP-Request and our answer, in words and sizes."""

    request: str  # e.g. "EAP-Request/TLS id=3 [L M] 1014 B"
    response: str  # e.g. "EAP-Response/TLS id=3 ACK"
    tls_in: int = 0  # TLS bytes in the request's fragment
    tls_out: int = 0  # TLS bytes in our response's fragment
    note: str = ""  # e.g. "server message 2/2 complete: 1443 B"


def _flags(flags: int) -> str:
    names = [n for bit, n in ((FLAG_LENGTH, "L"), (FLAG_MORE, "M"), (FLAG_START, "S")) if flags & bit]
    return "[" + " ".join(names) + "]"


def client_context(
    *,
    certificate: x509.Certificate | None,
    private_key: CertificateIssuerPrivateKeyTypes | None,
    chain: Sequence[x509.Certificate] = (),
    trust: Sequence[x509.Certificate] | None,
    tls_min: str = "1.2",
    tls_max: str = "1.3",
) -> SSL.Context:
    """A TLS client context; ``trust=None`` does not verify the server (reported as such);
    ``certificate=None`` presents none (what a server must refuse as no_certificate)."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(_VERSION[tls_min])
    ctx.set_max_proto_version(_VERSION[tls_max])
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET)
    if certificate is not None and private_key is not None:
        ctx.use_certificate(certificate)
        ctx.use_privatekey(private_key)
        for extra in chain:
            ctx.add_extra_chain_cert(extra)
        ctx.check_privatekey()
    if trust is not None:
        store = ctx.get_cert_store()
        assert store is not None
        for cert in trust:
            store.add_cert(crypto.X509.from_cryptography(cert))
        ctx.set_verify(SSL.VERIFY_PEER, _verify_dispatch)
    else:
        ctx.set_verify(SSL.VERIFY_NONE)
    return ctx


def _verify_dispatch(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    peer = conn.get_app_data()
    if isinstance(peer, Supplicant):
        return peer._on_verify(cert, errno, depth, ok)
    return bool(ok)


def names_of(cert: x509.Certificate) -> list[str]:
    """DNS names a server certificate is valid for: SAN dNSName, else the CN (RFC 6125)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if dns:
        return dns
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def name_matches(pattern: str, name: str) -> bool:
    """Case-insensitive DNS match; a wildcard only as the whole left-most label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


class Phase(Enum):
    IDENTITY = "IDENTITY"  # nothing but Identity seen
    HANDSHAKE = "HANDSHAKE"  # TLS Start received
    DONE = "DONE"  # our side of the handshake completed
    FAILED = "FAILED"  # TLS failed on our side (alert sent or received)


@dataclass
class Flights:
    """TLS messages each way: bytes and EAP fragments per message."""

    server: list[tuple[int, int]] = field(default_factory=list)  # (bytes, fragments)
    client: list[tuple[int, int]] = field(default_factory=list)


class Supplicant:
    """One EAP-TLS authentication from the peer side."""

    def __init__(self, context: SSL.Context, identity: bytes, *, fragment_size: int = 1024,
                 server_name: str | None = None) -> None:
        self.identity = identity
        self.server_name = server_name
        self.phase = Phase.IDENTITY
        self.tls_version: str | None = None
        self.cipher: str | None = None
        self.tls_error: str | None = None  # OpenSSL's words when the handshake failed
        self.verify_error: str | None = None  # why we refused the server certificate
        self.server_chain: list[x509.Certificate] = []
        self.commitment_seen = False  # TLS 1.3: the 0x00 application byte (RFC 9190 §2.5)
        self.flights = Flights()
        self.keys: Keys | None = None
        self._verified: dict[int, x509.Certificate] = {}
        self._conn = SSL.Connection(context, None)
        self._conn.set_connect_state()
        self._conn.set_app_data(self)
        self._fragment_size = fragment_size
        self._fragmenter = Fragmenter(fragment_size)
        self._reassembler = Reassembler()
        self._rx_fragments = 0
        self._tx_fragments = 0

    # --- entry point -----------------------------------------------------------------

    def respond(self, request: bytes) -> tuple[bytes, Step]:
        """The EAP-Response to one EAP-Request; ``ProtocolError`` if it makes no sense."""
        try:
            packet = eap.parse(request)
        except MalformedEap as e:
            raise ProtocolError(f"malformed EAP in the challenge: {e}") from None
        if packet.code != EapCode.REQUEST:
            raise ProtocolError(f"EAP code {packet.code} in an Access-Challenge (expected Request)")
        ident = packet.identifier
        if packet.type == EapType.IDENTITY:
            return (eap.response(ident, EapType.IDENTITY, self.identity),
                    Step(f"EAP-Request/Identity id={ident}",
                         f"EAP-Response/Identity id={ident} {self.identity.decode(errors='replace')!r}"))
        if packet.type == EapType.NOTIFICATION:
            text = packet.data.decode("utf-8", "backslashreplace")
            return (eap.response(ident, EapType.NOTIFICATION),
                    Step(f"EAP-Request/Notification id={ident}", f"EAP-Response/Notification id={ident}",
                         note=f"server notification: {text!r}"))
        if packet.type != EapType.TLS:
            return (eap.response(ident, EapType.NAK, _EAP_TLS_TYPE),
                    Step(f"EAP-Request/type-{packet.type} id={ident}",
                         f"EAP-Response/Nak id={ident} (desired: TLS)",
                         note="the server proposed another EAP method first"))
        try:
            payload = parse_payload(packet.data)
        except FragmentError as e:
            raise ProtocolError(str(e)) from None
        described = f"EAP-Request/TLS id={ident} {_flags(payload.flags)}"
        if payload.data:
            described += f" {len(payload.data)} B"
        if payload.total_length is not None:
            described += f" (message {payload.total_length} B)"
        body, note = self._on_tls(payload)
        tls_out = len(body) - (5 if body[0] & FLAG_LENGTH else 1)
        answer = f"EAP-Response/TLS id={ident} "
        answer += "ACK" if len(body) == 1 and not body[0] else f"{_flags(body[0])} {tls_out} B"
        return eap.response(ident, EapType.TLS, body), Step(
            described, answer, len(payload.data), tls_out, note)

    # --- TLS -------------------------------------------------------------------------

    def _on_tls(self, payload) -> tuple[bytes, str]:  # noqa: ANN001 - radius.fragments.TlsPayload
        if payload.flags & FLAG_START:
            if self.phase is not Phase.IDENTITY:
                raise ProtocolError("EAP-TLS Start in the middle of a handshake")
            self.phase = Phase.HANDSHAKE
            self._handshake()
            return self._send(self._drain(), "TLS Start: ClientHello")
        if self.phase is Phase.IDENTITY:
            raise ProtocolError("EAP-TLS data before the Start")
        if self._fragmenter.state is FragState.WAIT_FRAG_ACK:
            if not payload.is_ack:
                raise ProtocolError("expected an ACK of our fragment, got data")
            self._tx_fragments += 1
            body = self._fragmenter.next_fragment()
            if self._fragmenter.state is FragState.MSG:
                self.flights.client[-1] = (self.flights.client[-1][0], self._tx_fragments)
            return body, ""
        if payload.is_ack:
            raise ProtocolError("EAP-TLS ACK from the server with nothing of ours pending")
        try:
            message = self._reassembler.feed(payload)
        except FragmentError as e:
            raise ProtocolError(str(e)) from None
        self._rx_fragments += 1
        if message is None:
            return build_payload(0), "ACK of the server's fragment"
        fragments, self._rx_fragments = self._rx_fragments, 0
        self.flights.server.append((len(message), fragments))
        note = f"server TLS message complete: {len(message)} B in {fragments} fragment(s)"
        self._conn.bio_write(message)
        if self.phase is Phase.HANDSHAKE:
            self._handshake()
        if self.phase is Phase.DONE:
            self._read_application_data()
        out = self._drain()
        if self.phase is Phase.FAILED:
            note += f"; TLS failed: {self.verify_error or self.tls_error}"
        return self._send(out, note)

    def _handshake(self) -> None:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            self._note_version()
            return
        except SSL.Error as e:
            self._note_version()
            self.tls_error = ssl_error_text(e)
            self.phase = Phase.FAILED
            return
        self._note_version()
        self.cipher = self._conn.get_cipher_name()
        self.phase = Phase.DONE
        self.keys = self._export_keys()
        if not self.server_chain:
            chain = self._conn.get_peer_cert_chain(as_cryptography=True) or []
            self.server_chain = list(chain)

    def _read_application_data(self) -> None:
        """TLS 1.3: NewSessionTicket(s) and the 0x00 commitment after the handshake."""
        while True:
            try:
                data = self._conn.recv(65536)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                return
            except SSL.Error as e:
                self.tls_error = ssl_error_text(e)
                self.phase = Phase.FAILED
                return
            if data == b"\x00":
                self.commitment_seen = True
            elif data:
                self.tls_error = f"unexpected {len(data)} B of application data"

    def _send(self, out: bytes, note: str) -> tuple[bytes, str]:
        if not out:
            return build_payload(0), note
        self._tx_fragments = 1
        body = self._fragmenter.start(out)
        self.flights.client.append((len(out), 1))
        return body, note

    def _drain(self) -> bytes:
        chunks = []
        while True:
            try:
                chunks.append(self._conn.bio_read(65536))
            except SSL.WantReadError:
                return b"".join(chunks)

    def _note_version(self) -> None:
        if self.tls_version is None:
            self.tls_version = _VERSION_NAMES.get(self._conn.get_protocol_version_name())

    def _export_keys(self) -> Keys:
        conn = self._conn
        if self.tls_version == "1.3":
            material = conn.export_keying_material(b"EXPORTER_EAP_TLS_Key_Material", 128, _EAP_TLS_TYPE)
            method_id = conn.export_keying_material(b"EXPORTER_EAP_TLS_Method-Id", 64, _EAP_TLS_TYPE)
            session_id = _EAP_TLS_TYPE + method_id
        else:
            material = conn.export_keying_material(b"client EAP encryption", 128)
            session_id = _EAP_TLS_TYPE + (conn.client_random() or b"") + (conn.server_random() or b"")
        return Keys(msk=material[:64], emsk=material[64:], session_id=session_id)

    # --- server certificate ----------------------------------------------------------

    def _on_verify(self, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        converted = cert.to_cryptography()
        self._verified[depth] = converted
        self.server_chain = [self._verified[d] for d in sorted(self._verified)]
        if not ok:
            if self.verify_error is None:
                self.verify_error = (f"server certificate (depth {depth}) does not verify: "
                                     f"{_x509_error(errno)}")
            return False
        if depth == 0 and self.server_name is not None:
            names = names_of(converted)
            if not any(name_matches(n, self.server_name) for n in names):
                self.verify_error = (f"server certificate names {', '.join(names) or '(none)'} "
                                     f"do not include --server-name {self.server_name}")
                return False
        return True

    def close(self) -> None:
        self._conn.set_app_data(None)
        with contextlib.suppress(SSL.Error):
            self._conn.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)


def _x509_error(errno: int) -> str:
    from OpenSSL._util import ffi, lib

    text = ffi.string(lib.X509_verify_cert_error_string(errno)).decode(errors="replace")
    return f"{text} (X509 error {errno})"
