"""Who may hold a RadSec connection, once TLS has verified the peer's chain. Pure.

OpenSSL has already checked, in the handshake, that the NAS's certificate chains to a
``[radsec] client_ca`` anchor and is inside its validity window. What it cannot know is
certgate's own state, checked here on the leaf:

* a NAS certificate certgate issued (under a group intermediate, profile ``nas``) that has
  been revoked or put on hold is refused (``revoked``), from the same in-memory index
  EAP-TLS uses, so ``certgate revoke`` takes effect on the next connection;
* a *device* certificate (one the inventory lists as a device) is not a NAS credential:
  a laptop's EAP-TLS certificate must not open a RadSec session (``device_certificate``);
* under a group intermediate but not in the inventory as a ``nas`` certificate (minted with
  a stolen CA key, or never issued): ``not_issued``, decided by the shell's store lookup
  (``nas_verdict``) when ``[radius] require_inventory`` is on;
* the client entry may pin the certificate's name (``radsec_name``): a DNS SAN or, when the
  certificate has no DNS SAN, the subject CN must equal it, case-insensitively
  (``name_mismatch``). That is what a cloud controller (whose source addresses are a whole
  range) is told apart by.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.x509.oid import NameOID

from pki.groups import GroupTable
from radius.authorize import group_by_signature
from radius.options import RadiusClient
from revocation.snapshot import RevocationIndex


class PeerRefusal(StrEnum):
    """Why a verified RadSec peer was refused: the ``result`` label of the handshakes."""

    REVOKED = "revoked"
    DEVICE_CERTIFICATE = "device_certificate"
    NAME_MISMATCH = "name_mismatch"
    NO_CERTIFICATE = "no_certificate"
    NOT_ISSUED = "not_issued"  # under a group CA, but not a NAS certificate of the inventory


@dataclass(frozen=True, slots=True)
class PeerVerdict:
    refusal: PeerRefusal | None
    detail: str
    subject: str  # the leaf's subject (RFC 4514), for the log
    group: str | None  # the group intermediate that issued it, when one of ours did
    serial: int | None = None  # with group: what a later revocation is matched against


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The names a pin is compared with: every DNS SAN, else the subject CNs (lower case)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        dns = []
    if dns:
        return tuple(dns)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return tuple(str(a.value).lower() for a in cns)


def check_peer(
    der: bytes | None,
    client: RadiusClient,
    groups: GroupTable,
    revoked: RevocationIndex,
    is_device: Callable[[str, int], bool | None],
) -> PeerVerdict:
    """The verdict on the TLS-verified leaf ``der`` of a connection matched to ``client``."""
    if not der:
        return PeerVerdict(PeerRefusal.NO_CERTIFICATE, "no client certificate", "-", None)
    cert = x509.load_der_x509_certificate(der)
    subject = cert.subject.rfc4514_string()
    group = group_by_signature(cert, groups)
    serial = cert.serial_number
    if group is not None:
        if revoked.is_revoked(group.name, serial):
            return PeerVerdict(PeerRefusal.REVOKED, f"serial {serial:x} of group {group.name} "
                               "is revoked or on hold", subject, group.name)
        if is_device(group.name, serial):
            return PeerVerdict(PeerRefusal.DEVICE_CERTIFICATE,
                               f"serial {serial:x} is a device certificate of group "
                               f"{group.name}, not a NAS certificate (certs issue --profile nas)",
                               subject, group.name)
    if client.radsec_name is not None:
        names = certificate_names(cert)
        if client.radsec_name.lower() not in names:
            return PeerVerdict(PeerRefusal.NAME_MISMATCH,
                               f"certificate names {', '.join(names) or 'nothing'}, client "
                               f"{client.name} pins {client.radsec_name}", subject,
                               group.name if group else None)
    return PeerVerdict(None, "", subject, group.name if group else None,
                       serial if group else None)


def nas_verdict(verdict: PeerVerdict, profile: str | None, group: str | None) -> PeerVerdict:
    """``verdict`` after the inventory lookup of a certificate one of our group CAs issued:
    ``profile``/``group`` of its row (None: no row). Anything but a ``nas`` row of the same
    group is ``not_issued``."""
    if verdict.refusal is not None or verdict.group is None:
        return verdict
    if profile == "nas" and group == verdict.group:
        return verdict
    if profile is None:
        what = "not in the inventory"
    elif profile != "nas":
        what = f"recorded as {profile}, not nas"
    else:
        what = f"recorded for group {group}"
    return PeerVerdict(PeerRefusal.NOT_ISSUED,
                       f"serial {verdict.serial:x} of group {verdict.group} is {what} "
                       "(issue NAS certificates with certs issue --profile nas)",
                       verdict.subject, verdict.group, verdict.serial)
