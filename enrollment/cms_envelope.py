"""CMS EnvelopedData (RFC 5652 §6) with RSA key transport, for SCEP.

Pure functions: asn1crypto for the structures, cryptography for the math.
Decryption accepts BER; encryption emits DER. Key transport: RSA PKCS#1 v1.5
and RSAES-OAEP (MGF1 hash = OAEP hash, empty label). Content ciphers:
AES-128/192/256-CBC, 3DES-CBC and single DES-CBC (legacy clients only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding

from enrollment import der
from enrollment.cms_ber import BerError, normalize, string_value
from enrollment.cms_fast import FastEnvelope
from enrollment.scep_types import (
    ContentCipher,
    DigestAlgorithm,
    KeyTransport,
    UnsupportedAlgorithm,
)

__all__ = [
    "DecryptionFailed",
    "EnvelopeAlgorithms",
    "Decrypted",
    "decrypt",
    "encrypted_content",
    "encrypt",
    "envelope_algorithms",
    "load_enveloped_data",
    "MalformedEnvelope",
]

_HASHES: dict[DigestAlgorithm, type[hashes.HashAlgorithm]] = {
    DigestAlgorithm.MD5: hashes.MD5,
    DigestAlgorithm.SHA1: hashes.SHA1,
    DigestAlgorithm.SHA224: hashes.SHA224,
    DigestAlgorithm.SHA256: hashes.SHA256,
    DigestAlgorithm.SHA384: hashes.SHA384,
    DigestAlgorithm.SHA512: hashes.SHA512,
}


def hash_for(digest: DigestAlgorithm) -> hashes.HashAlgorithm:
    return _HASHES[digest]()


class DecryptionFailed(Exception):
    """The envelope could not be opened with the given key (one uniform error).

    ``reason`` is for logs only; never send it to the peer (padding oracles).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedEnvelope(Exception):
    """Not an EnvelopedData we can read (structure or unknown algorithm)."""


@dataclass(frozen=True)
class EnvelopeAlgorithms:
    """What an envelope used, so a policy layer can refuse weak choices."""

    cipher: ContentCipher | None
    key_transport: KeyTransport | None
    cipher_oid: str
    key_transport_oid: str

    @property
    def supported(self) -> bool:
        return self.cipher is not None and self.key_transport is not None


@dataclass(frozen=True)
class Decrypted:
    content: bytes
    algorithms: EnvelopeAlgorithms


# --- parsing -----------------------------------------------------------------


class _LenientEncryptedContentInfo(cms.EncryptedContentInfo):
    # encryptedContent as a raw TLV: Go writes it as a definite-length
    # constructed [0], which asn1crypto refuses; merged by cms_ber.
    _fields = [
        ("content_type", cms.ContentType),
        ("content_encryption_algorithm", cms.EncryptionAlgorithm),
        ("encrypted_content", core.Any, {"optional": True}),
    ]


class _LenientEnvelopedData(cms.EnvelopedData):
    _fields = [
        (name, _LenientEncryptedContentInfo if name == "encrypted_content_info" else spec, *rest)
        for name, spec, *rest in cms.EnvelopedData._fields
    ]


class _LenientContentInfo(cms.ContentInfo):
    _oid_specs = {"enveloped_data": _LenientEnvelopedData}


def load_enveloped_data(data: bytes | cms.ContentInfo) -> cms.EnvelopedData:
    """ContentInfo(EnvelopedData) BER/DER -> asn1crypto EnvelopedData.

    The returned object's encryptedContent is a raw ``core.Any``; use
    ``encrypted_content(env)`` to read it.
    """
    if isinstance(data, cms.ContentInfo):
        data = data.dump()
    try:
        return _load_enveloped_data(data)
    except MalformedEnvelope:
        try:
            normal = normalize(data)
        except BerError as exc:
            raise MalformedEnvelope(f"bad BER: {exc}") from exc
        if normal is data:
            raise
        return _load_enveloped_data(normal)


