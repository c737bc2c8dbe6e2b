"""CMS SignedData (RFC 5652 §5) as SCEP uses it: one signer, signed attributes.

cryptography's pkcs7 module can neither add custom signed attributes nor verify,
so the structures are asn1crypto and the math is cryptography. Parsing accepts
BER (indefinite lengths, constructed OCTET STRINGs); building emits DER with
the signed-attribute SET OF sorted, because OpenSSL re-encodes that SET before
checking the signature.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as UnsupportedKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.serialization import Encoding

from enrollment import der
from enrollment.cms_ber import BerError, normalize, string_value, unwrap_explicit
from enrollment.cms_envelope import hash_for
from enrollment.scep_types import DigestAlgorithm, UnsupportedAlgorithm

__all__ = [
    "MalformedSignedData",
    "ParsedSignedData",
    "SignatureInvalid",
    "build_signed_data",
    "degenerate_signed_data",
    "digest",
    "load_signed_data",
    "verify_signature",
]


class MalformedSignedData(Exception):
    """Not a SignedData with one identifiable signer."""


class SignatureInvalid(Exception):
    """Signature, messageDigest or contentType check failed."""


def digest(alg: DigestAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(hash_for(alg))
    h.update(data)
    return h.finalize()


def _digest_algorithm(name: str) -> DigestAlgorithm | None:
    try:
        return DigestAlgorithm(name)
    except ValueError:
        return None


def load_certificate(der: bytes) -> x509.Certificate:
    """A certificate from a request, its names decoded now: cryptography decodes them
    lazily and raises TypeError (not ValueError) for, e.g., a BIT STRING value under
    an OID other than x500UniqueIdentifier, and x509.InvalidVersion for a version
    other than v1-v3. Raises ValueError for any of it."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except x509.InvalidVersion as exc:  # not a ValueError
        raise ValueError(f"certificate version: {exc}") from exc
    try:
        cert.subject  # noqa: B018 - decode now, refuse here
        cert.issuer  # noqa: B018
    except TypeError as exc:
        raise ValueError(f"certificate name cannot be decoded: {exc}") from exc
    return cert


def _load_cert(cert: asn1_x509.Certificate) -> x509.Certificate:
    raw = cert.dump()
    try:
        return load_certificate(raw)
    except ValueError:
        # BER inside a BER message: re-encode (the cert's own signature may
        # not survive; only its public key is used here).
        try:
            der = cert.dump(force=True)
        except AttributeError as exc:  # asn1crypto cannot re-encode a REAL (no .native)
            raise ValueError(f"certificate cannot be re-encoded: {exc}") from exc
        return load_certificate(der)


@dataclass(frozen=True)
class ParsedSignedData:
    """A SignedData parsed but not yet verified."""

    signed_data: cms.SignedData
    signer_info: cms.SignerInfo
    signer_certificate: x509.Certificate | None
    certificates: tuple[x509.Certificate, ...]
    content_type: str
    content: bytes | None
    attributes: dict[str, core.SetOf]
    digest_algorithm: DigestAlgorithm | None
    digest_algorithm_oid: str
    signature_algorithm: str
    signature: bytes

    def attribute(self, name: str) -> core.Asn1Value | None:
        """The single value of a signed attribute, or None if absent."""
        values = self.attributes.get(name)
        if values is None:
            return None
        return values[0]


def _signer_matches(sid: cms.SignerIdentifier, cert: asn1_x509.Certificate) -> bool:
    if sid.name == "issuer_and_serial_number":
        ias = sid.chosen
        if ias["serial_number"].native != cert.serial_number:
            return False
        # same bytes: same name, without asn1crypto's name normalization (~0.1 ms)
        return ias["issuer"].dump() == cert.issuer.dump() or ias["issuer"] == cert.issuer
    ski = sid.chosen.native
    return ski == cert.key_identifier or ski == cert.public_key.sha1


class _LenientEncapsulatedContentInfo(cms.EncapsulatedContentInfo):
    # eContent as a raw value: asn1crypto refuses definite-length constructed
    # OCTET STRINGs; cms_ber merges them.
    _fields = [
        ("content_type", cms.ContentType),
        ("content", core.Any, {"explicit": 0, "optional": True}),
    ]
    _oid_pair = None
    _oid_specs: dict[str, type] = {}


