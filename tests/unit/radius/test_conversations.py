"""radius.conversations with an explicit clock."""

from __future__ import annotations

import itertools

import pytest

from radius.conversations import ConversationTable, Overloaded
from radius.duplicates import DuplicateCache, DupStatus


def test_add_get_remove() -> None:
    t: ConversationTable[str] = ConversationTable(10, 60.0)
    state, _ = t.add("a", 0.0)
    assert len(state) >= 16
    assert t.get(state, 1.0) == "a"
    assert t.remove(state) == "a"
    assert t.get(state, 1.0) is None


def test_expiry_counts_from_last_request() -> None:
    t: ConversationTable[str] = ConversationTable(10, 60.0)
    a, _ = t.add("a", 0.0)
    t.add("b", 10.0)
    assert t.get(a, 50.0) == "a"  # refreshed at 50
    assert t.expire(69.0) == []
    assert t.expire(70.0) == ["b"]
    assert t.get(a, 110.0) is None  # idle 60 s: gone for lookups before expire() runs
    assert t.expire(110.0) == ["a"]


def test_cap_refuses_new_only() -> None:
    t: ConversationTable[str] = ConversationTable(2, 60.0)
    a, _ = t.add("a", 0.0)
    t.add("b", 0.0)
    with pytest.raises(Overloaded):
        t.add("c", 0.0)
    assert t.get(a, 1.0) == "a"


def test_state_collision_retried() -> None:
    tokens = itertools.chain([b"x" * 16, b"x" * 16], iter(lambda: b"y" * 16, None))
    t: ConversationTable[str] = ConversationTable(10, 60.0, token=lambda n: next(tokens))
    assert t.add("a", 0.0)[0] == b"x" * 16
    assert t.add("b", 0.0)[0] == b"y" * 16


def test_a_flooding_client_cannot_lock_out_another() -> None:
    t: ConversationTable[str] = ConversationTable(4, 60.0)
    flood = [t.add(f"f{i}", float(i), "nas-a")[0] for i in range(4)]  # table full, all nas-a
    with pytest.raises(Overloaded):  # the largest client gets no more
        t.add("f4", 5.0, "nas-a")
    state, shed = t.add("victim", 6.0, "nas-b")  # the other NAS still gets in...
    assert [(s.value, s.client, s.why) for s in shed] == [("f0", "nas-a", "client_share")]
    assert t.get(flood[0], 6.0) is None and t.get(state, 6.0) == "victim"
    with pytest.raises(Overloaded):  # ...and the flood cannot push it out again
        t.add("f5", 7.0, "nas-a")
    assert t.get(state, 7.0) == "victim" and t.count_for("nas-a") == 3


def test_a_station_holds_a_few_conversations_at_most() -> None:
    t: ConversationTable[str] = ConversationTable(100, 60.0, max_per_station=2)
    t.add("s1", 0.0, "nas", "aa")
    t.add("s2", 1.0, "nas", "aa")
    _, shed = t.add("s3", 2.0, "nas", "aa")  # a restarted supplicant replaces its oldest
    assert [(s.value, s.why) for s in shed] == [("s1", "station_limit")]
    assert t.add("other", 3.0, "nas", "bb")[1] == [] and len(t) == 3


def test_a_client_holds_at_most_its_fixed_share() -> None:
    t: ConversationTable[str] = ConversationTable(100, 60.0, max_per_client=3)
    for i in range(3):
        t.add(f"a{i}", float(i), "nas-a", f"st{i}")
    assert t.refusal("nas-a") == "client_limit" and t.refusal("nas-b") is None
    with pytest.raises(Overloaded):  # room in the table, but not in nas-a's share
        t.add("a3", 3.0, "nas-a", "st3")
    t.add("b0", 4.0, "nas-b")
    t.remove(t.add("x", 5.0, "nas-c")[0])
    assert t.count_for("nas-a") == 3 and len(t) == 4
    with pytest.raises(ValueError):
        ConversationTable(100, 60.0, max_per_client=0)


def test_lifetime_ends_a_trickling_conversation() -> None:
    t: ConversationTable[str] = ConversationTable(10, 60.0, lifetime=90.0)
    state, _ = t.add("slow", 0.0, "nas", "aa")
    for now in (50.0, 89.0):  # active before every idle timeout
        assert t.get(state, now) == "slow"
    assert t.get(state, 90.0) is None
    assert [(s.value, s.why) for s in t.expire_lifetime(90.0)] == [("slow", "lifetime")]
    assert len(t) == 0 and t.count_for("nas") == 0


def test_duplicate_cache() -> None:
    c = DuplicateCache(30.0)
    key = ("127.0.0.1", 1000, 5, b"a" * 16)
    assert c.begin(key, 0.0) == (DupStatus.NEW, None)
    assert c.begin(key, 1.0) == (DupStatus.IN_PROGRESS, None)
    c.finish(key, b"reply", 1.0)
    assert c.begin(key, 2.0) == (DupStatus.DONE, b"reply")
    other_port = ("127.0.0.1", 1001, 5, b"a" * 16)
    assert c.begin(other_port, 2.0)[0] is DupStatus.NEW
    assert c.expire(32.5) == 2
    assert c.begin(key, 33.0)[0] is DupStatus.NEW


def test_duplicate_abandon_and_bound() -> None:
    c = DuplicateCache(30.0, max_entries=2)
    keys = [("h", 1, i, b"") for i in range(3)]
    for k in keys:
        c.begin(k, 0.0)
    assert len(c) == 2
    c.abandon(keys[2])
    assert c.begin(keys[2], 0.0)[0] is DupStatus.NEW