def _load_enveloped_data(data: bytes) -> cms.EnvelopedData:
    try:
        info = _LenientContentInfo.load(data)
        if info["content_type"].native != "enveloped_data":
            raise MalformedEnvelope(f"content type {info['content_type'].native!r}")
        env = info["content"]
        # Force a parse of everything but the raw encryptedContent, so
        # structure errors surface here and not in the middle of decrypt().
        env["version"].native  # noqa: B018
        env["recipient_infos"].native  # noqa: B018
        eci = env["encrypted_content_info"]
        eci["content_type"].native  # noqa: B018
        eci["content_encryption_algorithm"].native  # noqa: B018
        eci["encrypted_content"]  # noqa: B018
        return env
    except MalformedEnvelope:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # AttributeError: asn1crypto
        # types without .native (REAL, ObjectDescriptor) anywhere in the parsed structure
        raise MalformedEnvelope(f"not an EnvelopedData: {exc}") from exc


def encrypted_content(env: cms.EnvelopedData) -> bytes | None:
    """encryptedContent octets (primitive, or constructed BER/Go chunks merged)."""
    value = env["encrypted_content_info"]["encrypted_content"]
    if isinstance(value, core.Void):
        return None
    if isinstance(value, core.OctetString):
        return value.native
    try:
        # Any.dump() would try to parse the value; take the raw TLV instead.
        raw = value._header + value.contents + (value._trailer or b"")
        return string_value(raw)
    except BerError as exc:
        raise MalformedEnvelope(f"bad encryptedContent: {exc}") from exc


def _key_transport_of(alg: cms.KeyEncryptionAlgorithm) -> KeyTransport | None:
    name = alg["algorithm"].native
    if name == "rsaes_pkcs1v15":
        return KeyTransport.RSA_PKCS1V15
    if name != "rsaes_oaep":
        return None
    params = alg["parameters"]
    if isinstance(params, core.Void):
        params = algos.RSAESOAEPParams.load(b"\x30\x00")
    hash_name = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        return None
    mgf_hash = mgf["parameters"]["algorithm"].native
    label = params["p_source_algorithm"]["parameters"].native
    if mgf_hash != hash_name or label not in (b"", None):
        return None
    try:
        return KeyTransport(f"oaep_{hash_name}")
    except ValueError:
        return None


def _cipher_of(alg: algos.EncryptionAlgorithm) -> ContentCipher | None:
    try:
        return ContentCipher(alg["algorithm"].native)
    except ValueError:
        return None


def envelope_algorithms(env: cms.EnvelopedData | FastEnvelope) -> EnvelopeAlgorithms:
    """Algorithms named by the envelope (first key-transport recipient)."""
    if isinstance(env, FastEnvelope):
        return EnvelopeAlgorithms(env.cipher, env.key_transport, env.cipher_oid,
                                  env.key_transport_oid)
    alg = env["encrypted_content_info"]["content_encryption_algorithm"]
    kt: KeyTransport | None = None
    kt_oid = ""
    for ri in env["recipient_infos"]:
        if ri.name == "ktri":
            kea = ri.chosen["key_encryption_algorithm"]
            kt_oid = kea["algorithm"].dotted
            kt = _key_transport_of(kea)
            break
    return EnvelopeAlgorithms(
        cipher=_cipher_of(alg),
        key_transport=kt,
        cipher_oid=alg["algorithm"].dotted,
        key_transport_oid=kt_oid,
    )


# --- decrypt ------------------------------------------------------------------


@lru_cache(maxsize=32)
def _issuer_and_serial(cert: x509.Certificate) -> bytes:
    return der.issuer_and_serial(cert.public_bytes(Encoding.DER))


def _rid_matches(rid: cms.RecipientIdentifier, cert: x509.Certificate) -> bool:
    if rid.name == "issuer_and_serial_number":
        ias = rid.chosen
        if ias["serial_number"].native != cert.serial_number:
            return False
        if ias.dump() == _issuer_and_serial(cert):  # the bytes we published: no Name parsing
            return True
    a_cert = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
    if rid.name == "issuer_and_serial_number":
        return rid.chosen["issuer"] == a_cert.issuer  # another encoding of the same name
    ski = rid.chosen.native
    return ski == a_cert.key_identifier or ski == a_cert.public_key.sha1