class _LenientSignedData(cms.SignedData):
    def _encap_content_info_spec(self) -> type:
        return _LenientEncapsulatedContentInfo

    _spec_callbacks = {"encap_content_info": _encap_content_info_spec}


class _LenientContentInfo(cms.ContentInfo):
    _oid_specs = {"signed_data": _LenientSignedData}


def _raw(value: core.Asn1Value) -> bytes:
    """The received TLV of a value without letting asn1crypto re-parse it."""
    return value._header + value.contents + (value._trailer or b"")


def load_signed_data(data: bytes | cms.ContentInfo) -> ParsedSignedData:
    """Parse ContentInfo(SignedData) with exactly one SignerInfo; no crypto yet.

    DER goes straight to asn1crypto; if that fails, the input is normalised
    from BER (cms_ber.normalize) and parsed once more.
    """
    if isinstance(data, cms.ContentInfo):
        data = data.dump()
    try:
        return _load_signed_data(data)
    except MalformedSignedData:
        try:
            normal = normalize(data)
        except BerError as exc:
            raise MalformedSignedData(f"bad BER: {exc}") from exc
        if normal is data:
            raise
        return _load_signed_data(normal)


def _load_signed_data(data: bytes) -> ParsedSignedData:
    try:
        info = _LenientContentInfo.load(data)
        if info["content_type"].native != "signed_data":
            raise MalformedSignedData(f"content type {info['content_type'].native!r}")
        sd = info["content"]
        signer_infos = sd["signer_infos"]
        if len(signer_infos) != 1:
            raise MalformedSignedData(f"{len(signer_infos)} signerInfos, expected 1")
        si = signer_infos[0]
        a_certs = [c.chosen for c in sd["certificates"] if c.name == "certificate"]
        certs = tuple(_load_cert(c) for c in a_certs)
        signer = None
        for a_cert, cert in zip(a_certs, certs, strict=True):
            if _signer_matches(si["sid"], a_cert):
                signer = cert
                break
        encap = sd["encap_content_info"]
        content_obj = encap["content"]
        content: bytes | None = None
        if not isinstance(content_obj, core.Void):
            try:
                # _raw() of an EXPLICIT value = [0] header + inner TLV.
                inner = unwrap_explicit(_raw(content_obj))
                if inner[:1] not in (b"\x04", b"\x24"):
                    # PKCS#7 v1.5 allowed any type here; SCEP wraps in OCTET STRING.
                    raise MalformedSignedData("eContent is not an OCTET STRING")
                content = string_value(inner)
            except BerError as exc:
                raise MalformedSignedData(f"bad eContent: {exc}") from exc
        attrs: dict[str, core.SetOf] = {}
        signed_attrs = si["signed_attrs"]
        if isinstance(signed_attrs, core.Void):
            raise MalformedSignedData("no signed attributes")
        for attr in signed_attrs:
            name = attr["type"].native
            if name in attrs:
                raise MalformedSignedData(f"duplicate signed attribute {name}")
            values = attr["values"]
            try:
                values.native  # noqa: B018 - parse now so bad encodings surface here
            except AttributeError as exc:  # a REAL in an unknown attribute: asn1crypto has no .native
                raise MalformedSignedData(f"attribute {name}: unsupported value ({exc})") from exc
            if len(values) != 1:
                raise MalformedSignedData(f"attribute {name} has {len(values)} values")
            attrs[name] = values
        digest_oid = si["digest_algorithm"]["algorithm"].dotted
        # asn1crypto parses fields on first access: read now what verification uses, so a
        # bad encoding is MalformedSignedData here rather than a ValueError later
        si["signature_algorithm"].native  # noqa: B018 - its parameters (RSASSA-PSS hash)
        signature = si["signature"].native
        return ParsedSignedData(
            signed_data=sd,
            signer_info=si,
            signer_certificate=signer,
            certificates=certs,
            content_type=encap["content_type"].native,
            content=content,
            attributes=attrs,
            digest_algorithm=_digest_algorithm(si["digest_algorithm"]["algorithm"].native),
            digest_algorithm_oid=digest_oid,
            signature_algorithm=si["signature_algorithm"]["algorithm"].native,
            signature=signature,
        )
    except MalformedSignedData:
        raise
    # BerError is a ValueError; AttributeError: asn1crypto types without .native (REAL,
    # ObjectDescriptor) where a field is read
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise MalformedSignedData(f"not a SignedData: {exc}") from exc


