"""Both store backends for the parametrized store tests: one `StoreSite` per test, which opens
as many `Store`s on the same database as a test wants (a second node, a CLI process)."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from pki import profiles
from pki.keys import generate_key
from store import Store, open_store
from store.records import CertRecord

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
BACKENDS = ("sqlite", "postgresql")


@dataclass
class StoreSite:
    backend: str
    path: Path | None = None
    url: str | None = None
    opened: list[Store] = field(default_factory=list)

    async def open(self, migrate: bool = True) -> Store:
        store = await open_store(path=self.path, url=self.url, timeout=5.0, migrate=migrate)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            with contextlib.suppress(Exception):  # already closed by the test
                await store.close()


def make_ca():
    key = generate_key("ec-p256")
    cert = profiles.root_certificate(key, "Test CA", "t", NOW, 365)
    return cert, key


def make_record(ca, serial: int | None = None, cn: str = "dev", group: str = "staff",
                device_id: str | None = None, days: int = 30) -> CertRecord:
    cert_, key = ca
    leaf = profiles.device_certificate(
        ec.generate_private_key(ec.SECP256R1()).public_key(), profiles.name(cn), [], group,
        "http://x", cert_, key, serial or profiles.new_serial(), NOW, days,
    )
    return CertRecord.from_certificate(leaf, group, device_id=device_id, issued_at=NOW)
