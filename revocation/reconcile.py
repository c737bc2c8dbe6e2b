"""MDM reconciliation: which certificates to revoke because the MDM no longer has the device.

Pure: pages of the MDM's answer in, a plan out; time is an argument. The fetch is
`certgate/reconcile.py`; every revocation of a plan goes through the normal revocation
path there (reason cessationOfOperation, actor ``reconcile``).

The MDM endpoint (``[mdm] reconcile_url``), read with ``Authorization: Bearer <token>``::

    GET <reconcile_url>                 first page
    GET <reconcile_url>?cursor=<next>   following pages (the query parameter added)

    200 {"devices": ["C02XK1ABJG5H", "R58M40ABC", ...], "next_cursor": "p2" | null,
         "total": 1234}

``devices``: the ids of every device the MDM manages (the ``device_id`` certgate recorded:
challenge binding, blob claim or the group's ``device_id_from``), non-empty strings of at
most 256 characters, compared exactly. ``next_cursor``: absent or null on the last page.
``total`` (optional): the number of devices over all pages; when given it must equal the
number of distinct ids received. A page that is not exactly this (or over the size
budget, or a cursor seen before, or more than ``max_pages``) fails the whole fetch, and a
failed or partial fetch revokes nothing: an empty or truncated list must never read as
"every device left".

The plan, per reconciled group: the certificates considered are the unexpired device
certificates of the group that carry a device id, active or on hold, and were issued
before ``cutoff`` (the fetch's start minus ``[mdm] reconcile_min_age``, 15 minutes: a
certificate younger than that may belong to a device the MDM enrolled after its list was
read, or that its list endpoint does not show yet). Those whose device id is not in the list are to be
revoked. The brake: if in any group that is more than ``max_fraction`` of the
considered certificates, the pass revokes nothing at all (an MDM answering with the wrong
tenant, a filtered view or half its database looks exactly like that) until an operator
confirms (`certgate reconcile --confirm`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "MAX_CURSOR_CHARS",
    "MAX_DEVICE_ID_CHARS",
    "REASON",
    "Candidate",
    "Collector",
    "FetchFailed",
    "GroupPlan",
    "Page",
    "Plan",
    "parse_page",
    "plan",
]

REASON = "cessationOfOperation"
MAX_DEVICE_ID_CHARS = 256
MAX_CURSOR_CHARS = 1024
#: Default of ``[mdm] reconcile_min_age``: certificates issued later than this before the
#: fetch started are not considered.
RECENT = dt.timedelta(minutes=15)


class FetchFailed(Exception):
    """The device list could not be read completely: revoke nothing. ``reason`` is a short
    closed label (logs), ``detail`` says what (escaped by the logger)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Page:
    devices: tuple[str, ...]
    next_cursor: str | None
    total: int | None = None


def parse_page(status: int, body: bytes, *, truncated: bool = False,
               max_bytes: int | None = None) -> Page:
    """One page of the MDM's answer; FetchFailed for anything but the documented shape."""
    if status != 200:
        raise FetchFailed("http_status", f"HTTP {status}")
    if truncated:
        raise FetchFailed("too_large", f"page larger than {max_bytes or len(body)} bytes "
                          "([mdm] max_page_bytes)")
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FetchFailed("malformed", f"not JSON: {str(exc)[:100]}") from None
    if not isinstance(obj, dict):
        raise FetchFailed("malformed", "not a JSON object")
    devices = obj.get("devices")
    if not isinstance(devices, list):
        raise FetchFailed("malformed", '"devices" must be a list of device ids')
    for i, d in enumerate(devices):
        if not isinstance(d, str) or not d or len(d) > MAX_DEVICE_ID_CHARS:
            raise FetchFailed("malformed", f"devices[{i}] is not a non-empty string of at most "
                              f"{MAX_DEVICE_ID_CHARS} characters")
    cursor = obj.get("next_cursor")
    if cursor is not None and (not isinstance(cursor, str) or not cursor
                               or len(cursor) > MAX_CURSOR_CHARS):
        raise FetchFailed("malformed", f'"next_cursor" must be null or a non-empty string of '
                          f"at most {MAX_CURSOR_CHARS} characters")
    total = obj.get("total")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int)
                              or total < 0):
        raise FetchFailed("malformed", '"total" must be a non-negative integer')
    return Page(tuple(devices), cursor, total)


