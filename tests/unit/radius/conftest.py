"""Fixtures for the RADIUS/EAP-TLS unit tests: a throwaway ECDSA P-256 PKI.

Layout (all keys P-256):

    root ── staff CA ── staff-ok, staff-expired, staff-revoked, staff-serveronly, staff-cnonly
         ├─ guests CA ── guests-ok
         ├─ other CA (not a group) ── other-ok
         └─ server (serverAuth, SAN DNS radius.test)
    rogue root ── rogue staff CA (same DNs as root / staff CA, unrelated keys) ── rogue-ok

Certificates are valid around the real clock because OpenSSL checks validity at the
real time during the handshake.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto

from pki.groups import Group, GroupTable, ReplyAttributes
from radius import eap as eap_codec
from radius import fragments as frag
from radius.options import RadiusClient
from revocation.snapshot import RevocationIndex

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
SECRET = b"testing123"


def _name(cn: str, org: str = "certgate test") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: list[x509.Certificate] = field(default_factory=list)  # intermediates to send

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write NAME.pem (leaf + chain) and NAME.key; return their paths."""
        cert_path = directory / f"{name}.pem"
        key_path = directory / f"{name}.key"
        cert_path.write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [self.cert, *self.chain])
        )
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


def _ca(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: Issued | None,
    path_len: int | None,
) -> Issued:
    issuer_name = issuer.cert.subject if issuer else subject
    issuer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 10 * DAY)
        .not_valid_after(NOW + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    cert = builder.sign(issuer_key, hashes.SHA256())
    return Issued(cert, key, [])


def _leaf(
    issuer: Issued,
    cn: str,
    *,
    eku: list[x509.ObjectIdentifier],
    san: list[x509.GeneralName] | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key, [issuer.cert])


@dataclass
class TestPki:
    root: Issued
    staff_ca: Issued
    guests_ca: Issued
    other_ca: Issued
    rogue_root: Issued
    rogue_ca: Issued
    server: Issued
    clients: dict[str, Issued]
    groups: GroupTable
    revoked: RevocationIndex

    def write_bundle(self, directory: Path) -> dict[str, Path]:
        """PEM files for external tools (eapol_test)."""
        out: dict[str, Path] = {}
        ca = directory / "root.pem"
        ca.write_bytes(self.root.cert.public_bytes(serialization.Encoding.PEM))
        out["ca"] = ca
        for name, issued in self.clients.items():
            out[f"{name}.pem"], out[f"{name}.key"] = issued.write(directory, name)
        return out


def build_pki() -> TestPki:
    root = _ca(_name("certgate Test Root"), _key(), None, 1)
    staff = _ca(_name("certgate staff CA"), _key(), root, 0)
    guests = _ca(_name("certgate guests CA"), _key(), root, 0)
    other = _ca(_name("certgate other CA"), _key(), root, 0)
    rogue_root = _ca(_name("certgate Test Root"), _key(), None, 1)
    rogue_ca = _ca(_name("certgate staff CA"), _key(), rogue_root, 0)

    client_auth = [ExtendedKeyUsageOID.CLIENT_AUTH]
    server = _leaf(
        root,
        "radius.test",
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
        san=[x509.DNSName("radius.test")],
    )
    server.chain = []
    clients = {
        "staff-ok": _leaf(staff, "alice", eku=client_auth, san=[x509.RFC822Name("alice@example.test")]),
        "staff-cnonly": _leaf(staff, "bob-laptop", eku=client_auth),
        "staff-expired": _leaf(
            staff,
            "carol",
            eku=client_auth,
            not_before=NOW - 30 * DAY,
            not_after=NOW - DAY,
        ),
        "staff-notyet": _leaf(staff, "dave", eku=client_auth, not_before=NOW + DAY, not_after=NOW + 30 * DAY),
        "staff-revoked": _leaf(staff, "eve", eku=client_auth),
        "staff-serveronly": _leaf(staff, "frank", eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
        "guests-ok": _leaf(guests, "guest-1", eku=client_auth, san=[x509.DNSName("guest-1.example.test")]),
        "other-ok": _leaf(other, "mallory", eku=client_auth),
        "rogue-ok": _leaf(rogue_ca, "alice", eku=client_auth, san=[x509.RFC822Name("alice@example.test")]),
    }
    groups = GroupTable(
        [
            Group(
                "staff",
                staff.cert,
                ReplyAttributes(
                    vlan="10", filter_id="staff-acl", class_value="cg-staff", session_timeout=3600
                ),
            ),
            Group("guests", guests.cert, ReplyAttributes(vlan="20")),
        ]
    )
    revoked = RevocationIndex([("staff", clients["staff-revoked"].cert.serial_number)])
    return TestPki(root, staff, guests, other, rogue_root, rogue_ca, server, clients, groups, revoked)


_PKI: TestPki | None = None


@pytest.fixture(scope="session")
def pki() -> TestPki:
    global _PKI
    if _PKI is None:
        _PKI = build_pki()
    return _PKI


@pytest.fixture
def client() -> RadiusClient:
    return RadiusClient("nas1", ipaddress.ip_network("127.0.0.0/8"), SECRET)


@pytest.fixture
def dictionary_path() -> str:
    return str(Path(__file__).resolve().parents[3] / "config" / "dictionary.certgate")


# --- in-memory EAP-TLS peer ----------------------------------------------------------


_CLIENT_VERSION = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
_SSL_CB_READ_ALERT = 0x4004  # SSL_CB_READ | SSL_CB_ALERT
# TLS AlertDescription (RFC 8446 §6) -> name, for the alert the peer received.
ALERT_NAMES = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
    44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
    47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
    51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security",
    80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
    109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
    116: "certificate_required", 120: "no_application_protocol",
}


class EapTlsPeer:
    """A supplicant in memory: pyOpenSSL client + EAP-TLS framing, like eaptls_pyclient."""

    def __init__(
        self,
        pki: TestPki,
        client: str | None,
        *,
        tls: str = "1.2",
        fragment_size: int = 1024,
        send_chain: bool = True,
        session: SSL.Session | None = None,
        identity: str = "anonymous@example.test",
        context: SSL.Context | None = None,
    ) -> None:
        if context is None:
            context = SSL.Context(SSL.TLS_CLIENT_METHOD)
            context.set_min_proto_version(_CLIENT_VERSION[tls])
            context.set_max_proto_version(_CLIENT_VERSION[tls])
            store = context.get_cert_store()
            assert store is not None
            store.add_cert(crypto.X509.from_cryptography(pki.root.cert))
            context.set_verify(SSL.VERIFY_PEER)
            if client is not None:
                issued = pki.clients[client]
                context.use_certificate(issued.cert)
                context.use_privatekey(issued.key)
                if send_chain:
                    for extra in issued.chain:
                        context.add_extra_chain_cert(extra)
        self.context = context
        self.conn = SSL.Connection(context, None)
        self.conn.set_connect_state()
        if session is not None:
            self.conn.set_session(session)
        self.fragment_size = fragment_size
        self.identity = identity
        self.pending = b""
        self.rx = bytearray()
        self.commitment_seen = False
        self.tls_alert: str | None = None
        self.alert_received: str | None = None  # description of the first alert read
        self.requests_seen = 0
        self.conn.set_info_callback(self._on_info)

    def _on_info(self, conn: SSL.Connection, where: int, ret: int) -> None:
        if where & _SSL_CB_READ_ALERT == _SSL_CB_READ_ALERT and self.alert_received is None:
            self.alert_received = ALERT_NAMES.get(ret & 0xFF, str(ret & 0xFF))

    def first(self, identifier: int = 0x11) -> bytes:
        return eap_codec.response(identifier, eap_codec.EapType.IDENTITY, self.identity.encode())

    def _drain(self) -> bytes:
        out = []
        while True:
            try:
                out.append(self.conn.bio_read(65536))
            except SSL.WantReadError:
                return b"".join(out)

    def _send_pending(self, ident: int, first: bool) -> bytes:
        data, size = self.pending, self.fragment_size
        if not data:
            return eap_codec.response(ident, 13, frag.build_payload(0))
        if len(data) <= size:
            self.pending = b""
            return eap_codec.response(ident, 13, frag.build_payload(0, data))
        self.pending = data[size:]
        if first:
            payload = frag.build_payload(frag.FLAG_MORE, data[:size], len(data))
        else:
            payload = frag.build_payload(frag.FLAG_MORE, data[:size])
        return eap_codec.response(ident, 13, payload)

    def respond(self, request: bytes) -> bytes:
        self.requests_seen += 1
        pkt = eap_codec.parse(request)
        assert pkt.code == eap_codec.EapCode.REQUEST, pkt
        if pkt.type == eap_codec.EapType.IDENTITY:
            return self.first(pkt.identifier)
        assert pkt.type == 13, pkt
        payload = frag.parse_payload(pkt.data)
        if payload.flags & frag.FLAG_START:
            with contextlib.suppress(SSL.WantReadError):
                self.conn.do_handshake()
            self.pending = self._drain()
            return self._send_pending(pkt.identifier, first=True)
        if not payload.data and self.pending:
            return self._send_pending(pkt.identifier, first=False)
        self.rx += payload.data
        if payload.more:
            return eap_codec.response(pkt.identifier, 13, frag.build_payload(0))
        self.conn.bio_write(bytes(self.rx))
        self.rx.clear()
        try:
            self.conn.do_handshake()
            try:
                data = self.conn.recv(65536)
                if data == b"\x00":
                    self.commitment_seen = True
            except (SSL.WantReadError, SSL.ZeroReturnError):
                pass
        except SSL.WantReadError:
            pass
        except SSL.Error as e:
            self.tls_alert = str(e)
        self.pending = self._drain()
        return self._send_pending(pkt.identifier, first=True)

    def msk(self) -> bytes:
        if self.conn.get_protocol_version_name() == "TLSv1.3":
            km = self.conn.export_keying_material(b"EXPORTER_EAP_TLS_Key_Material", 128, b"\x0d")
        else:
            km = self.conn.export_keying_material(b"client EAP encryption", 128)
        return km[:64]


@pytest.fixture
def peer_factory(pki: TestPki):  # type: ignore[no-untyped-def]
    def make(client: str | None = "staff-ok", **kw) -> EapTlsPeer:  # type: ignore[no-untyped-def]
        return EapTlsPeer(pki, client, **kw)

    return make


def roundtrip_until_done(session, peer: EapTlsPeer, now: float, max_trips: int = 100):  # type: ignore[no-untyped-def]
    """Drive session <-> peer until Accept/Reject; returns (result, challenges sent)."""
    from radius.eap_tls import Accept, Challenge, Reject

    message = peer.first()
    for trips in range(max_trips):
        result = session.handle(message, now)
        if isinstance(result, Accept | Reject):
            return result, trips
        assert isinstance(result, Challenge), result
        message = peer.respond(result.eap)
    raise AssertionError("Too many roundtrips!")


@pytest.fixture
def roundtrip():  # type: ignore[no-untyped-def]
    return roundtrip_until_done


@pytest.fixture(scope="session")
def context_factory(pki: TestPki):  # type: ignore[no-untyped-def]
    from radius.options import EapOptions
    from radius.tls_context import build_server_context

    cache: dict[EapOptions, SSL.Context] = {}

    def make(options: EapOptions | None = None) -> SSL.Context:
        options = options or EapOptions()
        if options not in cache:
            cache[options] = build_server_context(
                certificate=pki.server.cert,
                private_key=pki.server.key,
                chain=[],
                root=pki.root.cert,
                intermediates=[g.intermediate for g in pki.groups],
                options=options,
            )
        return cache[options]

    return make


@pytest.fixture
def authorize_fn(pki: TestPki):  # type: ignore[no-untyped-def]
    from radius.authorize import authorize

    def bound(leaf, chain, resumed, now):  # type: ignore[no-untyped-def]
        return authorize(leaf, chain, resumed, pki.groups, pki.revoked, now)

    return bound
