"""Build the pyOpenSSL server context for EAP-TLS.

* server certificate, key and chain (cryptography objects);
* trust store = our root + every group intermediate. Supplicants often send only their
  leaf, so the intermediates are held server-side; chains must still end at the
  self-signed root (no partial-chain flag), and ``authorize`` then pins the issuer to
  exactly a group intermediate;
* ``add_client_ca(root)``: the CA name in CertificateRequest, which lets a device holding
  several certificates pick ours;
* VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT with ``radius.tls_verify``'s callback, which
  forwards to the owning ``EapTlsSession`` (error capture + policy at depth 0) and sets
  the X509 error that makes OpenSSL send the alert naming a denial's reason;
* min/max protocol version and key-exchange groups from ``EapOptions``;
* resumption off: SESS_CACHE_OFF + OP_NO_TICKET. On: server-side session cache (stateful
  TLS 1.3 tickets / TLS 1.2 session ids; OP_NO_TICKET stays on so tickets do not embed
  the client certificate), with a session id context derived from the trust material
  and options, so any change invalidates old sessions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto
from OpenSSL._util import lib as _lib

from radius import tls_verify
from radius.options import EapOptions

_VERSION = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
SESSION_LIFETIME = 3600  # seconds a cached session may be resumed (RFC 9190 §5.7: <= 7 days)


VERIFY_DEPTH = 4  # intermediates a client chain may have (OpenSSL's verify depth)


def add_trust(store: crypto.X509Store, root: x509.Certificate,
              intermediates: Sequence[x509.Certificate]) -> None:
    """The trust anchors of client verification: the root and every group intermediate.
    Shared with ``radius.verdict`` (certgate explain), so both verify against the same set."""
    store.add_cert(crypto.X509.from_cryptography(root))
    for cert in intermediates:
        store.add_cert(crypto.X509.from_cryptography(cert))


class TlsConfigError(ValueError):
    """The TLS settings cannot be applied (operator's fault)."""


def session_id_context(
    root: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    options: EapOptions,
) -> bytes:
    """b"certgate:" + 16 hex digits of a hash over everything a cached session relies on."""
    h = hashlib.sha256()
    for cert in (root, *intermediates):
        h.update(cert.public_bytes(Encoding.DER))
    h.update(repr((options.tls_min_version, options.tls_max_version, options.tls_groups)).encode())
    return b"certgate:" + h.hexdigest()[:16].encode()


def build_server_context(
    *,
    certificate: x509.Certificate,
    private_key: CertificateIssuerPrivateKeyTypes,
    chain: Sequence[x509.Certificate],
    root: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    options: EapOptions,
    session_id: bytes | None = None,
) -> SSL.Context:
    """``chain``: certificates sent after the server leaf (not the root).
    ``intermediates``: the group CAs (``[g.intermediate for g in group_table]``)."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(_VERSION[options.tls_min_version])
    ctx.set_max_proto_version(_VERSION[options.tls_max_version])
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET)
    # Free OpenSSL's 16 KB read/write buffers between messages: a half-done handshake
    # then holds ~N KB instead of ~70 KB (measured; issue #10 memory floods).
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)

    ctx.use_certificate(certificate)
    ctx.use_privatekey(private_key)
    for extra in chain:
        ctx.add_extra_chain_cert(extra)
    ctx.check_privatekey()

    store = ctx.get_cert_store()
    assert store is not None
    add_trust(store, root, intermediates)
    ctx.add_client_ca(root)
    tls_verify.install(ctx, SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
    ctx.set_verify_depth(VERIFY_DEPTH)

    groups = ":".join(options.tls_groups).encode()
    # pyOpenSSL only has set_tmp_ecdh(one curve); the private binding is measured to work.
    if _lib.SSL_CTX_set1_curves_list(ctx._context, groups) != 1:
        raise TlsConfigError(f"TLS groups not supported by OpenSSL: {options.tls_groups}")

    ctx.set_session_id(session_id or session_id_context(root, intermediates, options))
    if options.resumption:
        ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        ctx.set_timeout(SESSION_LIFETIME)
    else:
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return ctx
