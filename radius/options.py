"""Configuration values for the RADIUS/EAP-TLS side, filled by the composition root.

Frozen dataclasses only: no file or environment access here (the TOML loader lives in
``certgate/``). Values are validated on construction so a bad config fails at start-up,
not on the first packet.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TLS_VERSIONS = ("1.2", "1.3")
TRANSPORTS = ("udp", "radsec")

# Largest EAP-TLS fragment we send. A fragment plus the EAP/EAP-TLS headers (10 bytes)
# is split into 253-byte EAP-Message attributes (2 bytes overhead each); together with
# Message-Authenticator, State and the NAS's Proxy-State it must fit in 4096 bytes.
MAX_FRAGMENT_SIZE = 3000
MIN_FRAGMENT_SIZE = 64


@dataclass(frozen=True)
class RadiusClient:
    """One NAS (or a network of NASes sharing a secret).

    ``name`` is the ``client`` metric label. Requests are matched to a client by source
    address; the most specific ``network`` wins.
    """

    name: str
    network: IPNetwork
    secret: bytes
    # Blast-RADIUS (CVE-2024-3596): Access-Request without a valid Message-Authenticator
    # is dropped. Turning this off is only for a broken legacy NAS and is logged loudly.
    require_message_authenticator: bool = True
    coa_port: int | None = None
    # RadSec (RFC 6614): over which transports this client is served ("udp", "radsec" or
    # both), and the name its TLS certificate must carry (a DNS SAN or the CN), if pinned.
    transports: tuple[str, ...] = ("udp", "radsec")
    radsec_name: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("RADIUS client name must not be empty")
        if not isinstance(self.network, ipaddress.IPv4Network | ipaddress.IPv6Network):
            raise TypeError("network must be an ipaddress.IPv4Network or IPv6Network")
        if not isinstance(self.secret, bytes):
            raise TypeError("secret must be bytes")
        if not self.secret:
            raise ValueError(f"RADIUS client {self.name!r}: empty secret")
        if not self.transports or any(t not in TRANSPORTS for t in self.transports):
            raise ValueError(f"RADIUS client {self.name!r}: transports must be among {TRANSPORTS}")
        if self.coa_port is not None and not 0 < self.coa_port < 65536:
            raise ValueError(f"RADIUS client {self.name!r}: bad coa_port {self.coa_port}")


@dataclass(frozen=True)
class EapOptions:
    """EAP / EAP-TLS behaviour.

    ``tls_groups`` defaults to classic ECDHE groups only. OpenSSL 4 offers the hybrid
    post-quantum group X25519MLKEM768 first: its key share makes the TLS 1.3 ClientHello
    ~1.45 KB and the server flight ~2.5 KB (measured), which costs extra EAP round trips
    (each 1-KB fragment is a full RADIUS round trip through the NAS) and is not yet
    supported by many supplicants' TLS stacks. Add "X25519MLKEM768" deliberately once the
    supplicant fleet is tested with it.
    """

    fragment_size: int = 1024
    conversation_timeout: float = 60.0  # idle: since the last request
    conversation_lifetime: float = 120.0  # total, however active
    max_conversations: int = 10000
    max_conversations_per_station: int = 4
    max_conversations_per_client: int = 0  # 0: no fixed cap, only the max-min share
    # Bytes half-done conversations may hold (radius.buffers): TLS reassembly and
    # connections. 192 MiB keeps a 10,000-conversation flood under ~300 MB above idle.
    max_buffered_bytes: int = 192 * 1024 * 1024
    max_round_trips: int = 50
    tls_min_version: str = "1.2"
    tls_max_version: str = "1.3"
    tls_groups: tuple[str, ...] = ("X25519", "P-256")
    # Off by default: a resumed handshake carries no certificate chain, so only our own
    # re-check (radius.authorize on the cached leaf) protects against revoked devices.
    resumption: bool = False
    duplicate_cache_ttl: float = 30.0

    def __post_init__(self) -> None:
        if not MIN_FRAGMENT_SIZE <= self.fragment_size <= MAX_FRAGMENT_SIZE:
            raise ValueError(
                f"fragment_size must be {MIN_FRAGMENT_SIZE}..{MAX_FRAGMENT_SIZE}, got {self.fragment_size}"
            )
        if self.conversation_timeout <= 0:
            raise ValueError("conversation_timeout must be positive")
        if self.max_conversations < 1:
            raise ValueError("max_conversations must be >= 1")
        if self.conversation_lifetime < self.conversation_timeout:
            raise ValueError("conversation_lifetime must be >= conversation_timeout")
        if self.max_conversations_per_station < 1:
            raise ValueError("max_conversations_per_station must be >= 1")
        if not 0 <= self.max_conversations_per_client <= self.max_conversations:
            raise ValueError("max_conversations_per_client must be 0..max_conversations")
        if self.max_buffered_bytes < 2 * 65536:
            raise ValueError("max_buffered_bytes must be >= 131072 (two 64 KiB TLS messages)")
        if self.max_round_trips < 2:
            raise ValueError("max_round_trips must be >= 2")
        for v in (self.tls_min_version, self.tls_max_version):
            if v not in TLS_VERSIONS:
                raise ValueError(f"TLS version must be one of {TLS_VERSIONS}, got {v!r}")
        if TLS_VERSIONS.index(self.tls_min_version) > TLS_VERSIONS.index(self.tls_max_version):
            raise ValueError("tls_min_version is above tls_max_version")
        if not self.tls_groups or any(not g or ":" in g for g in self.tls_groups):
            raise ValueError("tls_groups must be a non-empty tuple of group names")
        if self.duplicate_cache_ttl <= 0:
            raise ValueError("duplicate_cache_ttl must be positive")
