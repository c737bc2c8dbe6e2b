"""The EAP-TLS client-certificate verify callback, installed with OpenSSL's own
``SSL_CTX_set_verify`` so that a denial sends the TLS alert that says why.

Why not pyOpenSSL's ``Context.set_verify``: its wrapper hides the ``X509_STORE_CTX``. A
callback returning False at depth 0 (OpenSSL's ok=1, certgate's policy says no) leaves
the store error at X509_V_OK; OpenSSL 3/4 then sets X509_V_ERR_UNSPECIFIED
(x509_vfy.c) and ``ssl_x509err2alert`` (ssl/statem/statem_lib.c, x509table) turns it into
``internal_error``, which tells the supplicant nothing. Here the callback sets the
X509_V_ERR_* code of the Deny reason (``radius.reasons.DENY_X509_ERROR``) before returning
0, and OpenSSL's x509table picks the alert: revoked/held -> certificate_revoked, expired ->
certificate_expired, not under a group intermediate -> unknown_ca, no clientAuth ->
unsupported_certificate, not in the inventory -> handshake_failure (no X509_V_ERR maps to
access_denied: see ``radius.reasons``). Errors OpenSSL itself found (ok=0) keep its code.

Resumed handshakes run no verify callback: a denial there stays an EAP-Failure without an
alert (``radius.eap_tls``).

Sessions are found from the ``SSL*`` (``X509_STORE_CTX_get_ex_data`` with
``SSL_get_ex_data_X509_STORE_CTX_idx``) in a weak map filled by ``register``; the ffi
callback object is module-level, so it outlives every context that points at it. No
exception may cross into C: one is recorded on the session (which then rejects with
``internal_error``, the alert OpenSSL sends for X509_V_ERR_UNSPECIFIED), logged and counted
in ``CALLBACK_ERRORS``.

Private bindings relied on (cryptography's ``_openssl`` lib through ``OpenSSL._util`` and
pyOpenSSL's ``X509._from_raw_x509_ptr``, ``Context._context``, ``Connection._ssl``; the
same ones pyOpenSSL's own wrapper uses): pinned by ``tests/unit/radius/test_tls_verify.py``,
which fails loudly if one disappears or OpenSSL's alert table changes.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Protocol

from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from radius.reasons import DENY_X509_ERROR, X509_APPLICATION_VERIFICATION, Reason

log = logging.getLogger(__name__)

X509_V_ERR_UNSPECIFIED = 1  # OpenSSL >= 1.1.0; not exported by cryptography's binding


def _x509_error(name: str) -> int:
    if name == "UNSPECIFIED":
        return X509_V_ERR_UNSPECIFIED
    return int(getattr(_lib, "X509_V_ERR_" + name))


# Resolved once, at import: a binding without one of these names fails here, loudly.
_DENY_CODES: dict[Reason, int] = {r: _x509_error(n) for r, n in DENY_X509_ERROR.items()}
_DEFAULT_DENY_CODE = _x509_error(X509_APPLICATION_VERIFICATION)
_SSL_INDEX = _lib.SSL_get_ex_data_X509_STORE_CTX_idx()
_get_ex_data = _lib.X509_STORE_CTX_get_ex_data
_get_error = _lib.X509_STORE_CTX_get_error
_get_depth = _lib.X509_STORE_CTX_get_error_depth
_get_cert = _lib.X509_STORE_CTX_get_current_cert
_set_error = _lib.X509_STORE_CTX_set_error
_up_ref = _lib.X509_up_ref
_from_raw = crypto.X509._from_raw_x509_ptr

CALLBACK_ERRORS = [0]  # exceptions caught in the callback (a bug of ours), since start


class Verifier(Protocol):
    """What the callback needs of an EAP-TLS session."""

    def _on_verify(self, cert: crypto.X509 | None, errno: int, depth: int, ok: int) -> bool: ...

    def _deny_reason(self) -> Reason | None: ...

    def _callback_failed(self, exc: BaseException) -> None: ...


_sessions: weakref.WeakValueDictionary[Any, Verifier] = weakref.WeakValueDictionary()


def deny_code(reason: Reason | None) -> int:
    """The X509_V_ERR_* code set for a denial with ``reason``."""
    if reason is None:
        return X509_V_ERR_UNSPECIFIED
    return _DENY_CODES.get(reason, _DEFAULT_DENY_CODE)


def register(conn: SSL.Connection, session: Verifier) -> None:
    """Route the verify callback of ``conn`` to ``session`` (weakly held)."""
    _sessions[conn._ssl] = session


def unregister(conn: SSL.Connection) -> None:
    _sessions.pop(conn._ssl, None)


def _verify(ok: int, store_ctx: Any) -> int:
    session = None
    try:
        session = _sessions.get(_get_ex_data(store_ctx, _SSL_INDEX))
        if session is None:  # not an EAP-TLS session's connection: OpenSSL's verdict
            return ok
        if not ok:
            session._on_verify(None, _get_error(store_ctx), _get_depth(store_ctx), 0)
            return 0  # OpenSSL's own error code stays, and picks the alert
        x509 = _get_cert(store_ctx)
        _up_ref(x509)
        if session._on_verify(_from_raw(x509), 0, _get_depth(store_ctx), 1):
            return 1
        _set_error(store_ctx, deny_code(session._deny_reason()))
        return 0
    except BaseException as exc:  # never into C
        CALLBACK_ERRORS[0] += 1
        try:
            _set_error(store_ctx, X509_V_ERR_UNSPECIFIED)
            if session is not None:
                session._callback_failed(exc)
            else:
                log.error("TLS verify callback failed", exc_info=exc)
        except BaseException:  # noqa: S110 - logging itself failed; still deny
            pass
        return 0


VERIFY_CALLBACK = _ffi.callback("int (*)(int, X509_STORE_CTX *)", _verify)


def install(ctx: SSL.Context, mode: int) -> None:
    """``SSL_CTX_set_verify(ctx, mode, VERIFY_CALLBACK)``; the context keeps a reference
    too, so the callback lives as long as any context using it."""
    ctx._certgate_verify_callback = VERIFY_CALLBACK  # type: ignore[attr-defined]
    _lib.SSL_CTX_set_verify(ctx._context, mode, VERIFY_CALLBACK)
