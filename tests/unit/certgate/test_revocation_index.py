from revocation.snapshot import RevocationIndex


def test_membership_and_incremental_counts() -> None:
    index = RevocationIndex([("staff", 1), ("staff", 2), ("guests", 3)])
    assert index.is_revoked("staff", 1) and not index.is_revoked("guests", 1)
    assert (index.count_for("staff"), index.count_for("guests"), len(index)) == (2, 1, 3)
    index.add("staff", 2)  # already there: no double count
    index.add("staff", 4)
    index.discard("staff", 1)
    index.discard("staff", 1)
    assert index.count_for("staff") == 2 and len(index) == 3
    index.replace([("iot", 9)], version=7)
    assert index.count_for("staff") == 0 and index.count_for("iot") == 1 and index.version == 7
