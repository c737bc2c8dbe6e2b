"""Certificates issued elsewhere (an earlier SCEP server, a restored key) that a group takes
into its inventory: parsed from PEM or DER, and accepted only if the group's intermediate
signed them (the signature is verified, never only the issuer name) and they are not CAs."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


def parse_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file (one or many), or the one certificate of a DER file;
    ValueError (saying which) if there is none or one does not decode."""
    if PEM_BEGIN in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise ValueError(f"a PEM certificate in it does not decode ({exc})") from None
    else:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise ValueError("not a PEM or DER certificate") from None
    try:
        for cert in certs:  # names decode lazily: a bad one fails here, not later
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
            _ = cert.extensions
    except (ValueError, TypeError) as exc:
        raise ValueError(f"a certificate in it does not decode ({exc})") from None
    return certs


def refusal(cert: x509.Certificate, group: str, intermediate: x509.Certificate) -> str | None:
    """Why `cert` cannot be imported into `group`, or None if the intermediate issued it."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is not None and bc.ca:
        return "a CA certificate (basicConstraints CA:TRUE): only device certificates are imported"
    if cert.issuer != intermediate.subject:
        return (f"issued by {cert.issuer.rfc4514_string()!r}, not by group {group}'s "
                f"intermediate {intermediate.subject.rfc4514_string()!r}")
    try:
        cert.verify_directly_issued_by(intermediate)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return (f"names group {group}'s intermediate as its issuer but its signature does not "
                "verify with that intermediate's key (forged, or another CA with the same name)")
    return None


def expired(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_after_utc <= now
