"""Per-group CRLs at a million entries: a complete CRL, a base CRL and a delta CRL.

Three documents per group, one CRL number sequence (the store's, RFC 5280 §5.2.3):

- the **delta CRL** (`/crl/delta/<group>.crl`, named by the Freshest CRL extension of every
  certificate and complete CRL): everything revoked since the base, and removeFromCRL for
  holds of the base released since. Re-signed after every change (its cost is the number of
  changes since the base, not the table), and a download waits for the delta covering every
  change acknowledged before it arrived: **a revocation is in the delta at once**.
- the **complete CRL** (`/crl/<group>.crl`, the CRL Distribution Point, also SCEP GetCRL):
  complete, for relying parties that know nothing of deltas. Kept encoded in memory
  (revocation/crl_delta.py) and re-signed with what changed, at most every
  `[revocation] full_crl_interval` seconds (0: after every change, downloads waiting for it).
  A download never waits for it: **staleness bound** `full_crl_interval` + the time to sign
  (~0.2 s at a million entries).
- the **base CRL** (`/crl/base/<group>.crl`): the complete CRL the deltas are computed
  against. A new base is the complete CRL signed when the delta lists more than
  `delta_crl_max_entries`, or when the base is `base_crl_interval_hours` old (at most half
  its validity), never per revocation. It is persisted next to the PKI (certgate/crl_files.py)
  and taken up at start-up when it still matches the store (its issuer's signature, CRL number
  and change position not ahead of the store, and the revoked count once the changes since it
  are applied); otherwise the CRL is rebuilt from the store.

CPU-heavy work (encoding a rebuild, hashing and signing a complete CRL) runs in the default
executor, off the event loop. Each group has one lock and one background worker, woken by
`mark_dirty` (called after the durable write, before the acknowledgement).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from prometheus_client import Gauge

from certgate.crl_files import crl_dir, load_base, save_base
from certgate.runtime import Runtime
from revocation.crl_delta import Base, CrlContents, CrlRow, complete_extensions, delta_extensions
from revocation.crl_der import build_crl_der, der_to_pem, sign_crl
from store import StoreUnavailable

log = logging.getLogger("certgate.revocation")

CRL_NEXT_UPDATE = Gauge("certgate_crl_next_update_timestamp_seconds", "nextUpdate of the "
                        "published CRL", ["group"],
                        multiprocess_mode="max")
CRL_NUMBER = Gauge(
    "certgate_crl_number", "CRL number of the published CRL", ["group"],
    multiprocess_mode="max",
)
CRL_DELTA_ENTRIES = Gauge("certgate_crl_delta_entries", "Entries of the group's delta CRL "
                          "(changes since its base CRL)", ["group"],
                          multiprocess_mode="mostrecent")


@dataclass
class PublishedCrl:
    der: bytes
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    _pem: bytes | None = None

    _parsed: x509.CertificateRevocationList | None = None

    @property
    def pem(self) -> bytes:
        if self._pem is None:
            self._pem = der_to_pem(self.der)
        return self._pem

    def entry(self, serial: int) -> tuple[dt.datetime, str | None] | None:
        """(revocation time, reason) of `serial` if this CRL lists it. A linear scan in
        cryptography's Rust parser: for the outage path, run it off the event loop."""
        if self._parsed is None:
            self._parsed = x509.load_der_x509_crl(self.der)
        revoked = self._parsed.get_revoked_certificate_by_serial_number(serial)
        if revoked is None:
            return None
        try:
            reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        return revoked.revocation_date_utc, reason.value if reason is not None else None


@dataclass
class _Group:
    name: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    generation: int = 0  # bumped by mark_dirty
    synced: int = -1  # generation the contents cover
    contents: CrlContents | None = None
    full: PublishedCrl | None = None
    full_version: int = -1  # contents.version the complete CRL lists
    last_full: float = float("-inf")  # monotonic time of the last complete CRL
    base: PublishedCrl | None = None
    delta: PublishedCrl | None = None
    delta_version: tuple[int, int] = (-1, -1)  # (base number, contents.version)
    worker: asyncio.Task[None] | None = None


