"""OCSP responder core (RFC 6960, RFC 5019 profile). Pure: no I/O; time is an argument.

Each group intermediate answers for the certificates it issued and signs its own
responses (no delegated responder certificate), with a by-key-hash ResponderID.
A request's CertID names its issuer by (issuerNameHash, issuerKeyHash) under the
CertID's hash algorithm (SHA-1 from most clients, SHA-256 and others accepted);
:class:`SignerTable` precomputes those hashes for every group once at start-up and
maps a CertID to the group *name*, so the store is asked only
``lookup(group_name, serial)``::

    signers = SignerTable({g.name: (g.intermediate, key_for(g)) for g in groups})
    def lookup(group: str, serial: int) -> CertStatus:   # the composition root
        row = store.get(group, serial)
        if row is None:          return UNKNOWN
        if row.revoked_at:       return Revoked(row.revoked_at, row.reason)
        return GOOD
    der = respond(request_der, lookup, signers, now)

Outcomes (wire response status / certStatus):

* undecodable, more than one CertID (unsupported), or a nonce outside 1..32 octets
  (RFC 8954) -> ``malformedRequest``
* CertID names no group intermediate (or an unsupported hash) -> ``unauthorized``
* otherwise ``successful`` with good / revoked (time + reason, reason omitted when
  unspecified) / unknown; thisUpdate = ``now``, nextUpdate = ``now + validity``;
  the request's nonce is echoed.

The core is synchronous; an async shell pre-fetches the row for
:func:`requested_serial` and closes ``lookup`` over it. ``lookup`` exceptions
propagate: a store outage is ours, not the client's; the shell may answer
``unsuccessful(OCSPResponseStatus.TRY_LATER)``.

Pre-signed responses: with a :class:`ResponseCache`, a request without a nonce gets the
response signed earlier for the same CertID while ``lookup`` still returns the *same*
status and that response is younger than the cache's ``max_age`` (RFC 5019 §2.1.1
allows pre-produced responses; thisUpdate is then up to ``max_age`` old and nextUpdate
unchanged). ``lookup`` is asked on every request, so a revocation (or a release) is in
the very next answer; only the signature is saved. Requests with a nonce are signed
every time (the nonce is inside the signed data)::

    cache = ResponseCache(dt.timedelta(seconds=60))
    der = respond(request_der, lookup, signers, now, cache=cache)

Caveat: cryptography stamps producedAt with the wall clock (no API to pass it);
every other time in the response comes from ``now``.

HTTP (RFC 6960 appendix A / RFC 5019 §5): POST body is the DER request; GET puts
base64(DER) in the path, see :func:`decode_get`. Reply with :data:`CONTENT_TYPE`;
for GET, :attr:`OcspAnswer.next_update` gives the cache lifetime.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as _dt
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

from asn1crypto import keys as _asn1_keys
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509 import ocsp

from revocation.crl import check_issuer, signature_hash_for
from revocation.reasons import to_flag

__all__ = [
    "CONTENT_TYPE",
    "GOOD",
    "MAX_REQUEST_SIZE",
    "UNKNOWN",
    "CertStatus",
    "Good",
    "MalformedRequest",
    "OcspAnswer",
    "OcspSigner",
    "Outcome",
    "ResponseCache",
    "Revoked",
    "SignerTable",
    "StatusLookup",
    "Unknown",
    "answer",
    "decode_get",
    "requested_serial",
    "respond",
    "unsuccessful",
]

CONTENT_TYPE = "application/ocsp-response"
MAX_REQUEST_SIZE = 16 * 1024  # real requests are ~100 bytes; signed ones a few KiB
MAX_NONCE_SIZE = 32  # RFC 8954 §2.1
DEFAULT_VALIDITY = _dt.timedelta(hours=1)

# CertID hash algorithms we index. The keys are cryptography's algorithm names.
_CERTID_HASHES: dict[str, Callable[[bytes], bytes]] = {
    "sha1": lambda b: hashlib.sha1(b, usedforsecurity=False).digest(),
    "sha224": lambda b: hashlib.sha224(b).digest(),
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "sha384": lambda b: hashlib.sha384(b).digest(),
    "sha512": lambda b: hashlib.sha512(b).digest(),
}


# ---------------------------------------------------------------- statuses


@dataclass(frozen=True, slots=True)
class Good:
    pass


@dataclass(frozen=True, slots=True)
class Unknown:
    pass


@dataclass(frozen=True, slots=True)
class Revoked:
    """``reason`` is any spelling revocation.reasons accepts; None means unspecified."""

    revoked_at: _dt.datetime
    reason: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.revoked_at, _dt.datetime):
            raise TypeError(f"revoked_at must be datetime, not {type(self.revoked_at).__name__}")
        if self.revoked_at.tzinfo is None:
            raise ValueError("revoked_at must be timezone-aware")
        to_flag(self.reason)  # ValueError for unknown reasons and removeFromCRL


GOOD = Good()
UNKNOWN = Unknown()
CertStatus = Good | Revoked | Unknown
StatusLookup = Callable[[str, int], CertStatus]
"""``lookup(group_name, serial) -> CertStatus``; never called for unknown issuers."""


class Outcome(StrEnum):
    """What happened, for logs and metric labels (closed set)."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"
    MALFORMED = "malformed"
    UNAUTHORIZED = "unauthorized"


