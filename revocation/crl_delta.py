"""A group's CRL kept encoded and updated in place, and delta CRLs against a base
(RFC 5280 §5.2.4 Delta CRL Indicator, §5.2.6 Freshest CRL). Pure: rows in, DER out, time in.

Why: at a million revoked entries a complete CRL costs ~6.5 s to rebuild from the store and
encode. Almost none of that work changes between two revocations, so `CrlContents` keeps the
encoded entries and only appends:

- ``final``: encoded entries of final revocations (every reason but certificateHold). A final
  revocation never changes and never leaves the list (certgate does not prune expired
  entries), so these chunks are only ever appended to.
- ``held``: certificateHold entries, serial -> revocation time. A hold may be released or
  turned into a final revocation; they are few and are encoded at each signing, after
  ``final``.

Re-signing a complete CRL is then one hash pass and one copy of what is already encoded
(`crl_der.sign_crl`), ~0.1 s at a million entries.

Delta CRLs: `promote` makes the complete CRL just signed the *base* (its number, the store
change it reflects, the holds it lists). From then on every change applied is also recorded
against the base: a revocation (final or hold) is listed with its reason; a hold the base
lists that is released is listed as ``removeFromCRL``; a hold placed and released after the
base disappears from the delta again. A delta CRL (`delta_entries`, `delta_extensions`)
therefore lists exactly what a relying party holding the base (or any later complete CRL,
RFC 5280 §5.2.4) needs to know, and its size is the number of changes since the base, not
the size of the table.

Rows must be applied in store change order, each once: the caller reads the full list up to
a change number S (rows changed after S excluded) and then the rows changed in (S, S2],
(S2, S3], ...; a row's state is its latest, so a certificate revoked before S and changed
after it is simply absent from the first read and applied from the second.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from revocation.crl_der import REMOVE_FROM_CRL, Chunk, SignedCrl, encode_entries, entries_span
from revocation.reasons import to_flag

__all__ = [
    "Base",
    "CrlContents",
    "CrlRow",
    "complete_extensions",
    "delta_extensions",
    "is_hold",
]

REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class CrlRow:
    """The state of one certificate after a change, as the store reports it."""

    serial: int
    status: str  # "revoked" or anything else (active)
    revoked_at: _dt.datetime | None = None
    reason: str | None = None


def is_hold(reason: str | None) -> bool:
    return reason is not None and to_flag(reason) is x509.ReasonFlags.certificate_hold


@dataclass(frozen=True)
class Base:
    """The complete CRL deltas are computed against."""

    number: int
    seq: int  # store change it reflects
    this_update: _dt.datetime
    held: dict[int, _dt.datetime] = field(default_factory=dict)  # its certificateHold entries


class CrlContents:
    """Entries of one group's complete CRL as of store change `seq`, plus the changes since
    the base. Not thread-safe: one owner (the publisher, under its group lock)."""

    def __init__(self, seq: int, final: Sequence[Chunk] = (), final_count: int = 0,
                 held: dict[int, _dt.datetime] | None = None, base: Base | None = None) -> None:
        self.seq = seq
        self._final: list[Chunk] = [c for c in final if len(c)]
        self.final_count = final_count
        self.held: dict[int, _dt.datetime] = dict(held or {})
        self.base = base
        self.delta: dict[int, tuple[_dt.datetime, str | None]] = {}
        self.version = 0  # bumped by every apply that changed the list

    @classmethod
    def from_rows(cls, seq: int, rows: Iterable[tuple[int, _dt.datetime, str | None]]
                  ) -> CrlContents:
        """The revoked entries of a group as of change `seq` (serial, time, reason)."""
        final: list[tuple[int, _dt.datetime, str | None]] = []
        held: dict[int, _dt.datetime] = {}
        for serial, at, reason in rows:
            if is_hold(reason):
                held[serial] = at
            else:
                final.append((serial, at, reason))
        return cls(seq, [encode_entries(final)], len(final), held)

    @classmethod
    def from_signed(cls, der: bytes, base: Base, final_count: int) -> CrlContents:
        """Take up a complete CRL signed from contents whose final entries came first and
        whose holds are `base.held` (a persisted base): ValueError if the DER does not end
        its entries with exactly those holds."""
        offset, length = entries_span(der)
        held = encode_entries((s, at, "certificateHold") for s, at in base.held.items())
        final_length = length - len(held)
        if final_length < 0 or der[offset + final_length:offset + length] != held:
            raise ValueError("the CRL's entries do not end with the holds recorded for it")
        final = [memoryview(der)[offset:offset + final_length]] if final_length else []
        return cls(base.seq, final, final_count, base.held, base)

    def __len__(self) -> int:
        return self.final_count + len(self.held)

    @property
    def final_length(self) -> int:
        return sum(len(c) for c in self._final)

    def apply(self, rows: Iterable[CrlRow], seq: int) -> int:
        """Apply the rows changed in (self.seq, seq]; returns how many touched the CRL."""
        if seq < self.seq:
            raise ValueError(f"change {seq} is older than the contents ({self.seq})")
        appended: list[tuple[int, _dt.datetime, str | None]] = []
        touched = 0
        for row in rows:
            if row.status == REVOKED:
                if row.revoked_at is None:
                    raise ValueError(f"revoked serial {row.serial:#x} without a revocation time")
                if is_hold(row.reason):
                    self.held[row.serial] = row.revoked_at
                else:
                    self.held.pop(row.serial, None)
                    appended.append((row.serial, row.revoked_at, row.reason))
                if self.base is not None:
                    self.delta[row.serial] = (row.revoked_at, row.reason)
                touched += 1
            elif row.serial in self.held:  # a hold released (otherwise: an issuance)
                del self.held[row.serial]
                if self.base is not None:
                    was = self.base.held.get(row.serial)
                    if was is not None:
                        self.delta[row.serial] = (was, REMOVE_FROM_CRL)
                    else:
                        self.delta.pop(row.serial, None)
                touched += 1
        if appended:
            self._final.append(encode_entries(appended))
            self.final_count += len(appended)
        self.seq = seq
        if touched:
            self.version += 1
        return touched

    def complete_chunks(self) -> list[Chunk]:
        """Entries of the complete CRL: final ones, then the holds (encoded now)."""
        held = encode_entries((s, at, "certificateHold") for s, at in self.held.items())
        return [*self._final, held] if held else list(self._final)

    def signed(self, crl: SignedCrl) -> None:
        """`crl` was signed from complete_chunks(): keep its final entries as one slice of
        its DER instead of the chunks (one buffer however many appends came before)."""
        length = self.final_length
        if length:
            self._final = [memoryview(crl.der)[crl.entries_offset:crl.entries_offset + length]]

    def promote(self, number: int, this_update: _dt.datetime) -> Base:
        """The complete CRL just signed from these contents (number `number`) is the base."""
        self.base = Base(number, self.seq, this_update, dict(self.held))
        self.delta = {}
        return self.base

    def delta_entries(self) -> list[tuple[int, _dt.datetime, str | None]]:
        return [(serial, at, reason) for serial, (at, reason) in self.delta.items()]


def complete_extensions(delta_url: str | None) -> list[x509.Extension]:
    """A complete CRL names where its deltas are (Freshest CRL, non-critical, §5.2.6)."""
    if not delta_url:
        return []
    point = x509.DistributionPoint(full_name=[x509.UniformResourceIdentifier(delta_url)],
                                   relative_name=None, reasons=None, crl_issuer=None)
    return [x509.Extension(x509.FreshestCRL.oid, False, x509.FreshestCRL([point]))]


def delta_extensions(base_number: int) -> list[x509.Extension]:
    """Delta CRL Indicator naming the base CRL number; critical, as §5.2.4 requires."""
    return [x509.Extension(x509.DeltaCRLIndicator.oid, True, x509.DeltaCRLIndicator(base_number))]