def _signed_attrs_candidates(signed_attrs: cms.CMSAttributes) -> Iterator[bytes]:
    """DER SET OF encodings the signer may have signed: the received bytes with
    the SET tag, then (only if those fail) a forced DER re-encoding."""
    raw = signed_attrs.dump()
    first = b"\x31" + raw[1:]
    yield first
    try:
        der = cms.CMSAttributes.load(first).dump(force=True)
    except (ValueError, AttributeError):  # AttributeError: asn1crypto re-encoding a REAL
        return
    if der != first:
        yield der


def _signature_hash(parsed: ParsedSignedData) -> DigestAlgorithm:
    sig_alg = parsed.signer_info["signature_algorithm"]
    name = parsed.signature_algorithm
    if name in ("rsassa_pkcs1v15", "ecdsa", "rsassa_pss"):
        if name == "rsassa_pss":
            hash_name = sig_alg["parameters"]["hash_algorithm"]["algorithm"].native
            found = _digest_algorithm(hash_name)
        else:
            found = parsed.digest_algorithm
    else:
        try:
            found = _digest_algorithm(sig_alg.hash_algo)
        except ValueError:
            found = None
    if found is None:
        raise UnsupportedAlgorithm(f"signature algorithm {sig_alg['algorithm'].dotted}")
    return found


def verify_signature(parsed: ParsedSignedData) -> DigestAlgorithm:
    """Check messageDigest, contentType and the signature; return the signature hash.

    Raises SignatureInvalid, or UnsupportedAlgorithm for algorithms we cannot check.
    """
    if parsed.signer_certificate is None:
        raise SignatureInvalid("signer certificate not in the SignedData")
    if parsed.digest_algorithm is None:
        raise UnsupportedAlgorithm(f"digest algorithm {parsed.digest_algorithm_oid}")
    content_type = parsed.attribute("content_type")
    if content_type is not None and content_type.native != parsed.content_type:
        raise SignatureInvalid("contentType attribute does not match eContentType")
    md = parsed.attribute("message_digest")
    if md is None:
        raise SignatureInvalid("no messageDigest attribute")
    expected = digest(parsed.digest_algorithm, parsed.content or b"")
    if md.native != expected:
        raise SignatureInvalid("messageDigest does not match the content")
    sig_hash = _signature_hash(parsed)
    signature = parsed.signature
    try:
        pub = parsed.signer_certificate.public_key()  # parsed lazily: may be undecodable
    except (ValueError, UnsupportedKey) as exc:
        raise UnsupportedAlgorithm(f"signer key cannot be decoded: {exc}") from exc
    name = parsed.signature_algorithm
    for data in _signed_attrs_candidates(parsed.signer_info["signed_attrs"]):
        try:
            if isinstance(pub, rsa.RSAPublicKey) and name == "rsassa_pss":
                pss = asym_padding.PSS(
                    mgf=asym_padding.MGF1(hash_for(sig_hash)),
                    salt_length=asym_padding.PSS.AUTO,
                )
                pub.verify(signature, data, pss, hash_for(sig_hash))
            elif isinstance(pub, rsa.RSAPublicKey):
                pub.verify(signature, data, asym_padding.PKCS1v15(), hash_for(sig_hash))
            elif isinstance(pub, ec.EllipticCurvePublicKey):
                pub.verify(signature, data, ec.ECDSA(hash_for(sig_hash)))
            else:
                raise UnsupportedAlgorithm(f"signer key {type(pub).__name__}")
            return sig_hash
        except InvalidSignature:
            continue
    raise SignatureInvalid("signature does not verify")


def verify_rsa(cert: x509.Certificate, signature: bytes, signed_attrs: bytes,
               alg: DigestAlgorithm) -> bool:
    """An RSA PKCS#1 v1.5 signature over DER signed attributes (False: not RSA, or bad)."""
    try:
        pub = cert.public_key()  # parsed lazily: may be undecodable
    except (ValueError, UnsupportedKey):
        return False
    if not isinstance(pub, rsa.RSAPublicKey):
        return False
    try:
        pub.verify(signature, signed_attrs, asym_padding.PKCS1v15(), hash_for(alg))
    except InvalidSignature:
        return False
    return True