@dataclass
class Collector:
    """Pages in order -> the complete set of device ids (a small state machine: collecting
    until a page without next_cursor, then done)."""

    max_pages: int
    devices: set[str] = field(default_factory=set)
    pages: int = 0
    done: bool = False
    _cursors: set[str] = field(default_factory=set)
    _total: int | None = None

    def add(self, page: Page) -> str | None:
        """The cursor of the next page to fetch, or None when the list is complete."""
        if self.done:
            raise RuntimeError("the list is complete already")
        self.pages += 1
        self.devices.update(page.devices)
        if page.total is not None:
            if self._total is not None and page.total != self._total:
                raise FetchFailed("inconsistent", f"total changed from {self._total} to "
                                  f"{page.total} between pages")
            self._total = page.total
        if page.next_cursor is None:
            if self._total is not None and self._total != len(self.devices):
                raise FetchFailed("incomplete", f"total says {self._total} devices, "
                                  f"{len(self.devices)} distinct ids received")
            self.done = True
            return None
        if page.next_cursor in self._cursors:
            raise FetchFailed("cursor_loop", "next_cursor repeats an earlier one")
        if self.pages >= self.max_pages:
            raise FetchFailed("too_many_pages", f"more than {self.max_pages} pages "
                              "([mdm] max_pages)")
        self._cursors.add(page.next_cursor)
        return page.next_cursor

    def result(self) -> frozenset[str]:
        if not self.done:
            raise FetchFailed("incomplete", f"stopped after {self.pages} page(s)")
        return frozenset(self.devices)


@dataclass(frozen=True)
class Candidate:
    """A certificate as reconciliation sees it (plain values from the inventory)."""

    serial: int
    group: str
    device_id: str | None
    subject: str
    held: bool  # revoked with certificateHold (still revocable for good); else active
    not_after: dt.datetime
    issued_at: dt.datetime | None


@dataclass(frozen=True)
class GroupPlan:
    group: str
    considered: int
    revoke: tuple[Candidate, ...]
    braked: bool

    @property
    def fraction(self) -> float:
        return len(self.revoke) / self.considered if self.considered else 0.0


@dataclass(frozen=True)
class Plan:
    groups: tuple[GroupPlan, ...]
    max_fraction: float
    enrolled: int  # device ids the MDM listed

    @property
    def braked(self) -> bool:
        return any(g.braked for g in self.groups)

    @property
    def revocations(self) -> tuple[Candidate, ...]:
        return tuple(c for g in self.groups for c in g.revoke)

    def to_apply(self, *, confirmed: bool = False) -> tuple[Candidate, ...]:
        """What a pass revokes: everything planned, or nothing while the brake holds
        (unless an operator confirmed this plan)."""
        return self.revocations if confirmed or not self.braked else ()


def plan(enrolled: frozenset[str], candidates: Iterable[Candidate], groups: Sequence[str],
         max_fraction: float, *, now: dt.datetime, cutoff: dt.datetime) -> Plan:
    """The plan for one pass. `cutoff`: certificates issued at or after it are left alone
    (pass the fetch's start minus RECENT)."""
    if not 0.0 <= max_fraction <= 1.0:
        raise ValueError("max_fraction must be between 0 and 1")
    by_group: dict[str, list[Candidate]] = {g: [] for g in groups}
    for c in candidates:
        if c.group not in by_group or not c.device_id or c.not_after <= now:
            continue
        if c.issued_at is not None and c.issued_at >= cutoff:
            continue
        by_group[c.group].append(c)
    out = []
    for g in groups:
        considered = by_group[g]
        revoke = tuple(sorted((c for c in considered if c.device_id not in enrolled),
                              key=lambda c: (c.device_id or "", c.serial)))
        braked = bool(considered) and len(revoke) / len(considered) > max_fraction
        out.append(GroupPlan(g, len(considered), revoke, braked))
    return Plan(tuple(out), max_fraction, len(enrolled))
