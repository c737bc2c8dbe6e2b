"""Apple configuration profiles (.mobileconfig): SCEP enrollment + EAP-TLS Wi-Fi / Ethernet.

Pure: plain values in, the profile as a dict (`build`) or XML plist bytes (`render`) out;
certgate/commands/profile_apple.py reads the config, the PKI and the store.

The keys and their values follow Apple's device-management schema, apple/device-management
(mdm/profiles/*.yaml, commit b6202ca2 of 2024-10-21, the source of
https://developer.apple.com/documentation/devicemanagement/scep and the Wi-Fi, Root and
Ethernet pages):

* TopLevel.yaml - required: PayloadContent, PayloadIdentifier, PayloadType ("Configuration"),
  PayloadUUID, PayloadVersion (1); we also set PayloadDisplayName, PayloadDescription,
  PayloadOrganization and PayloadScope ("System" or "User", macOS).
* CommonPayloadKeys.yaml - required in every payload: PayloadIdentifier, PayloadType,
  PayloadUUID, PayloadVersion (1); PayloadDisplayName is optional there, set anyway.
* com.apple.security.root.yaml - PayloadContent (required, the DER certificate),
  PayloadCertificateFileName (optional).
* com.apple.security.scep.yaml - PayloadContent (required) is a dictionary with URL
  (required), Name, Subject (an array of RDNs, each an array of [type, value] pairs),
  Challenge, Keysize (1024, 2048 or 4096), "Key Type" ("Always 'RSA'"), "Key Usage" (bitmask:
  1 signing, 4 encryption), CAFingerprint (data), Retries, RetryDelay, SubjectAltName
  (rfc822Name, dNSName, uniformResourceIdentifier, ntPrincipalName: a string or an array).
* com.apple.wifi.managed.yaml - SSID_STR, HIDDEN_NETWORK, AutoJoin, EncryptionType (WEP, WPA,
  WPA2, WPA3, Any, None; since iOS 16 / macOS 13 "WPA2" joins WPA2 or WPA3 networks, "WPA3"
  WPA3 only), PayloadCertificateUUID (the identity payload: the SCEP one), and
  EAPClientConfiguration with AcceptEAPTypes (required; 13 = EAP-TLS),
  PayloadCertificateAnchorUUID (the root payload: trust only it), TLSTrustedServerNames (the
  RADIUS server certificate names accepted), TLSMinimumVersion / TLSMaximumVersion ("1.0" to
  "1.3"; defaults 1.0 / 1.2, so we always set both), UserName.
* com.apple.firstactiveethernet.managed.yaml - documents only "ANY: keys relevant to 802.1x
  configuration"; we put the 802.1X keys of the Wi-Fi payload in it (EAPClientConfiguration,
  PayloadCertificateUUID) and nothing Wi-Fi specific. Apple does not list them one by one.

CAFingerprint: Apple's SCEP client (apple-open-source/macos,
Security/OSX/sec/Security/SecSCEP.c, SecSCEPValidateCACertMessage) accepts only an MD5 (16
bytes) or SHA-1 (20 bytes) fingerprint - any other length fails the enrollment - and compares
it with the top of the chain it builds from the GetCACert certificates (each certificate tried
as a leaf, the others as issuers). So the fingerprint is SHA-1, of `chain_top(...)` of what
GetCACert returns. When the root is not in GetCACert the device's own stores can extend that
chain (a device that already holds the root builds RA -> intermediate -> root): the shell then
leaves CAFingerprint out rather than pin a certificate the device may not pick.
"""

from __future__ import annotations

import plistlib
import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

EAP_TLS = 13
KEY_SIZES = (1024, 2048, 4096)  # com.apple.security.scep.yaml Keysize rangelist
KEY_USAGE_SIGNING = 1
KEY_USAGE_ENCRYPTION = 4
ENCRYPTION_TYPES = ("WPA2", "WPA3")  # enterprise choices; WPA2 also joins WPA3 networks
TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
SCOPES = ("System", "User")
# SubjectAltName dictionary keys, from certgate's SAN prefixes (enrollment/challenges: dns:,
# email:, uri:)
SAN_KEYS = {"dns": "dNSName", "email": "rfc822Name", "uri": "uniformResourceIdentifier"}
# ASN.1 short names Apple documents for Subject ("C, L, ST, O, OU, CN"); others as dotted OIDs
SUBJECT_NAMES = ("C", "L", "ST", "O", "OU", "CN")


