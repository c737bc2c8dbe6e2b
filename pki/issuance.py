"""Sign a device certificate from a group intermediate (CPU only: run it off the event loop).

Issuance returns what it issued; recording it (before anyone sees it) is the caller's job.
Every certificate is verified against the issuer's certificate before it is returned: a damaged
key (loaded without the RSA primality test, see pki.keys) fails here, not in a device."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from pki import profiles
from pki.errors import PkiError
from pki.hierarchy import GroupCa, Issuer


def sign_device(public_key, subject: x509.Name, sans: Sequence[x509.GeneralName],  # noqa: ANN001
                group: GroupCa | Issuer, public_url: str, serial: int, now: dt.datetime,
                days: int, profile: str = "device") -> x509.Certificate:
    cert = profiles.device_certificate(public_key, subject, sans, group.name, public_url,
                                       group.certificate, group.key, serial, now, days,
                                       profile)
    try:
        cert.verify_directly_issued_by(group.certificate)
    except (InvalidSignature, ValueError, TypeError):
        raise PkiError(f"group {group.name}: a signature by its CA key does not verify against "
                       "its certificate (damaged ca.key?): nothing was issued") from None
    return cert
