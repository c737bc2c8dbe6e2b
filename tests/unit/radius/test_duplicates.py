"""The duplicate cache stays within its entry and byte bounds and one NAS flooding unique
requests cannot evict another NAS's cached replies."""

from __future__ import annotations

from radius.duplicates import DuplicateCache, DupStatus


def _key(host: str, i: int) -> tuple[str, int, int, bytes]:
    return (host, 1000 + i // 256, i % 256, i.to_bytes(16, "big"))


def test_flooding_nas_recycles_its_own_entries() -> None:
    c = DuplicateCache(30.0, max_entries=100)
    good = [_key("10.0.0.1", i) for i in range(5)]
    for k in good:
        assert c.begin(k, 0.0, "good")[0] is DupStatus.NEW
        c.finish(k, b"accept", 0.0)
    for i in range(10_000):
        k = _key("10.0.0.2", i)
        assert c.begin(k, 1.0, "flood")[0] is DupStatus.NEW
        c.finish(k, b"x" * 100, 1.0)
    assert len(c) == 100 and c.count_for("good") == 5 and c.count_for("flood") == 95
    for k in good:  # the good NAS's retransmissions still get their exact replies
        assert c.begin(k, 2.0, "good") == (DupStatus.DONE, b"accept")


def test_newcomer_below_its_share_takes_from_the_largest_holder() -> None:
    c = DuplicateCache(30.0, max_entries=10)
    for i in range(10):
        c.begin(_key("10.0.0.2", i), 0.0, "flood")
    assert c.begin(_key("10.0.0.1", 0), 1.0, "good")[0] is DupStatus.NEW
    assert c.count_for("good") == 1 and c.count_for("flood") == 9
    assert c.begin(_key("10.0.0.2", 0), 1.0, "flood")[0] is DupStatus.NEW  # its oldest went


def test_reply_bytes_are_bounded_fairly() -> None:
    c = DuplicateCache(30.0, max_entries=10_000, max_bytes=40_000)
    k = _key("10.0.0.1", 0)
    c.begin(k, 0.0, "good")
    c.finish(k, b"g" * 1000, 0.0)
    for i in range(1000):
        kf = _key("10.0.0.2", i)
        c.begin(kf, 0.0, "flood")
        c.finish(kf, b"f" * 4096, 0.0)
        assert c.bytes <= 40_000
    assert c.begin(k, 1.0, "good") == (DupStatus.DONE, b"g" * 1000)
    assert c.bytes == sum(len(r) for r in (b"g" * 1000,)) + 4096 * c.count_for("flood")


def test_expiry_and_abandon_release_bytes() -> None:
    c = DuplicateCache(30.0)
    for i in range(3):
        c.begin(_key("h", i), 0.0, "a")
        c.finish(_key("h", i), b"r" * 10, 0.0)
    c.abandon(_key("h", 0))
    assert c.bytes == 20 and c.count_for("a") == 2
    assert c.expire(31.0) == 2
    assert c.bytes == 0 and len(c) == 0 and c.count_for("a") == 0
    # an expired entry found by begin() is replaced, not double counted
    c.begin(_key("h", 5), 40.0, "a")
    c.finish(_key("h", 5), b"r" * 10, 40.0)
    assert c.begin(_key("h", 5), 71.0, "a")[0] is DupStatus.NEW
    assert c.bytes == 0 and len(c) == 1