def _oaep_padding(kt: KeyTransport) -> asym_padding.OAEP:
    h = hash_for(kt.oaep_hash)  # type: ignore[arg-type]
    return asym_padding.OAEP(mgf=asym_padding.MGF1(h), algorithm=h, label=None)


def _cipher_algorithm(cipher: ContentCipher, key: bytes) -> algorithms.AES | TripleDES:
    if cipher.is_aes:
        return algorithms.AES(key)
    if cipher is ContentCipher.DES_CBC:
        # Single DES == 3DES with K1 = K2 = K3.
        return TripleDES(key * 3)
    return TripleDES(key)


def _cbc_decrypt(cipher: ContentCipher, key: bytes, iv: bytes, data: bytes) -> bytes:
    if len(key) != cipher.key_size:
        raise DecryptionFailed("content key has the wrong length")
    if len(iv) != cipher.block_size or not data or len(data) % cipher.block_size:
        raise DecryptionFailed("bad IV or ciphertext length")
    dec = Cipher(_cipher_algorithm(cipher, key), modes.CBC(iv)).decryptor()
    padded = dec.update(data) + dec.finalize()
    unpadder = padding.PKCS7(cipher.block_size * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise DecryptionFailed("bad content padding") from exc


def _decrypt_fast(env: FastEnvelope, cert: x509.Certificate, key: rsa.RSAPrivateKey
                  ) -> Decrypted | None:
    """`decrypt` of a cms_fast envelope; None when a recipient id needs asn1crypto."""
    recipient = None
    for r in env.recipients:
        if r.serial == cert.serial_number:
            if r.issuer_and_serial != _issuer_and_serial(cert):
                return None  # maybe the same name encoded another way
            recipient = r
            break
    if recipient is None:
        raise DecryptionFailed("no recipient info for this certificate")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UnsupportedAlgorithm("recipient key is not RSA")
    algs = envelope_algorithms(env)
    return Decrypted(_open(algs, key, recipient.encrypted_key, env.iv, env.ciphertext), algs)


def _open(algs: EnvelopeAlgorithms, key: rsa.RSAPrivateKey, encrypted_key: bytes, iv: bytes,
          ciphertext: bytes) -> bytes:
    assert algs.cipher is not None and algs.key_transport is not None
    try:
        if algs.key_transport is KeyTransport.RSA_PKCS1V15:
            # OpenSSL >= 3.2 does implicit rejection: a bad padding yields a
            # random key and fails below, like any other wrong key.
            content_key = key.decrypt(encrypted_key, asym_padding.PKCS1v15())
        else:
            content_key = key.decrypt(encrypted_key, _oaep_padding(algs.key_transport))
    except ValueError as exc:
        raise DecryptionFailed("key transport decryption failed") from exc
    return _cbc_decrypt(algs.cipher, content_key, iv, ciphertext)


def decrypt(
    data: bytes | cms.ContentInfo | cms.EnvelopedData | FastEnvelope,
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
) -> Decrypted:
    """Open an EnvelopedData addressed to ``cert``.

    Raises ``MalformedEnvelope`` for structure errors, ``UnsupportedAlgorithm``
    (from scep_types) for algorithms we do not implement, and
    ``DecryptionFailed`` when no recipient matches or the key does not open it.
    """
    if isinstance(data, FastEnvelope):
        opened = _decrypt_fast(data, cert, key)
        if opened is not None:
            return opened
        data = data.raw
    env = data if isinstance(data, cms.EnvelopedData) else load_enveloped_data(data)
    algs = envelope_algorithms(env)
    if algs.cipher is None:
        raise UnsupportedAlgorithm(f"content cipher {algs.cipher_oid}")
    recipient = None
    for ri in env["recipient_infos"]:
        if ri.name == "ktri" and _rid_matches(ri.chosen["rid"], cert):
            recipient = ri.chosen
            break
    if recipient is None:
        raise DecryptionFailed("no recipient info for this certificate")
    kt = _key_transport_of(recipient["key_encryption_algorithm"])
    if kt is None:
        oid = recipient["key_encryption_algorithm"]["algorithm"].dotted
        raise UnsupportedAlgorithm(f"key transport {oid}")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UnsupportedAlgorithm("recipient key is not RSA")
    algs = EnvelopeAlgorithms(algs.cipher, kt, algs.cipher_oid, algs.key_transport_oid)
    eci = env["encrypted_content_info"]
    ciphertext = encrypted_content(env)
    if ciphertext is None:
        raise MalformedEnvelope("no encryptedContent")
    iv = eci["content_encryption_algorithm"]["parameters"].native
    if not isinstance(iv, bytes):
        raise MalformedEnvelope("CBC parameters are not an IV")
    return Decrypted(_open(algs, key, recipient["encrypted_key"].native, iv, ciphertext), algs)


# --- encrypt ------------------------------------------------------------------


def _key_encryption_algorithm(kt: KeyTransport) -> cms.KeyEncryptionAlgorithm:
    if kt is KeyTransport.RSA_PKCS1V15:
        return cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"})
    h = kt.oaep_hash
    assert h is not None
    if h is DigestAlgorithm.SHA1:
        # DEFAULT parameters: an empty SEQUENCE (DER omits defaults).
        params = algos.RSAESOAEPParams.load(b"\x30\x00")
    else:
        params = algos.RSAESOAEPParams(
            {
                "hash_algorithm": {"algorithm": h.value},
                "mask_gen_algorithm": {
                    "algorithm": "mgf1",
                    "parameters": {"algorithm": h.value},
                },
            }
        )
    return cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_oaep", "parameters": params})


_VERSION_0 = der.integer(0)


@lru_cache(maxsize=8)
def _key_encryption_algorithm_der(kt: KeyTransport) -> bytes:
    return _key_encryption_algorithm(kt).dump()


def encrypt(
    content: bytes,
    recipient: x509.Certificate,
    cipher: ContentCipher = ContentCipher.AES256_CBC,
    key_transport: KeyTransport = KeyTransport.RSA_PKCS1V15,
    *,
    content_key: bytes | None = None,
    iv: bytes | None = None,
) -> bytes:
    """EnvelopedData (as a DER ContentInfo) for one RSA recipient, by issuer+serial."""
    pub = recipient.public_key()
    if not isinstance(pub, rsa.RSAPublicKey):
        raise UnsupportedAlgorithm("recipient certificate key is not RSA")
    content_key = content_key if content_key is not None else os.urandom(cipher.key_size)
    iv = iv if iv is not None else os.urandom(cipher.block_size)
    if len(content_key) != cipher.key_size or len(iv) != cipher.block_size:
        raise ValueError("content key or IV has the wrong length")
    padder = padding.PKCS7(cipher.block_size * 8).padder()
    padded = padder.update(content) + padder.finalize()
    enc = Cipher(_cipher_algorithm(cipher, content_key), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(padded) + enc.finalize()
    if key_transport is KeyTransport.RSA_PKCS1V15:
        encrypted_key = pub.encrypt(content_key, asym_padding.PKCS1v15())
    else:
        encrypted_key = pub.encrypt(content_key, _oaep_padding(key_transport))
    # Written with enrollment.der (byte-identical to the asn1crypto builders, ~0.3 ms less).
    ktri = der.seq(_VERSION_0, der.issuer_and_serial(recipient.public_bytes(Encoding.DER)),
                   _key_encryption_algorithm_der(key_transport), der.octet_string(encrypted_key))
    eci = der.seq(der.content_type("data"),
                  der.seq(der.encryption_algorithm_oid(cipher.value), der.octet_string(iv)),
                  der.tlv(0x80, ciphertext))  # [0] IMPLICIT OCTET STRING
    env = der.seq(_VERSION_0, der.tlv(der.SET, ktri), eci)
    return der.seq(der.content_type("enveloped_data"), der.explicit(0, env))
