"""enrollment.algorithms: the per-group policy, its GetCACaps words and refusals, and what
strongSwan's `pki --scep` makes of those words (its parser transcribed from the source)."""

from __future__ import annotations

import pytest

from enrollment.algorithms import (
    ALGORITHM_LABELS,
    DEFAULT_CIPHERS,
    DEFAULT_DIGESTS,
    LEGACY_CIPHERS,
    LEGACY_DIGESTS,
    AlgorithmPolicy,
)
from enrollment.scep_types import AlgorithmRefused, ContentCipher, DigestAlgorithm, FailInfo

# --- strongSwan pki --scep's GetCACaps handling, transcribed ----------------------------
# src/pki/scep/scep.c scep_parse_caps(): for each line (fetchline: "\n" or "\r\n" ended),
# for each name i of caps_names[], strncaseeq(caps_names[i], line, line.len) sets bit 1<<i.
# src/pki/commands/scep.c then tests `caps_flags & SCEP_CAPS_X`. In 5.9.8 (Debian 12)
# src/pki/scep/scep.h defines SCEP_CAPS_X as the bit *index* (AES = 0, DES3 = 1, ...), so
# each test reads other bits; 5.9.11 (commit 8bf683c, strongswan/strongswan#1607) made
# them masks (1 << i).
SS_CAPS_NAMES = ("AES", "DES3", "SHA-256", "SHA-384", "SHA-512", "SHA-224", "SHA-1",
                 "POSTPKIOperation", "SCEPStandard", "GetNextCACert", "Renewal")


def ss_parse_caps(text: str) -> int:
    flags = 0
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()  # fetchline stops when nothing is left after the last "\n"
    for line in lines:
        line = line.removesuffix("\r")
        for i, name in enumerate(SS_CAPS_NAMES):
            # strncasecmp(name, line, len(line)) == 0: line is a (case-insensitive) prefix
            if len(line) <= len(name) and name[:len(line)].lower() == line.lower():
                flags |= 1 << i
    return flags


def ss_checks(caps_text: str, *, fixed: bool, digest: str = "sha256", cipher: str = "aes"
              ) -> dict[str, bool]:
    """What `pki --scep` concludes: digest ok, cipher ok, HTTP POST, Renewal allowed."""
    flags = ss_parse_caps(caps_text)

    def cap(name: str) -> int:
        i = SS_CAPS_NAMES.index(name)
        return 1 << i if fixed else i  # 5.9.8: the enum value (index) used as the mask

    digest_ok = {
        "sha256": bool(flags & cap("SHA-256")) or bool(flags & cap("SCEPStandard")),
        "sha384": bool(flags & cap("SHA-384")), "sha512": bool(flags & cap("SHA-512")),
        "sha224": bool(flags & cap("SHA-224")), "sha1": bool(flags & cap("SHA-1")),
    }[digest]
    cipher_ok = {
        "aes": bool(flags & cap("AES")) or bool(flags & cap("SCEPStandard")),
        "des3": bool(flags & cap("DES3")),
    }[cipher]
    return {"digest": digest_ok, "cipher": cipher_ok,
            "post": bool(flags & cap("POSTPKIOperation")) or bool(flags & cap("SCEPStandard")),
            "renewal": bool(flags & cap("Renewal"))}


def caps_text(policy: AlgorithmPolicy) -> str:
    return "\n".join(policy.caps()) + "\n"


OLD_CAPS = "POSTPKIOperation\nRenewal\nSHA-256\nSHA-512\nAES\nSCEPStandard\n"  # before


def test_strongswan_589_misreads_the_old_caps_and_accepts_the_new_default() -> None:
    # the symptom of issue 13: with the old default caps 5.9.8 refuses SHA-256 and AES...
    old = ss_checks(OLD_CAPS, fixed=False)
    assert old["digest"] is False and old["cipher"] is False
    # ...and accepts only --cipher des3 (it tests the AES bit) with --digest sha512
    assert ss_checks(OLD_CAPS, fixed=False, digest="sha512", cipher="des3")["cipher"] is True
    # the default policy advertises SHA-384, which 5.9.8 takes for AES, SHA-256 and Renewal
    new = caps_text(AlgorithmPolicy())
    assert ss_checks(new, fixed=False) == {"digest": True, "cipher": True, "post": True,
                                           "renewal": True}
    # and strongSwan >= 5.9.11 reads the same words correctly
    assert ss_checks(new, fixed=True) == {"digest": True, "cipher": True, "post": True,
                                          "renewal": True}
    for digest in ("sha256", "sha384", "sha512", "sha224"):
        assert ss_checks(new, fixed=True, digest=digest)["digest"], digest
        assert ss_checks(new, fixed=False, digest=digest)["digest"], digest


