"""The TLS alert a denied supplicant receives (issue #12 §3): an in-memory pyOpenSSL client
against EapTlsSession, reading the alert description off the wire with its info callback.

Also pins the private pyOpenSSL / cryptography bindings radius.tls_verify relies on, and
OpenSSL's X509_V_ERR -> alert table for every reason certgate denies with."""

from __future__ import annotations

import contextlib
import time

import pytest
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi, lib

from radius import eap, tls_verify
from radius.authorize import Deny, authorize
from radius.eap_tls import EapTlsSession, Reject
from radius.reasons import DEFAULT_DENY_ALERT, DENY_ALERT, DENY_X509_ERROR, Reason
from revocation.snapshot import RevocationIndex

NOW = time.time()
YEAR = 365 * 86400


def test_private_bindings_are_there() -> None:
    """Fails loudly if pyOpenSSL / cryptography drop a binding radius.tls_verify uses."""
    for name in ("SSL_CTX_set_verify", "SSL_get_ex_data_X509_STORE_CTX_idx",
                 "X509_STORE_CTX_get_ex_data", "X509_STORE_CTX_get_error",
                 "X509_STORE_CTX_get_error_depth", "X509_STORE_CTX_get_current_cert",
                 "X509_STORE_CTX_set_error", "X509_up_ref", "X509_V_OK"):
        assert hasattr(lib, name), f"OpenSSL._util.lib.{name} is gone: radius/tls_verify.py"
    for name in DENY_X509_ERROR.values():
        if name != "UNSPECIFIED":
            assert hasattr(lib, "X509_V_ERR_" + name), name
    assert callable(getattr(crypto.X509, "_from_raw_x509_ptr", None))
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    conn = SSL.Connection(ctx, None)
    assert ffi.typeof(ctx._context).cname == "SSL_CTX *"
    assert ffi.typeof(conn._ssl).cname == "SSL *"
    assert ffi.typeof(tls_verify.VERIFY_CALLBACK).cname == "int(*)(int, X509_STORE_CTX *)"


@pytest.fixture
def make(context_factory, peer_factory, roundtrip):  # type: ignore[no-untyped-def]
    def run(authorize_fn, client: str | None = "staff-ok", tls: str = "1.2",
            now: float = NOW, **peer_kw):  # type: ignore[no-untyped-def]
        session = EapTlsSession(context_factory(), authorize_fn, now=now)
        peer = peer_factory(client, tls=tls, **peer_kw)
        result, _ = roundtrip(session, peer, now)
        assert isinstance(result, Reject), result
        assert eap.parse(result.eap).code == eap.EapCode.FAILURE
        return result, peer

    return run


def _policy(pki, revoked=None, issued=None):  # type: ignore[no-untyped-def]
    index = pki.revoked if revoked is None else revoked

    def bound(leaf, chain, resumed, now):  # type: ignore[no-untyped-def]
        return authorize(leaf, chain, resumed, pki.groups, index, now, issued)

    return bound


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
@pytest.mark.parametrize(
    ("case", "client", "reason", "alert"),
    [
        ("revoked", "staff-revoked", Reason.REVOKED, "certificate_revoked"),
        ("held", "guests-ok", Reason.REVOKED, "certificate_revoked"),
        ("expired (OpenSSL)", "staff-expired", Reason.EXPIRED, "certificate_expired"),
        ("expired at now (policy)", "staff-ok", Reason.EXPIRED, "certificate_expired"),
        ("not yet valid", "staff-notyet", Reason.NOT_YET_VALID, "bad_certificate"),
        ("unknown CA: foreign root", "rogue-ok", Reason.UNKNOWN_ISSUER, "unknown_ca"),
        ("unknown CA: not a group CA", "other-ok", Reason.UNKNOWN_GROUP, "unknown_ca"),
        ("wrong EKU", "staff-serveronly", Reason.BAD_EKU, "unsupported_certificate"),
        ("not in inventory", "staff-ok", Reason.NOT_ISSUED, "handshake_failure"),
        ("store unavailable", "staff-ok", Reason.STORE_UNAVAILABLE, "internal_error"),
    ],
)
def test_denied_client_receives_the_alert_of_its_reason(  # type: ignore[no-untyped-def]
    make, pki, tls, case, client, reason, alert
) -> None:
    revoked, issued, now = None, None, NOW
    if case == "held":  # a certificateHold is an entry of the revocation index
        revoked = RevocationIndex([("guests", pki.clients["guests-ok"].cert.serial_number)])
    elif case == "expired at now (policy)":  # OpenSSL's real clock says valid
        now = NOW + 2 * YEAR
    elif case == "not in inventory":
        def issued(group: str, serial: int) -> bool:
            return False
    elif case == "store unavailable":
        def issued(group: str, serial: int) -> None:  # type: ignore[misc]
            return None
    result, peer = make(_policy(pki, revoked, issued), client, tls, now)
    assert result.reason is reason, result.detail
    assert peer.alert_received == alert, (case, peer.tls_alert)
    assert DENY_ALERT[reason] == alert


@pytest.mark.parametrize("reason", list(Reason))
def test_every_deny_reason_maps_to_its_documented_alert(make, reason) -> None:  # type: ignore[no-untyped-def]
    """OpenSSL's x509table, pinned: the code set for each reason yields DENY_ALERT."""
    _, peer = make(lambda *a: Deny(reason, "test"))
    assert peer.alert_received == DENY_ALERT.get(reason, DEFAULT_DENY_ALERT)


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_exception_in_callback_is_internal_error_and_counted(make, tls) -> None:  # type: ignore[no-untyped-def]
    def broken(*args):  # type: ignore[no-untyped-def]
        raise KeyError("bug")

    before = tls_verify.CALLBACK_ERRORS[0]
    result, peer = make(broken, tls=tls)
    assert result.reason is Reason.INTERNAL_ERROR and "KeyError" in result.detail
    assert peer.alert_received == "internal_error"
    assert tls_verify.CALLBACK_ERRORS[0] == before + 1


def test_no_client_certificate_keeps_openssl_alert(make) -> None:  # type: ignore[no-untyped-def]
    result, peer = make(_policy_unused, None, "1.3")
    assert result.reason is Reason.NO_CERTIFICATE
    assert peer.alert_received == "certificate_required"


def _policy_unused(*args):  # type: ignore[no-untyped-def]
    raise AssertionError("authorize must not run without a certificate")


def test_connection_of_no_session_gets_openssl_verdict(context_factory, peer_factory) -> None:  # type: ignore[no-untyped-def]
    """A connection on the context that no session registered: OpenSSL decides alone."""
    server = SSL.Connection(context_factory(), None)
    server.set_accept_state()
    client = peer_factory("staff-revoked").conn
    for _ in range(6):
        for a, b in ((client, server), (server, client)):
            with contextlib.suppress(SSL.WantReadError):
                a.do_handshake()
            with contextlib.suppress(SSL.WantReadError):
                b.bio_write(a.bio_read(65536))
    server.do_handshake()  # chain verifies: no policy without a session
    assert server.get_peer_certificate() is not None
