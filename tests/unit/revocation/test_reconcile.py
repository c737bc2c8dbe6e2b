"""revocation.reconcile: the MDM's pages, completeness, and the plan with its brake."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from revocation.reconcile import Candidate, Collector, FetchFailed, Page, parse_page, plan

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
CUTOFF = NOW - dt.timedelta(minutes=15)


def page(**obj) -> bytes:  # noqa: ANN003
    return json.dumps(obj).encode()


def test_parse_page_accepts_only_the_documented_shape() -> None:
    assert parse_page(200, page(devices=["a", "b"], next_cursor="p2", total=3)) == \
        Page(("a", "b"), "p2", 3)
    assert parse_page(200, page(devices=[])) == Page((), None, None)
    bad = [
        (500, page(devices=[])), (302, b""),
        (200, b"nope"), (200, b"[]"), (200, page(device=["a"])), (200, page(devices="a")),
        (200, page(devices=["a", 1])), (200, page(devices=[""])), (200, page(devices=["x" * 257])),
        (200, page(devices=[], next_cursor=5)), (200, page(devices=[], next_cursor="")),
        (200, page(devices=[], total=-1)), (200, page(devices=[], total=True)),
        (200, b"[" * 100_000),
    ]
    for status, body in bad:
        with pytest.raises(FetchFailed):
            parse_page(status, body)
    with pytest.raises(FetchFailed, match="too_large"):
        parse_page(200, page(devices=[]), truncated=True, max_bytes=10)


def test_collector_needs_every_page() -> None:
    c = Collector(max_pages=3)
    assert c.add(Page(("a", "b"), "p2", 3)) == "p2"
    with pytest.raises(FetchFailed, match="incomplete"):
        c.result()
    assert c.add(Page(("c",), None, 3)) is None
    assert c.result() == frozenset("abc")
    short = Collector(max_pages=5)
    short.add(Page(("a",), "p2", 3))
    with pytest.raises(FetchFailed, match="incomplete"):
        short.add(Page(("b",), None, 3))
    loop = Collector(max_pages=5)
    loop.add(Page(("a",), "p2"))
    with pytest.raises(FetchFailed, match="cursor_loop"):
        loop.add(Page(("b",), "p2"))
    many = Collector(max_pages=2)
    many.add(Page(("a",), "p2"))
    with pytest.raises(FetchFailed, match="too_many_pages"):
        many.add(Page(("b",), "p3"))
    changed = Collector(max_pages=5)
    changed.add(Page(("a",), "p2", 2))
    with pytest.raises(FetchFailed, match="inconsistent"):
        changed.add(Page(("b",), None, 3))


def cert(serial: int, device: str | None, group: str = "staff", *, held: bool = False,
         issued: dt.datetime = NOW - dt.timedelta(days=10),
         not_after: dt.datetime = NOW + dt.timedelta(days=300)) -> Candidate:
    return Candidate(serial, group, device, f"CN=d{serial}", held, not_after, issued)


def fleet(n: int, group: str = "staff", start: int = 0) -> list[Candidate]:
    return [cert(start + i, f"D{start + i}", group) for i in range(n)]


def test_plan_revokes_exactly_the_missing_devices_within_the_brake() -> None:
    certs = fleet(20) + [cert(100, None), cert(101, "GONE", "other")]
    enrolled = frozenset(f"D{i}" for i in range(1, 20))
    p = plan(enrolled, certs, ["staff"], 0.05, now=NOW, cutoff=CUTOFF)
    (g,) = p.groups
    assert g.considered == 20 and [c.serial for c in g.revoke] == [0] and not g.braked
    assert g.fraction == 0.05 and p.to_apply() == g.revoke  # exactly 5 %: not more
    two = plan(frozenset(f"D{i}" for i in range(2, 20)), certs, ["staff"], 0.05, now=NOW,
               cutoff=CUTOFF)
    assert two.braked and two.to_apply() == () and len(two.to_apply(confirmed=True)) == 2


def test_brake_in_one_group_holds_every_group() -> None:
    certs = fleet(40, "staff") + fleet(4, "lab", start=100)
    enrolled = frozenset(c.device_id for c in certs) - {"D0", "D100"}
    p = plan(enrolled, certs, ["staff", "lab"], 0.05, now=NOW, cutoff=CUTOFF)
    staff, lab = p.groups
    assert not staff.braked and lab.braked and len(p.revocations) == 2
    assert p.to_apply() == ()


def test_what_is_considered() -> None:
    certs = [
        cert(1, "A"), cert(2, "B", held=True),
        cert(3, "C", issued=NOW - dt.timedelta(minutes=5)),  # younger than the fetch
        cert(4, "D", not_after=NOW - dt.timedelta(days=1)),  # expired
        cert(5, None), cert(6, ""),
    ]
    p = plan(frozenset(), certs, ["staff"], 1.0, now=NOW, cutoff=CUTOFF)
    assert [c.serial for c in p.revocations] == [1, 2] and p.groups[0].considered == 2
    empty = plan(frozenset(), [], ["staff"], 0.05, now=NOW, cutoff=CUTOFF)
    assert not empty.braked and empty.revocations == ()
    everyone = plan(frozenset(), fleet(3), ["staff"], 0.05, now=NOW, cutoff=CUTOFF)
    assert everyone.braked  # an empty list never revokes a whole group unconfirmed
    with pytest.raises(ValueError):
        plan(frozenset(), [], ["staff"], 1.5, now=NOW, cutoff=CUTOFF)