# ---------------------------------------------------------------- signers


def _key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING value (without the unused-bits octet)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bits = _asn1_keys.PublicKeyInfo.load(spki)["public_key"].contents
    return bits[1:]


@dataclass(frozen=True)
class OcspSigner:
    group: str
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    def __post_init__(self) -> None:
        if not isinstance(self.group, str) or not self.group:
            raise ValueError("group must be a non-empty str")
        # The CA signs its own responses (RFC 6960 §4.2.2.2 case 1); relying parties
        # check no keyUsage then, and CA certs often carry only keyCertSign + cRLSign.
        check_issuer(self.cert, self.key, key_usage=None)

    def cert_id_hashes(self) -> Iterator[tuple[str, bytes, bytes]]:
        """(algorithm name, issuerNameHash, issuerKeyHash) for every supported hash."""
        name_der = self.cert.subject.public_bytes()
        key_bits = _key_bits(self.cert)
        for alg, h in _CERTID_HASHES.items():
            yield alg, h(name_der), h(key_bits)


class SignerTable:
    """Immutable index from CertID issuer hashes to the group intermediate that signs.

    Built from ``{group_name: (intermediate_cert, intermediate_key)}`` or OcspSigners.
    ValueError for a key that does not match its certificate, a non-CA certificate,
    or two groups with the same intermediate key.
    """

    def __init__(
        self,
        signers: Mapping[str, tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]]
        | list[OcspSigner]
        | tuple[OcspSigner, ...],
    ) -> None:
        if isinstance(signers, Mapping):
            items = [OcspSigner(name, cert, key) for name, (cert, key) in signers.items()]
        else:
            items = list(signers)
            if not all(isinstance(s, OcspSigner) for s in items):
                raise TypeError("signers must be a mapping or a sequence of OcspSigner")
        self._by_hash: dict[tuple[str, bytes, bytes], OcspSigner] = {}
        self._by_group: dict[str, OcspSigner] = {}
        for signer in items:
            if signer.group in self._by_group:
                raise ValueError(f"duplicate group {signer.group!r}")
            self._by_group[signer.group] = signer
            for ident in signer.cert_id_hashes():
                other = self._by_hash.get(ident)
                if other is not None:
                    raise ValueError(
                        f"groups {other.group!r} and {signer.group!r} share an issuer name and key"
                    )
                self._by_hash[ident] = signer

    def __len__(self) -> int:
        return len(self._by_group)

    def find(self, algorithm: str, name_hash: bytes, key_hash: bytes) -> OcspSigner | None:
        return self._by_hash.get((algorithm, name_hash, key_hash))

    def for_group(self, group: str) -> OcspSigner | None:
        return self._by_group.get(group)


# ---------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class OcspAnswer:
    der: bytes
    outcome: Outcome
    group: str | None = None  # the issuing group, when identified
    serial: int | None = None
    next_update: _dt.datetime | None = None  # only for successful responses


