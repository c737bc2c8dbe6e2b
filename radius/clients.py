"""Source address -> configured RADIUS client (the UDP server's and RadSec's lookup)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from radius.options import RadiusClient

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ClientTable:
    """Source address -> RadiusClient; the most specific network wins."""

    def __init__(self, clients: Sequence[RadiusClient]) -> None:
        names = [c.name for c in clients]
        if len(set(names)) != len(names):
            raise ValueError("RADIUS client names must be unique")
        self._clients = sorted(clients, key=lambda c: c.network.prefixlen, reverse=True)
        self._cache: dict[str, RadiusClient | None] = {}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._clients)

    def __len__(self) -> int:
        return len(self._clients)

    def match(self, host: str) -> RadiusClient | None:
        if host in self._cache:
            return self._cache[host]
        try:
            addr: _IPAddress = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        found = next(
            (c for c in self._clients if c.network.version == addr.version and addr in c.network),
            None,
        )
        if found is not None and len(self._cache) < 4096:  # never cache misses (spoofing)
            self._cache[host] = found
        return found
