"""The inventory allow-list RADIUS consults: device certificates certgate issued."""

from __future__ import annotations

from pathlib import Path

from revocation.issued import IssuedIndex
from revocation.store import Store
from tests.unit.certgate.test_store import NOW, ca, make_record  # noqa: F401 - fixture


async def test_issued_device_certificates_only(tmp_path: Path, ca) -> None:  # noqa: F811
    path = tmp_path / "s.sqlite"
    store = await Store.open(path)
    device = make_record(ca)
    await store.record_certificate(device, "test")
    index = IssuedIndex(path)
    assert index.is_issued("staff", device.serial)
    assert not index.is_issued("guests", device.serial)  # right serial, wrong group
    assert not index.is_issued("staff", device.serial + 1)
    assert len(index) == 1  # positive answers are cached, misses are not
    later = make_record(ca)  # issued after the index was built (another process, say)
    await store.record_certificate(later, "test")
    assert index.is_issued("staff", later.serial)
    await store.revoke(device.serial, "keyCompromise", "t", NOW)
    assert index.is_issued("staff", device.serial)  # revocation is checked on its own
    index.close()
    await store.close()