@dataclass(frozen=True)
class Scep:
    url: str  # the group's SCEP endpoint (GetCACaps is URL?operation=GetCACaps&message=Name)
    name: str  # the CA instance name Apple sends as `message`
    subject: tuple[tuple[str, str], ...]  # (type, value) RDNs in order, e.g. (("CN", "x"),)
    challenge: str | None
    keysize: int = 2048
    key_usage: int = KEY_USAGE_SIGNING | KEY_USAGE_ENCRYPTION
    retries: int = 3
    retry_delay: int = 10
    sans: tuple[str, ...] = ()  # certgate form: dns:NAME, email:ADDR, uri:URI
    ca_fingerprint: bytes | None = None  # SHA-1 of chain_top(GetCACert certificates)


@dataclass(frozen=True)
class Network:
    server_names: tuple[str, ...]  # TLSTrustedServerNames: the RADIUS certificate's names
    ssid: str | None = None  # Wi-Fi payload when set
    wired: bool = False  # Ethernet (first active) payload
    encryption: str = "WPA2"
    hidden: bool = False
    auto_join: bool = True
    tls_min: str = "1.2"
    tls_max: str = "1.3"
    username: str | None = None  # EAP identity; Apple takes it from the certificate otherwise


@dataclass(frozen=True)
class Profile:
    identifier: str  # reverse-DNS PayloadIdentifier of the profile; payloads append a suffix
    uuid: str  # the profile's PayloadUUID; payload UUIDs derive from it (uuid5)
    display_name: str
    organization: str
    root_der: bytes
    root_name: str
    scep: Scep
    network: Network
    scope: str = "System"
    description: str = field(default="")


def payload_uuid(profile_uuid: str, role: str) -> str:
    """A payload's UUID: uuid5 of the profile UUID and the payload's role, upper case (the
    form Apple's tools write), so one --uuid gives the same profile every time."""
    return str(uuidlib.uuid5(uuidlib.UUID(profile_uuid), role)).upper()