def test_without_sha384_strongswan_589_cannot_enroll() -> None:
    policy = AlgorithmPolicy(DEFAULT_CIPHERS, ("sha512", "sha256"))
    assert ss_checks(caps_text(policy), fixed=False)["cipher"] is False
    assert ss_checks(caps_text(policy), fixed=True)["cipher"] is True


def test_default_and_legacy_caps() -> None:
    assert AlgorithmPolicy().caps() == ["POSTPKIOperation", "Renewal", "SHA-512", "SHA-384",
                                        "SHA-256", "SHA-224", "AES", "SCEPStandard"]
    legacy = AlgorithmPolicy(LEGACY_CIPHERS, LEGACY_DIGESTS).caps()
    assert legacy == ["POSTPKIOperation", "Renewal", "SHA-512", "SHA-384", "SHA-256", "SHA-224",
                      "SHA-1", "AES", "DES3", "SCEPStandard"]
    # 3DES for old devices, SHA-2 only: no SHA-1 word, no single-DES (it has no word)
    narrow = AlgorithmPolicy.of(["aes128", "des3"], ["sha256"], "groups.x.scep").caps()
    assert narrow == ["POSTPKIOperation", "Renewal", "SHA-256", "AES", "DES3", "SCEPStandard"]
    # SCEPStandard implies AES-128 and SHA-256: not advertised without both
    assert "SCEPStandard" not in AlgorithmPolicy(("aes256",), DEFAULT_DIGESTS).caps()
    assert "SCEPStandard" not in AlgorithmPolicy(DEFAULT_CIPHERS, ("sha512",)).caps()
    assert "AES" not in AlgorithmPolicy(("des3",), DEFAULT_DIGESTS).caps()


def test_refusals_name_the_algorithm_and_the_setting() -> None:
    policy = AlgorithmPolicy.of(DEFAULT_CIPHERS, DEFAULT_DIGESTS, "groups.staff.scep")
    with pytest.raises(AlgorithmRefused) as err:
        policy.check_cipher(ContentCipher.DES3_CBC, "req")
    assert err.value.fail_info is FailInfo.badAlg and err.value.algorithm == "des3"
    assert "des3" in err.value.reason and "groups.staff.scep ciphers" in err.value.reason
    assert err.value.request == "req"
    with pytest.raises(AlgorithmRefused) as err:
        policy.check_digest(DigestAlgorithm.SHA1, "CSR signature", None)
    assert err.value.algorithm == "sha1" and "CSR signature digest sha1" in err.value.reason
    with pytest.raises(AlgorithmRefused) as err:  # md5 whatever the lists say
        AlgorithmPolicy(LEGACY_CIPHERS, LEGACY_DIGESTS).check_digest(DigestAlgorithm.MD5, "x", None)
    assert err.value.algorithm == "md5" and "never" in err.value.reason
    policy.check_cipher(None, None)  # nothing stated: nothing to refuse
    policy.check_digest(None, "x", None)
    policy.check_cipher(ContentCipher.AES192_CBC, None)
    single_des = AlgorithmPolicy.of([*DEFAULT_CIPHERS, "des3"], DEFAULT_DIGESTS, "g")
    with pytest.raises(AlgorithmRefused, match="content cipher des refused"):
        single_des.check_cipher(ContentCipher.DES_CBC, None)  # des only when listed


def test_policy_rejects_unknown_names_and_empty_lists() -> None:
    with pytest.raises(ValueError, match="rc2"):
        AlgorithmPolicy(("rc2",), DEFAULT_DIGESTS)
    with pytest.raises(ValueError, match="at least one"):
        AlgorithmPolicy((), DEFAULT_DIGESTS)
    assert set(ALGORITHM_LABELS) >= {"des", "des3", "sha1", "md5", "other"}