# --- building -----------------------------------------------------------------


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _sign(key: object, data: bytes, alg: DigestAlgorithm) -> tuple[bytes, str]:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, asym_padding.PKCS1v15(), hash_for(alg)), "rsassa_pkcs1v15"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hash_for(alg))), f"{alg.value}_ecdsa"
    raise UnsupportedAlgorithm(f"signing key {type(key).__name__}")


_VERSION_1 = der.integer(1)
_EMPTY_SET = der.tlv(der.SET, b"")


@lru_cache(maxsize=32)
def _signer_parts(signer_cert: x509.Certificate, others: tuple[x509.Certificate, ...]
                  ) -> tuple[bytes, bytes]:
    """(signer's IssuerAndSerialNumber, the [0] certificates field): constant per signer."""
    signer_der = signer_cert.public_bytes(Encoding.DER)
    certs = [signer_der, *[c.public_bytes(Encoding.DER) for c in others if c != signer_cert]]
    return der.issuer_and_serial(signer_der), der.set_of(sorted(certs), 0xA0)


def _signing_time(value: datetime.datetime) -> bytes:
    if value.tzinfo is None:  # asn1crypto's rules for naive datetimes
        return cms.CMSAttribute(
            {"type": "signing_time", "values": [cms.Time(name="utc_time", value=value)]}).dump()
    return der.attribute("signing_time", der.utc_time(value))


def build_signed_data(
    content: bytes | None,
    signer_cert: x509.Certificate,
    signer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    digest_algorithm: DigestAlgorithm,
    attributes: Sequence[cms.CMSAttribute | bytes],
    *,
    certificates: Sequence[x509.Certificate] = (),
    signing_time: datetime.datetime | None = None,
) -> bytes:
    """ContentInfo(SignedData) over ``content`` (id-data) as DER.

    ``content=None`` omits eContent (digest over the empty string, as for a
    detached signature of nothing). contentType, messageDigest and (if given)
    signingTime are added to ``attributes`` (asn1crypto attributes or their DER).
    Written with `enrollment.der`: the signer's parts are encoded once per signer.
    """
    attrs = [a if isinstance(a, bytes) else a.dump() for a in attributes]
    attrs.append(der.attribute("content_type", der.content_type("data")))
    attrs.append(der.attribute("message_digest",
                               der.octet_string(digest(digest_algorithm, content or b""))))
    if signing_time is not None:
        attrs.append(_signing_time(signing_time))
    signed_attrs = b"".join(sorted(attrs))  # DER SET OF order (OpenSSL re-encodes it to verify)
    signature, sig_name = _sign(signer_key, der.tlv(der.SET, signed_attrs), digest_algorithm)
    sid, certs_field = _signer_parts(signer_cert, tuple(certificates))
    alg = der.digest_algorithm(digest_algorithm.value)
    signer_info = der.seq(_VERSION_1, sid, alg, der.tlv(0xA0, signed_attrs),
                          der.signed_digest_algorithm(sig_name), der.octet_string(signature))
    encap = der.content_type("data")
    if content is not None:
        encap += der.explicit(0, der.octet_string(content))
    sd = der.seq(_VERSION_1, der.tlv(der.SET, alg), der.seq(encap), certs_field,
                 der.tlv(der.SET, signer_info))
    return der.seq(der.content_type("signed_data"), der.explicit(0, sd))


def degenerate_signed_data(
    certificates: Sequence[x509.Certificate | bytes] = (),
    crls: Sequence[x509.CertificateRevocationList | bytes] = (),
) -> bytes:
    """Certs-/CRLs-only SignedData (RFC 8894 §3.4), DER. The SETs are in DER order (as
    asn1crypto wrote them): a client picks a certificate by key, not by position."""
    parts = [_VERSION_1, _EMPTY_SET, der.seq(der.content_type("data"))]
    if certificates:
        parts.append(der.set_of(sorted(c if isinstance(c, bytes) else c.public_bytes(Encoding.DER)
                                       for c in certificates), 0xA0))
    if crls:
        parts.append(der.set_of(sorted(c if isinstance(c, bytes) else c.public_bytes(Encoding.DER)
                                       for c in crls), 0xA1))
    parts.append(_EMPTY_SET)
    return der.seq(der.content_type("signed_data"), der.explicit(0, der.seq(*parts)))
