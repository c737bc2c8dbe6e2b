"""Per-group CRLs (RFC 5280 §5). Pure: no I/O, time is an argument.

One CRL per group intermediate, signed by that intermediate (a "direct" CRL, no
IssuingDistributionPoint). Each CRL carries cRLNumber and authorityKeyIdentifier;
each entry carries a reasonCode unless the reason is unspecified (RFC 5280
§5.3.1: "the reason code CRL entry extension SHOULD be absent instead of using
the unspecified (0) reasonCode value").

The caller (composition root) owns the CRL number: it must strictly increase per
issuer, e.g. a store counter bumped on every publication.

Performance: entries are handed to cryptography's builder in one list, avoiding
``add_revoked_certificate``'s copy-per-call (quadratic for large CRLs).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from revocation.reasons import to_flag

__all__ = [
    "MAX_CRL_NUMBER",
    "RevokedEntry",
    "build_crl",
    "check_issuer",
    "crl_der",
    "crl_pem",
    "signature_hash_for",
]

# RFC 5280 §5.2.3: cRLNumber is at most 20 octets (a non-negative INTEGER).
MAX_CRL_NUMBER = (1 << 159) - 1
_MAX_SERIAL_BITS = 159  # 20 octets, positive


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One revoked certificate as the store reports it.

    ``reason`` is any spelling :func:`revocation.reasons.parse_revocation_reason`
    accepts (``None`` means unspecified); ``revoked_at`` must be timezone-aware.
    """

    serial: int
    revoked_at: _dt.datetime
    reason: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.serial, int) or isinstance(self.serial, bool):
            raise TypeError(f"serial must be int, not {type(self.serial).__name__}")
        if self.serial <= 0 or self.serial.bit_length() > _MAX_SERIAL_BITS:
            raise ValueError(f"serial {self.serial} is not a positive integer of at most 20 octets")
        _check_aware("revoked_at", self.revoked_at)
        if self.reason is not None and not isinstance(self.reason, str):
            raise TypeError(f"reason must be str or None, not {type(self.reason).__name__}")
        to_flag(self.reason)  # ValueError (UnknownReason) now rather than at signing time


def _check_aware(name: str, value: object) -> None:
    if not isinstance(value, _dt.datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()})")


def _naive_utc(value: _dt.datetime) -> _dt.datetime:
    return value.astimezone(_dt.UTC).replace(tzinfo=None)


def signature_hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.HashAlgorithm | None:
    """The digest to sign with: SHA-256 for RSA and P-256, matched size for larger EC
    curves, None for Ed25519/Ed448 (which hash internally)."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size > 384:
            return hashes.SHA512()
        if key.curve.key_size > 256:
            return hashes.SHA384()
        return hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    raise TypeError(f"unsupported issuer key type {type(key).__name__}")


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_issuer(
    issuer_cert: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    *,
    key_usage: str | None = "crl_sign",
) -> None:
    """ValueError unless ``issuer_key`` belongs to ``issuer_cert`` and the certificate
    is a CA allowed ``key_usage`` (a ``x509.KeyUsage`` attribute name; None skips the
    check) if it has a KeyUsage extension."""
    if not isinstance(issuer_cert, x509.Certificate):
        raise TypeError(f"issuer_cert must be x509.Certificate, not {type(issuer_cert).__name__}")
    signature_hash_for(issuer_key)  # TypeError for unsupported key types
    if _spki(issuer_key.public_key()) != _spki(issuer_cert.public_key()):
        raise ValueError(f"issuer key does not match certificate {issuer_cert.subject.rfc4514_string()}")
    try:
        bc = issuer_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise ValueError(f"{issuer_cert.subject.rfc4514_string()} is not a CA certificate")
    if key_usage is None:
        return
    try:
        ku = issuer_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not getattr(ku, key_usage):
        raise ValueError(f"{issuer_cert.subject.rfc4514_string()} lacks keyUsage {key_usage}")


def _authority_key_identifier(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _revoked_certificate(entry: RevokedEntry) -> x509.RevokedCertificate:
    builder = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
    flag = to_flag(entry.reason)
    if flag is not x509.ReasonFlags.unspecified:
        builder = builder.add_extension(x509.CRLReason(flag), critical=False)
    return builder.build()


def build_crl(
    issuer_cert: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    revoked: Iterable[RevokedEntry],
    crl_number: int,
    this_update: _dt.datetime,
    next_update: _dt.datetime,
    extensions: Sequence[x509.Extension] = (),
) -> x509.CertificateRevocationList:
    """Sign a CRL for ``issuer_cert`` listing ``revoked``; ``extensions`` are added after
    cRLNumber and authorityKeyIdentifier (Freshest CRL on a complete CRL, Delta CRL
    Indicator on a delta: revocation/crl_delta.py).

    TypeError for wrong argument types; ValueError for a key that does not match,
    a non-CA issuer, naive datetimes, ``next_update <= this_update``, a CRL number
    out of range, duplicate serials or an unknown/``removeFromCRL`` reason.
    """
    check_issuer(issuer_cert, issuer_key)
    if not isinstance(crl_number, int) or isinstance(crl_number, bool):
        raise TypeError(f"crl_number must be int, not {type(crl_number).__name__}")
    if not 0 <= crl_number <= MAX_CRL_NUMBER:
        raise ValueError(f"crl_number {crl_number} outside 0..2**159-1")
    _check_aware("this_update", this_update)
    _check_aware("next_update", next_update)
    if next_update <= this_update:
        raise ValueError("next_update must be later than this_update")

    entries: list[x509.RevokedCertificate] = []
    seen: set[int] = set()
    for entry in revoked:
        if not isinstance(entry, RevokedEntry):
            raise TypeError(f"revoked entries must be RevokedEntry, not {type(entry).__name__}")
        if entry.serial in seen:
            raise ValueError(f"serial {entry.serial:#x} listed twice")
        seen.add(entry.serial)
        entries.append(_revoked_certificate(entry))

    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer_cert.subject,
        last_update=_naive_utc(this_update),
        next_update=_naive_utc(next_update),
        extensions=[
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(crl_number)),
            x509.Extension(x509.AuthorityKeyIdentifier.oid, False, _authority_key_identifier(issuer_cert)),
            *extensions,
        ],
        revoked_certificates=entries,
    )
    return builder.sign(issuer_key, signature_hash_for(issuer_key))


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    """DER, for ``application/pkix-crl`` (RFC 2585) and CDP URLs."""
    return crl.public_bytes(serialization.Encoding.DER)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    """PEM (``-----BEGIN X509 CRL-----``), for files and FreeRADIUS-style CA dirs."""
    return crl.public_bytes(serialization.Encoding.PEM)