@dataclass(frozen=True, slots=True)
class _Signed:
    status: CertStatus
    der: bytes
    this_update: _dt.datetime
    next_update: _dt.datetime
    validity: _dt.timedelta


class ResponseCache:
    """Signed no-nonce responses by CertID, reused while the status is the same.

    ``max_age`` is how long one signature is reused (a response older than that is signed
    again, so thisUpdate is never more than ``max_age`` behind). Memory: only what was
    signed in the last ``max_age`` is kept (older entries go at the next ``put``; entries
    are in signing order) and at most ``max_entries`` (~700 bytes each, P-256). Not
    thread-safe: one per event loop.
    """

    def __init__(self, max_age: _dt.timedelta, max_entries: int = 32768) -> None:
        if not isinstance(max_age, _dt.timedelta) or max_age <= _dt.timedelta(0):
            raise ValueError("max_age must be a positive timedelta")
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError("max_entries must be a positive int")
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries: dict[tuple[str, bytes, bytes, int], _Signed] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, bytes, bytes, int], status: CertStatus, now: _dt.datetime,
            validity: _dt.timedelta) -> _Signed | None:
        entry = self._entries.get(key)
        if (entry is not None and entry.status == status and entry.validity == validity
                and entry.this_update <= now < entry.this_update + self.max_age):
            self.hits += 1
            return entry
        self.misses += 1
        return None

    def put(self, key: tuple[str, bytes, bytes, int], entry: _Signed) -> None:
        entries = self._entries
        entries.pop(key, None)  # re-inserted last: the dict stays in signing order
        expired = entry.this_update - self.max_age
        while entries:
            oldest = next(iter(entries))
            if len(entries) < self.max_entries and entries[oldest].this_update > expired:
                break
            del entries[oldest]
        entries[key] = entry

    def clear(self) -> None:
        self._entries.clear()


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned error response (malformedRequest, internalError, tryLater, ...)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


_MALFORMED = unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
_UNAUTHORIZED = unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)


