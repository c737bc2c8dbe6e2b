"""Everything the running process shares, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from certgate.settings import Settings
from pki.groups import GroupTable
from pki.hierarchy import LoadedPki
from revocation.issued import IssuedIndex
from revocation.snapshot import RevocationIndex
from store import Store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    pki: LoadedPki
    groups: GroupTable
    revoked: RevocationIndex
    issued: IssuedIndex = field(default_factory=IssuedIndex)
    ready: bool = False
    services: dict[str, Any] = field(default_factory=dict)

    @property
    def node_name(self) -> str:
        return self.settings.server.node_name
