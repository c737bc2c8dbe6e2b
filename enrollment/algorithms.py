"""One group's SCEP algorithm policy: which content ciphers and digests a request may use,
and the GetCACaps words that advertise exactly that (RFC 8894 §3.5.2).

Config names (``[groups.<name>.scep] ciphers / digests``) map to the wire enums:
ciphers ``aes256 aes192 aes128 des3 des``, digests ``sha512 sha384 sha256 sha224 sha1``.
MD5 has no name: it is never accepted. The default is AES + SHA-2. The deprecated
``legacy_algorithms = true`` is the default plus ``des3``, ``des`` and ``sha1``.

Every refusal is an `AlgorithmRefused` (failInfo badAlg) naming the algorithm by its config
name (the metric label) and the setting that would allow it, so the operator sees what to
change. Checked: the SignedData digestAlgorithm and signature digest, the envelope's
content cipher and the CSR's signature digest. RSA-OAEP's hash is not a signature digest
and is not governed here.

Why SHA-384 is in the default set and advertised: strongSwan `pki --scep` before 5.9.11
tests its parsed capability bits with the bit *index* instead of the mask (`scep.h`
`SCEP_CAPS_SHA384 = 3`, fixed by strongswan/strongswan#1607, commit 8bf683c), so for it the
"SHA-384" line is what means "AES", "SHA-256" and "Renewal" (README, "strongSwan").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from enrollment.scep_types import AlgorithmRefused, ContentCipher, DigestAlgorithm

__all__ = [
    "ALGORITHM_LABELS",
    "CIPHERS",
    "DEFAULT_CIPHERS",
    "DEFAULT_DIGESTS",
    "DIGESTS",
    "LEGACY_CIPHERS",
    "LEGACY_DIGESTS",
    "AlgorithmPolicy",
    "cipher_name",
    "digest_name",
]

CIPHERS: dict[str, ContentCipher] = {
    "aes256": ContentCipher.AES256_CBC,
    "aes192": ContentCipher.AES192_CBC,
    "aes128": ContentCipher.AES128_CBC,
    "des3": ContentCipher.DES3_CBC,
    "des": ContentCipher.DES_CBC,
}
DIGESTS: dict[str, DigestAlgorithm] = {
    "sha512": DigestAlgorithm.SHA512,
    "sha384": DigestAlgorithm.SHA384,
    "sha256": DigestAlgorithm.SHA256,
    "sha224": DigestAlgorithm.SHA224,
    "sha1": DigestAlgorithm.SHA1,
}
DEFAULT_CIPHERS = ("aes256", "aes192", "aes128")
DEFAULT_DIGESTS = ("sha512", "sha384", "sha256", "sha224")
LEGACY_CIPHERS = (*DEFAULT_CIPHERS, "des3", "des")
LEGACY_DIGESTS = (*DEFAULT_DIGESTS, "sha1")
# certgate_scep_algorithm_refusals_total{algorithm}: every config name, md5, and "other"
# (an algorithm we do not implement at all: RC2, RSA-PSS, an unknown OID, a non-RSA signer).
ALGORITHM_LABELS = (*CIPHERS, *DIGESTS, "md5", "other")

_CIPHER_NAMES = {v: k for k, v in CIPHERS.items()}
_DIGEST_NAMES = {v: k for k, v in DIGESTS.items()} | {DigestAlgorithm.MD5: "md5"}
# GetCACaps keyword per digest (RFC 8894 §3.5.2); SHA-224 is not in the RFC's list but
# strongSwan and others parse it.
_DIGEST_CAPS = {"sha512": "SHA-512", "sha384": "SHA-384", "sha256": "SHA-256",
                "sha224": "SHA-224", "sha1": "SHA-1"}


def cipher_name(cipher: ContentCipher) -> str:
    return _CIPHER_NAMES[cipher]


def digest_name(digest: DigestAlgorithm) -> str:
    return _DIGEST_NAMES[digest]


@dataclass(frozen=True)
class AlgorithmPolicy:
    """Allowed ciphers and digests by config name, in the operator's order.

    ``setting`` is the config key prefix named in refusals (``groups.staff.scep``).
    """

    ciphers: tuple[str, ...] = DEFAULT_CIPHERS
    digests: tuple[str, ...] = DEFAULT_DIGESTS
    setting: str = "[groups.<name>.scep]"

    def __post_init__(self) -> None:
        unknown = [c for c in self.ciphers if c not in CIPHERS] + [
            d for d in self.digests if d not in DIGESTS]
        if unknown:
            raise ValueError(f"unknown SCEP algorithm name(s) {unknown}")
        if not self.ciphers or not self.digests:
            raise ValueError("a SCEP algorithm policy needs at least one cipher and one digest")

    @classmethod
    def of(cls, ciphers: Iterable[str], digests: Iterable[str], setting: str) -> AlgorithmPolicy:
        return cls(tuple(dict.fromkeys(ciphers)), tuple(dict.fromkeys(digests)), setting)

    def allows_cipher(self, cipher: ContentCipher) -> bool:
        return _CIPHER_NAMES.get(cipher) in self.ciphers

    def allows_digest(self, digest: DigestAlgorithm) -> bool:
        return _DIGEST_NAMES.get(digest) in self.digests

    def check_digest(self, digest: DigestAlgorithm | None, where: str, request: object) -> None:
        """AlgorithmRefused unless ``digest`` (None: not stated, nothing to check) is allowed."""
        if digest is None or self.allows_digest(digest):
            return
        name = digest_name(digest)
        if digest is DigestAlgorithm.MD5:
            raise AlgorithmRefused(name, f"{where} digest md5 refused (never accepted)",
                                   request=request)
        raise AlgorithmRefused(name, f"{where} digest {name} refused: not in {self.setting} "
                               f"digests = {list(self.digests)}", request=request)

    def check_cipher(self, cipher: ContentCipher | None, request: object) -> None:
        if cipher is None or self.allows_cipher(cipher):
            return
        name = cipher_name(cipher)
        raise AlgorithmRefused(name, f"content cipher {name} refused: not in {self.setting} "
                               f"ciphers = {list(self.ciphers)}", request=request)

    def caps(self) -> list[str]:
        """GetCACaps keywords, one per line on the wire.

        "AES" when any AES key size is allowed (RFC 8894 defines it as AES-128, which is
        what clients that read it send; a group without aes128 refuses them), "DES3" for
        3DES; single DES has no keyword (it is what a client uses when nothing is
        advertised). "SCEPStandard" implies AES(-128), SHA-256 and POSTPKIOperation, so it is
        advertised only when aes128 and sha256 are both allowed.
        """
        words = ["POSTPKIOperation", "Renewal"]
        words += [_DIGEST_CAPS[d] for d in DIGESTS if d in self.digests]
        if any(c.startswith("aes") for c in self.ciphers):
            words.append("AES")
        if "des3" in self.ciphers:
            words.append("DES3")
        if "aes128" in self.ciphers and "sha256" in self.digests:
            words.append("SCEPStandard")
        return words
