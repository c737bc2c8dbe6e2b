"""Certificate profiles: fill cryptography's CertificateBuilder for each role.

Pure: time and serial are arguments. Roles: root, group intermediate, RADIUS
server, SCEP RA, device (client). Device certificates carry clientAuth, the
group's CRL Distribution Point and OCSP URL under the public URL.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki.keys import PrivateKey

BACKDATE = dt.timedelta(minutes=5)


def new_serial() -> int:
    """Random positive serial with 128 bits of entropy (RFC 5280 allows up to 20 octets)."""
    return secrets.randbits(128) | (1 << 128)


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _base(
    subject: x509.Name,
    issuer: x509.Name,
    public_key,
    serial: int,
    now: dt.datetime,
    days: int,
    not_after_cap: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    not_after = now + dt.timedelta(days=days)
    if not_after_cap is not None and not_after > not_after_cap:
        not_after = not_after_cap
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _aki(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ku(**flags: bool) -> x509.KeyUsage:
    names = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"]
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def _end_entity_key_usage(public_key) -> x509.KeyUsage:
    """digitalSignature; RSA keys also keyEncipherment (TLS 1.2 RSA key transport)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _ku(digital_signature=True)
    return _ku(digital_signature=True, key_encipherment=True)


def root_certificate(
    key: PrivateKey, common_name: str, organization: str, now: dt.datetime, days: int
) -> x509.Certificate:
    subject = name(common_name, organization)
    builder = (
        _base(subject, subject, key.public_key(), new_serial(), now, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ku(key_cert_sign=True, crl_sign=True), critical=True)
    )
    return builder.sign(key, _hash_for(key))


def intermediate_certificate(
    key: PrivateKey,
    group: str,
    organization: str,
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    now: dt.datetime,
    days: int,
) -> x509.Certificate:
    subject = name(f"certgate {group} CA", organization)
    builder = (
        _base(subject, root_cert.subject, key.public_key(), new_serial(), now, days,
              root_cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ku(key_cert_sign=True, crl_sign=True, digital_signature=True), critical=True)
        .add_extension(_aki(root_cert), critical=False)
    )
    return builder.sign(root_key, _hash_for(root_key))


def server_certificate(
    public_key,
    server_name: str,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    now: dt.datetime,
    days: int,
) -> x509.Certificate:
    ku = _end_entity_key_usage(public_key)
    builder = (
        _base(name(server_name), issuer_cert.subject, public_key, new_serial(), now, days,
              issuer_cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(ku, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False)
        .add_extension(_aki(issuer_cert), critical=False)
    )
    return builder.sign(issuer_key, _hash_for(issuer_key))


def ra_certificate(
    public_key: rsa.RSAPublicKey,
    group: str,
    organization: str,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    now: dt.datetime,
    days: int,
) -> x509.Certificate:
    """SCEP RA: RSA, digitalSignature + keyEncipherment (RFC 8894 §2.1.2), no clientAuth."""
    builder = (
        _base(name(f"certgate {group} SCEP RA", organization), issuer_cert.subject, public_key,
              new_serial(), now, days, issuer_cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_ku(digital_signature=True, key_encipherment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.5.5.7.3.28")]),
                       critical=False)  # id-kp-cmcRA
        .add_extension(_aki(issuer_cert), critical=False)
    )
    return builder.sign(issuer_key, _hash_for(issuer_key))


END_ENTITY_PROFILES = ("device", "nas")


def device_certificate(
    public_key,
    subject: x509.Name,
    sans: Sequence[x509.GeneralName],
    group: str,
    public_url: str,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    serial: int,
    now: dt.datetime,
    days: int,
    profile: str = "device",
) -> x509.Certificate:
    """Client certificate for 802.1X: clientAuth, CDP, Freshest CRL (the delta) and OCSP
    under the public URL.

    ``profile="nas"``: the certificate a NAS or RADIUS proxy presents on a RadSec (RFC
    6614) connection: clientAuth and serverAuth (a RadSec peer is a TLS client towards
    certgate and a server for CoA), and the CN as a DNS SAN when no SAN is given, so a
    ``radsec_name`` pin and peers' host-name checks find it. The inventory records it with
    profile ``nas``, which keeps it out of the EAP-TLS device allow-list."""
    if profile not in END_ENTITY_PROFILES:
        raise ValueError(f"profile must be one of {END_ENTITY_PROFILES}")
    ekus = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if profile == "nas":
        ekus.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if not sans:
            cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            sans = [x509.DNSName(str(cns[0].value))] if cns else []
    ku = _end_entity_key_usage(public_key)
    builder = (
        _base(subject, issuer_cert.subject, public_key, serial, now, days,
              issuer_cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(ku, critical=True)
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .add_extension(_aki(issuer_cert), critical=False)
        .add_extension(
            x509.CRLDistributionPoints([
                x509.DistributionPoint(
                    full_name=[x509.UniformResourceIdentifier(f"{public_url}/crl/{group}.crl")],
                    relative_name=None, reasons=None, crl_issuer=None,
                )
            ]),
            critical=False,
        )
        .add_extension(  # RFC 5280 §5.2.6: where the delta CRLs of that CRL are
            x509.FreshestCRL([
                x509.DistributionPoint(
                    full_name=[x509.UniformResourceIdentifier(
                        f"{public_url}/crl/delta/{group}.crl")],
                    relative_name=None, reasons=None, crl_issuer=None,
                )
            ]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess([
                x509.AccessDescription(
                    x509.oid.AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier(f"{public_url}/ocsp/{group}"),
                )
            ]),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, _hash_for(issuer_key))