def sha1_fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA1())  # noqa: S303 - what Apple's SCEP client compares


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert is issuer or cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def chain_top(certs: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The certificate Apple's SCEP client takes as the CA of a GetCACert answer: each
    certificate in turn is a leaf, its chain is built from the others, and the top of every
    chain longer than one must be the same certificate (SecSCEPValidateCACertMessage). One
    certificate alone (application/x-x509-ca-cert) is the CA. None when there is no such
    certificate (chains disagree, or nothing chains)."""
    if len(certs) == 1:
        return certs[0]
    top: x509.Certificate | None = None
    for leaf in certs:
        current, seen = leaf, [leaf]
        while True:
            issuer = next((c for c in certs if c not in seen and _issued_by(current, c)), None)
            if issuer is None:
                break
            seen.append(issuer)
            current = issuer
        if len(seen) == 1:
            continue
        if top is None:
            top = current
        elif top != current:
            return None
    return top


def _check(p: Profile) -> None:
    s, n = p.scep, p.network
    if s.keysize not in KEY_SIZES:
        raise ValueError(f"Keysize {s.keysize}: Apple's SCEP payload takes {KEY_SIZES}")
    if not 0 < s.key_usage <= (KEY_USAGE_SIGNING | KEY_USAGE_ENCRYPTION) or s.key_usage == 2:
        raise ValueError(f"Key Usage {s.key_usage}: 1 (signing), 4 (encryption) or 5 (both)")
    if s.ca_fingerprint is not None and len(s.ca_fingerprint) not in (16, 20):
        raise ValueError("CAFingerprint must be SHA-1 (20 bytes) or MD5 (16 bytes): Apple's "
                         "SCEP client refuses any other length")
    if n.ssid is None and not n.wired:
        raise ValueError("a profile needs a Wi-Fi network (ssid) or wired 802.1X")
    if n.ssid is not None and not 1 <= len(n.ssid.encode()) <= 32:
        raise ValueError(f"an SSID is 1-32 bytes, got {len(n.ssid.encode())}")
    if n.encryption not in ENCRYPTION_TYPES:
        raise ValueError(f"EncryptionType {n.encryption!r}: expected one of {ENCRYPTION_TYPES}")
    if (n.tls_min not in TLS_VERSIONS or n.tls_max not in TLS_VERSIONS
            or n.tls_min > n.tls_max):
        raise ValueError(f"TLS versions {n.tls_min}-{n.tls_max}: expected 1.0-1.3, min <= max")
    if p.scope not in SCOPES:
        raise ValueError(f"PayloadScope {p.scope!r}: expected System or User")
    if not s.subject:
        raise ValueError("the SCEP Subject needs at least a CN")
    for kind, _ in s.subject:
        if kind not in SUBJECT_NAMES and not all(part.isdigit() for part in kind.split(".")):
            raise ValueError(f"Subject type {kind!r}: one of {SUBJECT_NAMES} or a dotted OID")
    for san in s.sans:
        kind, sep, value = san.partition(":")
        if not sep or kind not in SAN_KEYS or not value:
            raise ValueError(f"SAN {san!r}: expected dns:NAME, email:ADDRESS or uri:URI")


def _subject_alt_name(sans: Sequence[str]) -> dict[str, str | list[str]]:
    grouped: dict[str, list[str]] = {}
    for san in sans:
        kind, _, value = san.partition(":")
        grouped.setdefault(SAN_KEYS[kind], []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in grouped.items()}


def _common(p: Profile, role: str, payload_type: str, display: str) -> dict:
    return {"PayloadType": payload_type, "PayloadVersion": 1,
            "PayloadIdentifier": f"{p.identifier}.{role}",
            "PayloadUUID": payload_uuid(p.uuid, role), "PayloadDisplayName": display}


def _eap(p: Profile, root_uuid: str) -> dict:
    n = p.network
    eap = {"AcceptEAPTypes": [EAP_TLS], "PayloadCertificateAnchorUUID": [root_uuid],
           "TLSTrustedServerNames": list(n.server_names), "TLSMinimumVersion": n.tls_min,
           "TLSMaximumVersion": n.tls_max}
    if n.username:
        eap["UserName"] = n.username
    return eap


def build(p: Profile) -> dict:
    """The profile as a plist dictionary (ValueError names what is wrong)."""
    _check(p)
    s, n = p.scep, p.network
    root = {**_common(p, "root", "com.apple.security.root", p.root_name),
            "PayloadCertificateFileName": "root.cer", "PayloadContent": p.root_der}
    scep_content: dict = {"URL": s.url, "Name": s.name,
                          "Subject": [[[kind, value]] for kind, value in s.subject],
                          "Key Type": "RSA", "Keysize": s.keysize, "Key Usage": s.key_usage,
                          "Retries": s.retries, "RetryDelay": s.retry_delay}
    if s.challenge is not None:
        scep_content["Challenge"] = s.challenge
    if s.sans:
        scep_content["SubjectAltName"] = _subject_alt_name(s.sans)
    if s.ca_fingerprint is not None:
        scep_content["CAFingerprint"] = s.ca_fingerprint
    scep = {**_common(p, "scep", "com.apple.security.scep", f"SCEP: {s.name}"),
            "PayloadContent": scep_content}
    payloads = [root, scep]
    if n.ssid is not None:
        payloads.append({
            **_common(p, "wifi", "com.apple.wifi.managed", f"Wi-Fi: {n.ssid}"),
            "SSID_STR": n.ssid, "HIDDEN_NETWORK": n.hidden, "AutoJoin": n.auto_join,
            "EncryptionType": n.encryption, "PayloadCertificateUUID": scep["PayloadUUID"],
            "EAPClientConfiguration": _eap(p, root["PayloadUUID"])})
    if n.wired:
        payloads.append({
            **_common(p, "ethernet", "com.apple.firstactiveethernet.managed",
                      "Ethernet 802.1X (first active)"),
            "PayloadCertificateUUID": scep["PayloadUUID"],
            "EAPClientConfiguration": _eap(p, root["PayloadUUID"])})
    return {"PayloadType": "Configuration", "PayloadVersion": 1,
            "PayloadIdentifier": p.identifier, "PayloadUUID": str(uuidlib.UUID(p.uuid)).upper(),
            "PayloadDisplayName": p.display_name, "PayloadOrganization": p.organization,
            "PayloadDescription": p.description or (
                f"Enrolls a device certificate over SCEP ({s.url}) and joins the network "
                "with EAP-TLS, trusting only the root in this profile."),
            "PayloadScope": p.scope, "PayloadContent": payloads}


def render(p: Profile) -> bytes:
    """The XML plist an Apple device installs (unsigned: sign it, or let the MDM sign it)."""
    return plistlib.dumps(build(p), fmt=plistlib.FMT_XML, sort_keys=True)


def root_der(pem_or_der: bytes) -> bytes:
    try:
        cert = x509.load_pem_x509_certificate(pem_or_der)
    except ValueError:
        cert = x509.load_der_x509_certificate(pem_or_der)
    return cert.public_bytes(serialization.Encoding.DER)