def answer(
    request_der: bytes,
    lookup: StatusLookup,
    signers: SignerTable,
    now: _dt.datetime,
    *,
    validity: _dt.timedelta = DEFAULT_VALIDITY,
    cache: ResponseCache | None = None,
) -> OcspAnswer:
    """Decide and sign (or, without a nonce, reuse what ``cache`` holds for the same
    CertID and status). Peer faults become OCSP error statuses; our faults raise."""
    if not isinstance(request_der, bytes | bytearray | memoryview):
        raise TypeError(f"request_der must be bytes, not {type(request_der).__name__}")
    if not isinstance(signers, SignerTable):
        raise TypeError(f"signers must be a SignerTable, not {type(signers).__name__}")
    if not isinstance(now, _dt.datetime):
        raise TypeError(f"now must be datetime, not {type(now).__name__}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if validity <= _dt.timedelta(0):
        raise ValueError("validity must be positive")
    if cache is not None and not isinstance(cache, ResponseCache):
        raise TypeError(f"cache must be a ResponseCache, not {type(cache).__name__}")

    malformed = OcspAnswer(_MALFORMED, Outcome.MALFORMED)
    if len(request_der) > MAX_REQUEST_SIZE:
        return malformed
    try:
        request = ocsp.load_der_ocsp_request(bytes(request_der))
        serial = request.serial_number
        name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
        extensions = request.extensions
    except (ValueError, NotImplementedError):  # NotImplementedError: several CertIDs
        return malformed
    if serial < 0:  # not a serial anyone issues, and not encodable in the answer
        return malformed
    try:
        algorithm = request.hash_algorithm.name
    except UnsupportedAlgorithm:
        return OcspAnswer(_UNAUTHORIZED, Outcome.UNAUTHORIZED, serial=serial)

    nonce: bytes | None = None
    with contextlib.suppress(x509.ExtensionNotFound):
        nonce = extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_SIZE:
        return malformed

    signer = signers.find(algorithm, name_hash, key_hash)
    if signer is None:
        return OcspAnswer(_UNAUTHORIZED, Outcome.UNAUTHORIZED, serial=serial)

    status = lookup(signer.group, serial)
    revocation_time: _dt.datetime | None = None
    revocation_reason: x509.ReasonFlags | None = None
    if isinstance(status, Good):
        cert_status, outcome = ocsp.OCSPCertStatus.GOOD, Outcome.GOOD
    elif isinstance(status, Revoked):
        cert_status, outcome = ocsp.OCSPCertStatus.REVOKED, Outcome.REVOKED
        revocation_time = status.revoked_at
        flag = to_flag(status.reason)
        revocation_reason = None if flag is x509.ReasonFlags.unspecified else flag
    elif isinstance(status, Unknown):
        cert_status, outcome = ocsp.OCSPCertStatus.UNKNOWN, Outcome.UNKNOWN
    else:
        raise TypeError(f"lookup returned {status!r}, expected Good, Revoked or Unknown")

    key = (algorithm, name_hash, key_hash, serial)
    if cache is not None and nonce is None:
        hit = cache.get(key, status, now, validity)
        if hit is not None:
            return OcspAnswer(hit.der, outcome, group=signer.group, serial=serial,
                              next_update=hit.next_update)

    next_update = now + validity
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=name_hash,
            issuer_key_hash=key_hash,
            serial_number=serial,
            algorithm=request.hash_algorithm,
            cert_status=cert_status,
            this_update=now,
            next_update=next_update,
            revocation_time=revocation_time,
            revocation_reason=revocation_reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(signer.key, signature_hash_for(signer.key))
    der = response.public_bytes(serialization.Encoding.DER)
    if cache is not None and nonce is None:
        cache.put(key, _Signed(status, der, now, next_update, validity))
    return OcspAnswer(
        der,
        outcome,
        group=signer.group,
        serial=serial,
        next_update=next_update,
    )


def respond(
    request_der: bytes,
    lookup: StatusLookup,
    signers: SignerTable,
    now: _dt.datetime,
    *,
    validity: _dt.timedelta = DEFAULT_VALIDITY,
    cache: ResponseCache | None = None,
) -> bytes:
    """The DER OCSPResponse for ``request_der``; see :func:`answer`."""
    return answer(request_der, lookup, signers, now, validity=validity, cache=cache).der


def requested_serial(request_der: bytes) -> int | None:
    """The serial a request asks about, or None when :func:`answer` would say
    malformedRequest. Lets an async shell pre-fetch the one store row before calling
    the synchronous core (never raises for peer input)."""
    if len(request_der) > MAX_REQUEST_SIZE:
        return None
    try:
        serial = ocsp.load_der_ocsp_request(bytes(request_der)).serial_number
    except (ValueError, NotImplementedError):
        return None
    return serial if serial >= 0 else None


# ---------------------------------------------------------------- HTTP GET


class MalformedRequest(ValueError):
    """The client sent something that is not an OCSP request (answer malformedRequest)."""


_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=")


def decode_get(path_tail: str) -> bytes:
    """The DER request from a GET URL's path after the responder prefix (RFC 6960 A.1).

    Percent-decodes, tolerates a leading slash, missing ``=`` padding and the URL-safe
    alphabet; '+' is kept as '+' (paths are not form-encoded). MalformedRequest on
    anything else.
    """
    if not isinstance(path_tail, str):
        raise TypeError(f"path_tail must be str, not {type(path_tail).__name__}")
    if len(path_tail) > 3 * MAX_REQUEST_SIZE:
        raise MalformedRequest("request too long")
    try:
        text = unquote(path_tail, errors="strict").lstrip("/").strip()
    except UnicodeDecodeError:
        raise MalformedRequest("bad percent-encoding") from None
    raw = text.encode("ascii", errors="replace")
    if not raw or not set(raw) <= _B64_CHARS:
        raise MalformedRequest("not base64")
    raw = raw.rstrip(b"=").replace(b"-", b"+").replace(b"_", b"/")
    raw += b"=" * (-len(raw) % 4)
    try:
        der = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedRequest(f"bad base64: {exc}") from None
    if not der:
        raise MalformedRequest("empty request")
    return der
