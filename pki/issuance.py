"""Sign a device certificate from a group intermediate (CPU only: run it off the event loop).

Issuance returns what it issued; recording it (before anyone sees it) is the caller's job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509

from pki import profiles
from pki.hierarchy import GroupCa


def sign_device(public_key, subject: x509.Name, sans: Sequence[x509.GeneralName],  # noqa: ANN001
                group: GroupCa, public_url: str, serial: int, now: dt.datetime,
                days: int) -> x509.Certificate:
    return profiles.device_certificate(public_key, subject, sans, group.name, public_url,
                                       group.certificate, group.key, serial, now, days)