class CrlPublisher:
    """The CRLs of every group; see the module docstring."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        rv = runtime.settings.revocation
        self.validity = dt.timedelta(hours=rv.crl_validity_hours)
        self.delta_validity = dt.timedelta(minutes=getattr(rv, "delta_crl_validity_minutes", 60))
        self.full_interval = float(getattr(rv, "full_crl_interval", 5.0))
        self.base_period = min(dt.timedelta(hours=getattr(rv, "base_crl_interval_hours", 12)),
                               self.validity / 2)
        self.delta_max = int(getattr(rv, "delta_crl_max_entries", 10000))
        pki_dir = getattr(getattr(runtime.settings, "pki", None), "dir", None)
        self.directory = crl_dir(pki_dir) if pki_dir and getattr(rv, "persist_crl", True) else None
        public_url = getattr(getattr(runtime.settings, "http", None), "public_url", None)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.groups = {g: _Group(g) for g in runtime.groups.names()}
        # counters for tests and benchmarks
        self.rebuilds = 0  # complete CRLs built from the store's full list
        self.full_signed = 0
        self.delta_signed = 0
        self.reused = 0  # persisted base CRLs taken up at start-up
        self.last_sign_seconds = 0.0  # wall time of the last complete CRL's signing
        self._spki: dict[str, bytes] = {}
        for g in self.groups:
            CRL_DELTA_ENTRIES.labels(group=g).set(0)

    # -- what relying parties get ---------------------------------------------------------

    @property
    def current(self) -> dict[str, PublishedCrl]:
        """The complete CRL of each group (the OCSP outage path reads entries from it)."""
        return {g: st.full for g, st in self.groups.items() if st.full is not None}

    def delta_url(self, group: str) -> str | None:
        return f"{self.public_url}/crl/delta/{group}.crl" if self.public_url else None

    async def get(self, group: str) -> PublishedCrl:
        """The complete CRL. Served as it is, at most `full_crl_interval` behind (the worker
        re-signs it); with full_crl_interval = 0, a download waits for one listing every change
        acknowledged before it arrived."""
        st = self.groups[group]
        wanted = st.generation
        full = st.full
        if full is not None and self.full_interval > 0 and _now() < full.next_update:
            if st.synced < wanted or st.full_version != self._version(st):
                self._kick(st)
            return full
        async with st.lock:
            try:
                await self._sync(st, wanted)
                if st.full is None or st.full_version != self._version(st) \
                        or _now() >= st.full.next_update:
                    await self._sign_full(st)
                    await self._sign_delta(st)
            except StoreUnavailable:  # stale: retried on the next request or refresh
                if st.full is None or _now() >= st.full.next_update:
                    raise
                log.warning("store unavailable: serving CRL number=%d group=%s until it returns",
                            st.full.number, group)
            assert st.full is not None
            return st.full

    async def get_delta(self, group: str) -> PublishedCrl:
        """The delta CRL, listing every change acknowledged before the download arrived."""
        st = self.groups[group]
        wanted = st.generation
        async with st.lock:
            try:
                await self._sync(st, wanted)
                if st.full is None:
                    await self._sign_full(st)
                if self._delta_stale(st):
                    await self._sign_delta(st)
            except StoreUnavailable:
                if st.delta is None or _now() >= st.delta.next_update:
                    raise
                log.warning("store unavailable: serving delta CRL number=%d group=%s",
                            st.delta.number, group)
            assert st.delta is not None
            return st.delta

    async def get_base(self, group: str) -> PublishedCrl:
        st = self.groups[group]
        if st.base is None:
            await self.get(group)
        assert st.base is not None
        return st.base

    # -- change notification and schedule -------------------------------------------------

    def mark_dirty(self, group: str | None = None) -> None:
        for name in [group] if group else list(self.groups):
            st = self.groups[name]
            st.generation += 1
            self._kick(st)

    def _kick(self, st: _Group) -> None:
        st.wake.set()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if st.worker is None or st.worker.done():
            st.worker = loop.create_task(self._work(st))

    async def _work(self, st: _Group) -> None:
        """Delta at once after a change; the complete CRL when `full_crl_interval` allows."""
        try:
            while True:
                st.wake.clear()
                async with st.lock:
                    await self._sync(st, st.generation)
                    if st.full is None:
                        await self._sign_full(st)
                    if self._delta_stale(st):
                        await self._sign_delta(st)
                    wait = st.last_full + self.full_interval - time.monotonic()
                    full_due = st.full_version != self._version(st)
                    if full_due and wait <= 0:
                        await self._sign_full(st)
                        await self._sign_delta(st)
                        full_due = False
                if st.synced < st.generation:
                    continue
                if not full_due:
                    return
                # until the interval allows the complete CRL, or a new change
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(st.wake.wait(), timeout=max(wait, 0.01))
        except StoreUnavailable as exc:  # the next change or the periodic refresh retries
            log.warning("CRL not updated group=%s: %s", st.name, exc)
        except Exception:
            log.exception("CRL update failed group=%s", st.name)

    async def refresh_due(self) -> None:
        """Periodic: first CRLs, changes not yet applied, a complete CRL or delta past half
        its validity, a base due (age or delta size)."""
        now = _now()
        for st in self.groups.values():
            async with st.lock:
                await self._sync(st, st.generation)
                full = st.full
                if full is None or now >= _half_life(full) or self._base_due(st, now) \
                        or st.full_version != self._version(st):
                    await self._sign_full(st)
                    await self._sign_delta(st)
                elif self._delta_stale(st) or now >= _half_life(st.delta):
                    await self._sign_delta(st)

    async def regenerate(self, group: str) -> PublishedCrl:
        """A complete CRL now, whatever the interval (tests, the CLI's view)."""
        st = self.groups[group]
        async with st.lock:
            await self._sync(st, st.generation)
            await self._sign_full(st)
            await self._sign_delta(st)
            assert st.full is not None
            return st.full

    async def close(self) -> None:
        for st in self.groups.values():
            if st.worker is not None and not st.worker.done():
                st.worker.cancel()

    # -- under the group lock -------------------------------------------------------------

    def _version(self, st: _Group) -> int:
        return st.contents.version if st.contents is not None else -1

    def _delta_stale(self, st: _Group) -> bool:
        base = st.contents.base if st.contents is not None else None
        if base is None:
            return False
        return st.delta is None or st.delta_version != (base.number, self._version(st)) \
            or _now() >= st.delta.next_update

    def _base_due(self, st: _Group, now: dt.datetime) -> bool:
        c = st.contents
        return c is None or c.base is None or len(c.delta) > self.delta_max \
            or now >= c.base.this_update + self.base_period

    async def _sync(self, st: _Group, wanted: int) -> None:
        """Bring the contents to the store's position (they then cover generation `wanted`,
        read before the store)."""
        if st.synced >= wanted and st.contents is not None:
            return
        generation = st.generation
        store = self.runtime.store
        if st.contents is None:
            # then at once the changes since: the full read left out rows changed after its
            # position (a hold made final meanwhile), their state now comes from here
            await self._load(st)
        contents = st.contents
        assert contents is not None
        upto = await store.committed_seq()
        if upto > contents.seq:
            rows = await store.crl_changes(st.name, contents.seq, upto)
            contents.apply([CrlRow(*r) for r in rows], upto)
        st.synced = max(st.synced, generation)
        CRL_DELTA_ENTRIES.labels(group=st.name).set(len(contents.delta))

    async def _load(self, st: _Group) -> None:
        if self.directory is not None:
            try:
                if await self._take_up_persisted(st):
                    return
            except StoreUnavailable:
                raise
            except Exception as exc:  # anything wrong with the files: rebuilt from the store
                log.warning("persisted CRL not used group=%s: %s", st.name, exc)
            st.contents, st.full, st.base = None, None, None
        await self._rebuild(st)

    async def _rebuild(self, st: _Group) -> None:
        started = time.monotonic()
        store = self.runtime.store
        upto = await store.committed_seq()
        rows = await store.crl_rows(st.name, upto)
        loop = asyncio.get_running_loop()
        st.contents = await loop.run_in_executor(None, CrlContents.from_rows, upto, rows)
        st.full_version = -1
        self.rebuilds += 1
        log.info("CRL entries read from the store group=%s entries=%d in %.2f s", st.name,
                 len(st.contents), time.monotonic() - started)

    async def _take_up_persisted(self, st: _Group) -> bool:
        assert self.directory is not None
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, load_base, self.directory, st.name)
        if found is None:
            return False
        der, meta = found
        number, seq = int(meta["number"]), int(meta["seq"])
        this_update = dt.datetime.fromisoformat(meta["this_update"])
        next_update = dt.datetime.fromisoformat(meta["next_update"])
        held = {int(s, 16): dt.datetime.fromtimestamp(t, dt.UTC) for s, t in meta["held"]}
        ca = self.runtime.pki.groups[st.name]
        if meta.get("issuer_spki_sha256") != self._issuer_spki(st.name):
            raise ValueError("signed by another key (intermediate replaced)")
        await loop.run_in_executor(None, _check_signed, der, ca.certificate, number)
        store = self.runtime.store
        if await store.crl_number(st.name) < number:
            raise ValueError(f"CRL number {number} is ahead of the store's (store restored?)")
        if await store.committed_seq() < seq:
            raise ValueError(f"change {seq} is ahead of the store's (store restored?)")
        base = Base(number, seq, this_update, held)
        contents = CrlContents.from_signed(der, base, int(meta["final_count"]))
        st.contents = contents
        st.synced = -1
        await self._sync(st, st.generation)  # the changes since the base, recorded as delta
        count = await store.revoked_count(st.name)
        if count != len(contents):
            raise ValueError(f"lists {len(contents)} once brought up to date, the store {count}")
        st.base = PublishedCrl(der, number, this_update, next_update, int(meta["entries"]))
        if contents.version == 0:  # nothing changed since: the base is the complete CRL
            st.full, st.full_version = st.base, 0
            self._published(st.name, st.full)
        self.reused += 1
        log.info("persisted CRL taken up group=%s number=%d entries=%d changes_since=%d "
                 "in %.2f s", st.name, number, st.base.entries, len(contents.delta),
                 time.monotonic() - started)
        return True

    def _issuer_spki(self, group: str) -> str:
        if group not in self._spki:
            ca = self.runtime.pki.groups[group]
            spki = ca.certificate.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            digest = hashes.Hash(hashes.SHA256())
            digest.update(spki)
            self._spki[group] = digest.finalize().hex()
        return self._spki[group]

    async def _sign_full(self, st: _Group) -> None:
        contents = st.contents
        assert contents is not None
        now = _now()
        promote = self._base_due(st, now)
        next_update = now + self.validity
        number = await self.runtime.store.next_crl_number(st.name, now, next_update)
        ca = self.runtime.pki.groups[st.name]
        chunks = contents.complete_chunks()
        # one hash pass and one copy of ~45 bytes per entry: off the loop
        started = time.monotonic()
        signed = await asyncio.get_running_loop().run_in_executor(
            None, sign_crl, ca.certificate, ca.key, chunks, number, now, next_update,
            complete_extensions(self.delta_url(st.name)))
        self.last_sign_seconds = time.monotonic() - started
        contents.signed(signed)
        st.full = PublishedCrl(signed.der, number, now, next_update, len(contents))
        st.full_version = contents.version
        st.last_full = time.monotonic()
        self.full_signed += 1
        self._published(st.name, st.full)
        if promote:
            contents.promote(number, now)
            st.base = st.full
            CRL_DELTA_ENTRIES.labels(group=st.name).set(0)
            log.info("base CRL group=%s number=%d entries=%d", st.name, number, len(contents))
            await self._persist(st)

    async def _persist(self, st: _Group) -> None:
        if self.directory is None or st.base is None or st.contents is None \
                or st.contents.base is None:
            return
        base, contents = st.base, st.contents
        meta = {
            "number": base.number, "seq": contents.base.seq,  # type: ignore[union-attr]
            "this_update": base.this_update.isoformat(),
            "next_update": base.next_update.isoformat(), "entries": base.entries,
            "final_count": contents.final_count,
            "held": [[f"{s:x}", int(t.timestamp())] for s, t in contents.base.held.items()],  # type: ignore[union-attr]
            "issuer_spki_sha256": self._issuer_spki(st.name),
        }
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, save_base, self.directory, st.name, base.der, meta)
        except OSError as exc:  # serving goes on; the next start rebuilds from the store
            log.warning("base CRL not persisted group=%s: %s", st.name, exc)

    async def _sign_delta(self, st: _Group) -> None:
        contents = st.contents
        if contents is None or contents.base is None:
            return
        now = _now()
        next_update = now + self.delta_validity
        number = await self.runtime.store.next_crl_number(st.name, now, next_update)
        ca = self.runtime.pki.groups[st.name]
        entries = contents.delta_entries()
        der = await asyncio.get_running_loop().run_in_executor(
            None, build_crl_der, ca.certificate, ca.key, entries, number, now, next_update,
            delta_extensions(contents.base.number))
        st.delta = PublishedCrl(der, number, now, next_update, len(entries))
        st.delta_version = (contents.base.number, contents.version)
        self.delta_signed += 1
        CRL_DELTA_ENTRIES.labels(group=st.name).set(len(entries))

    def _published(self, group: str, crl: PublishedCrl) -> None:
        CRL_NEXT_UPDATE.labels(group=group).set(crl.next_update.timestamp())
        CRL_NUMBER.labels(group=group).set(crl.number)
        log.info("CRL published group=%s number=%d entries=%d next_update=%s (signed in %.2f s)",
                 group, crl.number, crl.entries, crl.next_update.isoformat(),
                 self.last_sign_seconds)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _half_life(crl: PublishedCrl | None) -> dt.datetime:
    if crl is None:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return crl.this_update + (crl.next_update - crl.this_update) / 2


def _check_signed(der: bytes, issuer: x509.Certificate, number: int) -> None:
    crl = x509.load_der_x509_crl(der)
    if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):
        raise ValueError("not signed by the group's intermediate")
    if crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number != number:
        raise ValueError("CRL number differs from its record")
