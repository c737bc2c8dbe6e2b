"""Fuzz the CSR policy (enrollment/policy.py) and challenge-subject matching
(enrollment/patterns.py, enrollment/challenges.py). The first byte picks the mode:

- 0 (pattern, value), split at the first NUL: the pattern as the challenge API would
  receive it (JSON strings may carry lone surrogates: decoded with surrogateescape) is
  bound as ``subject_cn="re:..."`` and as a SAN entry; creation refuses it only with
  ValueError (what the API and CLI answer 400 / a config error with) and a
  ``compile_pattern`` refusal is UnsafePattern. An accepted pattern then matches the
  value (a CN from a CSR: valid Unicode) in under 0.1 s (ReDoS canary), and
  ``check_binding`` agrees with ``fullmatch``;
- 1 a DER CSR mutated from valid seeds (RSA-2048 and EC P-256 keys made once): facts
  (CsrRejected only), the group policy (CsrRejected only), then a challenge binding with
  ``re:`` patterns (ChallengeRejected only), every match under 0.1 s;
- 2 one DER string value (the challengePassword / UPN decoder) and a SAN string
  (``normalize_san``: ValueError only).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from enrollment.challenges import ChallengeBinding, ChallengeReason, ChallengeRejected, check_binding
from enrollment.patterns import MAX_VALUE_LENGTH, UnsafePattern, compile_pattern, fullmatch
from enrollment.policy import (
    CsrFacts,
    CsrRejected,
    GroupCsrPolicy,
    _decode_string_der,
    apply_policy,
    extract_csr_facts,
    normalize_san,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "scep"
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
EXPIRES = NOW + dt.timedelta(days=1)
MATCH_BUDGET = 0.1  # CPU seconds per match (thread_time: a loaded box does not count): RE2 is linear
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")

RSA_KEY = serialization.load_pem_private_key(
    (VECTORS / "certmonger-0.79.17-client.key.pem").read_bytes(), None)
assert isinstance(RSA_KEY, rsa.RSAPrivateKey)
EC_KEY = ec.derive_private_key(0x5EED, ec.SECP256R1())

POLICIES = (
    GroupCsrPolicy(),
    GroupCsrPolicy(allow_ed25519=True, allowed_ekus=None, require_cn=False, max_sans=2,
                   allowed_san_types=frozenset({"dns"})),
)
BINDINGS = (
    ChallengeBinding("staff", EXPIRES, subject_cn=r"re:dev-[0-9a-z]{1,8}",
                     sans=(r"re:dns:[a-z0-9-]+\.example\.net", "email:a@example.net",
                           r"re:(ip|uri|upn):.*"), key_types=("ec-p256", "rsa-2048+")),
    ChallengeBinding("staff", EXPIRES, subject_cn="dev-01", sans=("dns:dev-01.example.net",),
                     ekus=(ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,), min_rsa_bits=3072),
    ChallengeBinding("staff", EXPIRES),
)


def _csr(key, cn: str | None, *, sans=(), ekus=(), ca=False, challenge=b"secret123"):  # noqa: ANN001, ANN202
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else []
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [*names, x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example")]))
    if challenge is not None:
        b = b.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), False)
    if ekus:
        b = b.add_extension(x509.ExtendedKeyUsage(list(ekus)), False)
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return b.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


_ALL_SANS = (
    x509.DNSName("dev-01.example.net"), x509.RFC822Name("a@Example.NET"),
    x509.UniformResourceIdentifier("urn:dev:01"), x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
    x509.OtherName(UPN_OID, b"\x0c\x0ddev@corp.test"),
    x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d")])),
    x509.RegisteredID(ObjectIdentifier("1.2.3.4")),
)
CSRS = (
    _csr(EC_KEY, "dev-01", sans=(x509.DNSName("dev-01.example.net"),),
         ekus=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
    _csr(EC_KEY, "dev-42", sans=_ALL_SANS, ekus=(ExtendedKeyUsageOID.SERVER_AUTH,), ca=True,
         challenge=None),
    _csr(RSA_KEY, "dev-01", sans=(x509.DNSName("dev-01.example.net"),
                                  x509.IPAddress(ipaddress.ip_address("2001:db8::1")))),
    _csr(EC_KEY, None, challenge="pässwörd".encode()),
)

SEEDS: list[bytes] = (
    [b"\x00" + p + b"\x00" + v for p, v in (
        (rb"dev-[0-9]+", b"dev-42"), (rb"(a+)+b", b"a" * 64), (rb"(a)\1", b"aa"),
        (rb"dev(?=-)", b"dev-"), (("(" + "[a-z]*" * 40 + ")+x").encode(), b"a" * 64),
        (rb"dns:[a-z0-9-]+\.example\.net", b"dns:host-1.example.net"), (b"a\xff.*", b"a"),
        (rb"[[:alpha:]]{1,1000}", b"x" * 1000), (rb"\C*", "é".encode()))]
    + [b"\x01" + c for c in CSRS]
    + [b"\x02" + v for v in (b"\x0c\x03abc", b"\x1e\x04\x00a\x00b", b"\x04\x02\xc3\xa9",
                             b"\x14\x02\xe9a", b"\x1c\x04\x00\x00\x00a")]
    + [b"\x02\x00ip: 10.0.0.1 ", b"\x02\x00email:A@B.C", b"\x02\x00dns:X.Example."]
)


def _timed_match(pattern: str, value: str) -> bool:
    started = time.thread_time()
    result = fullmatch(pattern, value)
    elapsed = time.thread_time() - started
    assert elapsed < MATCH_BUDGET, f"match took {elapsed:.3f} s: {pattern!r} on {len(value)} chars"
    return result


def _facts(cn: str, sans: tuple[str, ...] = ()) -> CsrFacts:
    return CsrFacts(subject=f"CN={cn}", subject_cn=cn, sans=sans, ekus=(), key_type="ec",
                    key_bits=256, key_spec="ec-p256", rsa_exponent=None, requests_ca=False,
                    challenge_password=None, spki_sha256=b"", signature_valid=True)


def _mode_pattern(data: bytes) -> None:
    raw_pattern, _, raw_value = data.partition(b"\x00")
    pattern = raw_pattern.decode("utf-8", "surrogateescape")
    value = raw_value.decode("utf-8", "replace")
    try:
        compile_pattern(pattern)
    except UnsafePattern:
        compiled = False
    else:
        compiled = True
    try:
        binding = ChallengeBinding("staff", EXPIRES, subject_cn="re:" + pattern,
                                   sans=("re:" + pattern,))
    except ValueError as exc:  # the API answers 400, the CLI a config error
        assert not compiled, f"compile_pattern accepts {pattern!r}, the binding refuses: {exc}"
        assert str(exc).startswith("subject: pattern"), str(exc)
        return
    assert compiled
    matched = _timed_match(pattern, value)
    if len(value) > MAX_VALUE_LENGTH:
        assert not matched
    started = time.thread_time()
    try:
        check_binding(binding, _facts(value, (value,)), "staff", NOW)
    except ChallengeRejected as exc:
        assert not matched, f"{pattern!r} fullmatches {value!r}, the binding refuses it: {exc}"
        assert exc.reason in (ChallengeReason.SUBJECT_MISMATCH, ChallengeReason.SAN_MISMATCH)
    else:
        assert matched, f"{pattern!r} does not fullmatch {value!r}, the binding accepts it"
    assert time.thread_time() - started < 2 * MATCH_BUDGET


def _mode_csr(data: bytes) -> None:
    try:
        facts = extract_csr_facts(data)
    except CsrRejected as exc:
        assert isinstance(exc.reason.value, str)
        return
    assert facts.key_type in ("rsa", "ec", "ed25519", "ed448")
    assert len(facts.spki_sha256) == 32
    assert all(":" in s for s in facts.sans)
    for policy in POLICIES:
        try:
            apply_policy(facts, policy)
        except CsrRejected:
            continue
        assert facts.signature_valid and not facts.requests_ca
        assert len(facts.sans) <= policy.max_sans
    for binding in BINDINGS:
        started = time.thread_time()
        try:
            check_binding(binding, facts, "staff", NOW)
        except ChallengeRejected:
            pass
        except ValueError as exc:
            raise AssertionError(f"check_binding raised {exc!r}") from exc
        elapsed = time.thread_time() - started
        assert elapsed < MATCH_BUDGET * 4, f"binding check took {elapsed:.3f} s"


def _mode_strings(data: bytes) -> None:
    if data[:1] == b"\x00":
        with contextlib.suppress(ValueError):  # normalize_san's documented refusal
            normalize_san(data[1:].decode("utf-8", "replace"))
        return
    try:
        text = _decode_string_der(data)
    except CsrRejected:
        return
    assert isinstance(text, str)


MODES = (_mode_pattern, _mode_csr, _mode_strings)


def one_input(data: bytes) -> None:
    if not data:
        return
    MODES[data[0] % len(MODES)](data[1:])


if __name__ == "__main__":
    from tests.fuzz._harness import run

    run("csr_policy", one_input, SEEDS)
