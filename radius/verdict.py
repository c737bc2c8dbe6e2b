"""What RADIUS would answer a certificate, without a device: the core of ``certgate explain``.

Pure: certificates, a time and the same ``authorize`` callable the RADIUS server is given
in; a ``Verdict`` (decision, reason, group, the Access-Accept attributes) out.

An EAP-TLS authentication decides in two steps, and so does ``evaluate``:

1. OpenSSL's ``X509_verify_cert`` over the chain the device sends, against the trust store
   the TLS side uses (the root and every group intermediate, ``tls_context.add_trust``; no
   partial chains) with the purpose the TLS server sets (``ssl_client``: clientAuth EKU and
   keyUsage), at the given time: signature chain up to the root, validity of every
   certificate, basic constraints, name constraints. An error is mapped to a reason by the
   table the handshake uses (``reasons.X509_ERROR_REASONS``);
2. ``authorize`` (radius.authorize, through the callable the server runs): group by exact
   intermediate, validity, clientAuth, revocation (holds included), inventory, outage.

What only a real handshake checks (and explain therefore does not): that the device holds
the private key (CertificateVerify), the TLS versions, ciphers and key-exchange groups it
offers, OpenSSL's security-level floor on key sizes and signature hashes, the verify depth
limit (4 intermediates), and everything on the RADIUS side (client secret,
Message-Authenticator, fragmentation, conversation limits).

One ordering difference: the handshake runs ``authorize`` from the verify callback at depth
0, before OpenSSL's name-constraint check; here verification completes first. A certificate
that both violates a group CA's name constraints and is denied by ``authorize`` is therefore
``chain_invalid`` here and the ``authorize`` reason in RADIUS (certgate's own intermediates
carry no name constraints).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from OpenSSL import crypto
from OpenSSL._util import lib as _lib

from pki.groups import GroupTable
from radius.authorize import Allow, Decision, Deny, authorize
from radius.eap_tls import AuthorizeFn
from radius.reasons import X509_ERROR_REASONS, Reason
from radius.reply import accept_attributes
from radius.tls_context import add_trust
from revocation.snapshot import RevocationIndex

Issued = Callable[[str, int], bool | None]


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    chain: tuple[x509.Certificate, ...]  # verified chain, leaf first; () if it did not verify
    attributes: tuple[tuple[int, bytes], ...]  # Access-Accept attributes; () on reject

    @property
    def accepted(self) -> bool:
        return isinstance(self.decision, Allow)

    @property
    def reason(self) -> Reason:
        d = self.decision
        if isinstance(d, Allow):
            return Reason.QUARANTINED if d.quarantined else Reason.OK
        return d.reason

    @property
    def detail(self) -> str:
        return "" if isinstance(self.decision, Allow) else self.decision.detail

    @property
    def group(self) -> str | None:
        d = self.decision
        return d.group.name if isinstance(d, Allow) else d.group


def policy(groups: GroupTable, revoked: RevocationIndex, issued: Issued | None = None,
           closed: Callable[[], bool] | None = None) -> AuthorizeFn:
    """The decision the RADIUS server is built with: ``closed()`` true (the store has been
    unreachable past the outage grace) rejects everything, else ``authorize``."""

    def decide(leaf: x509.Certificate, chain: Sequence[x509.Certificate] | None, resumed: bool,
               now: dt.datetime) -> Decision:
        if closed is not None and closed():
            return Deny(Reason.STORE_UNAVAILABLE, "store unreachable past [storage] outage_grace")
        return authorize(leaf, chain, resumed, groups, revoked, now, issued)

    return decide


def evaluate(leaf: x509.Certificate, presented: Sequence[x509.Certificate], *,
             root: x509.Certificate, intermediates: Sequence[x509.Certificate],
             decide: AuthorizeFn, now: dt.datetime) -> Verdict:
    """``presented``: the certificates the device would send after its leaf (may be empty:
    the group intermediates are in the trust store)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    chain = verify_chain(leaf, presented, root, intermediates, now)
    if isinstance(chain, Deny):
        return Verdict(chain, (), ())
    decision = decide(leaf, chain, False, now)
    attributes = tuple(accept_attributes(decision)) if isinstance(decision, Allow) else ()
    return Verdict(decision, tuple(chain), attributes)


def verify_chain(leaf: x509.Certificate, presented: Sequence[x509.Certificate],
                 root: x509.Certificate, intermediates: Sequence[x509.Certificate],
                 now: dt.datetime) -> list[x509.Certificate] | Deny:
    """Step 1: the verified chain (leaf first), or the Deny the handshake would end with."""
    store = crypto.X509Store()
    add_trust(store, root, intermediates)
    store.set_time(now.astimezone(dt.UTC))  # replaces the store's parameters: purpose after
    if _lib.X509_STORE_set_purpose(store._store, _lib.X509_PURPOSE_SSL_CLIENT) != 1:
        raise RuntimeError("X509_STORE_set_purpose(ssl_client) failed")
    context = crypto.X509StoreContext(
        store, crypto.X509.from_cryptography(leaf),
        [crypto.X509.from_cryptography(c) for c in presented])
    try:
        verified = context.get_verified_chain()
    except crypto.X509StoreContextError as exc:
        code, depth, text = (list(exc.errors) + [0, 0, str(exc)])[:3]
        reason = X509_ERROR_REASONS.get(code, Reason.CHAIN_INVALID)
        return Deny(reason, f"X509 verify error {code} at depth {depth}: {text}")
    return [c.to_cryptography() for c in verified]


def parse_certificates(data: bytes) -> list[x509.Certificate]:
    """One or more PEM certificates, or one DER certificate; ValueError says what is wrong.
    Names, serial and validity are decoded here (cryptography decodes lazily), so a broken
    certificate is refused up front, not half-way through an explanation."""
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise ValueError(f"not a PEM certificate ({_first_line(exc)})") from None
    else:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError as exc:
            raise ValueError(f"neither PEM nor a DER certificate ({_first_line(exc)})") from None
    for i, cert in enumerate(certs):
        try:
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
            _ = (cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc)
            cert.extensions  # noqa: B018 - forces the lazy decoding
        except (ValueError, TypeError) as exc:
            raise ValueError(f"certificate {i + 1} cannot be decoded ({_first_line(exc)})"
                             ) from None
    return certs


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
