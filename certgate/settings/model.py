"""The configuration as frozen dataclasses: what every other module reads.

Defaults live here, next to the field they belong to; the parsers in this package
check ranges and cross-field rules and build these.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from enrollment.algorithms import DEFAULT_CIPHERS, DEFAULT_DIGESTS
from pki.groups import ExtraAttribute

if TYPE_CHECKING:
    from certgate.settings.audit import AuditSettings
    from certgate.settings.mdm import IssuanceCheckSettings, MdmSettings
    from certgate.settings.radsec import RadsecSettings

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")
CA_KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072")
TLS_VERSIONS = ("1.2", "1.3")
GROUP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
NODE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    log_format: str = "text"
    log_level: str = "INFO"
    node_name: str = "certgate"  # names this node in sessions, metrics and logs (default host:port)
    workers: int = 1  # processes serving RADIUS and HTTP (certgate/workers.py)


@dataclass(frozen=True)
class StorageSettings:
    """[storage]: SQLite `path` (one box, the default) or a PostgreSQL `url` several nodes share."""

    path: Path
    url: str | None = None  # postgresql://user@host:port/db; never logged with its password
    timeout: float = 5.0  # seconds per statement and per connection attempt
    pool_size: int = 10
    statement_cache: bool = True  # false behind PgBouncer in transaction mode
    outage_grace: float = 900.0  # seconds of store outage before RADIUS fails closed
    outage_mode: str = "closed"  # past the grace: "closed" rejects everything, "open" keeps
    # accepting certificates this node has already seen

    @property
    def backend(self) -> str:
        return "postgresql" if self.url else "sqlite"


@dataclass(frozen=True)
class PkiSettings:
    dir: Path
    key_type: str = "ec-p256"
    organization: str = "certgate"
    root_common_name: str = "certgate Root CA"
    root_validity_days: int = 7300
    intermediate_validity_days: int = 3650
    server_name: str = "radius.certgate.test"
    server_validity_days: int = 825
    ra_key_type: str = "rsa-2048"
    passphrase_env: str | None = None
    passphrase_file: Path | None = None


@dataclass(frozen=True)
class RadiusClientSettings:
    name: str
    address: ipaddress.IPv4Network | ipaddress.IPv6Network
    secret: str
    require_message_authenticator: bool = True
    coa_port: int | None = None
    transports: tuple[str, ...] = ("udp", "radsec")  # which listeners serve this client
    radsec_name: str | None = None  # the name its RadSec certificate must carry


@dataclass(frozen=True)
class RadiusSettings:
    listen: HostPort
    acct_listen: HostPort | None
    clients: tuple[RadiusClientSettings, ...]
    fragment_size: int = 1024
    tls_min_version: str = "1.2"
    tls_max_version: str = "1.3"
    tls_groups: tuple[str, ...] = ("X25519", "P-256")
    resumption: bool = False
    conversation_timeout: float = 60.0
    conversation_lifetime: float = 120.0
    max_conversations: int = 10000
    max_conversations_per_station: int = 4
    max_conversations_per_client: int = 0
    max_buffered_bytes: int = 192 * 1024 * 1024
    revocation_poll_interval: float = 0.25
    require_inventory: bool = True
    dictionaries: tuple[Path, ...] = ()  # extra FreeRADIUS-format dictionaries for [reply] names
    # Dynamic Authorization (RFC 5176) requests to NASes: sent from this address (None: the
    # host of `listen`, or the kernel's choice when that is a wildcard); the first wait and
    # the number of transmissions (the wait doubles after each)
    coa_source: str | None = None
    coa_timeout: float = 1.0
    coa_attempts: int = 3

    @property
    def coa_source_address(self) -> str | None:
        """The local address Disconnect/CoA requests leave from."""
        if self.coa_source is not None:
            return self.coa_source
        host = self.listen.host
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None  # a name: let the kernel pick
        return None if ip.is_unspecified else str(ip)


@dataclass(frozen=True)
class HttpSettings:
    listen: HostPort
    public_url: str
    max_body_bytes: int = 2 * 1024 * 1024
    metrics_token: str | None = None  # when set, /metrics wants "Authorization: Bearer <it>"
    max_connections: int = 1024
    max_connections_per_client: int = 256
    idle_timeout: float = 15.0  # no complete request headers for this long: closed
    request_timeout: float = 30.0  # body read + answer


@dataclass(frozen=True)
class AdminSettings:
    tokens: tuple[str, ...] = ()
    webhook_secret: str | None = None
    webhook_tolerance_seconds: int = 300


@dataclass(frozen=True)
class RevocationSettings:
    crl_validity_hours: int = 24
    full_crl_interval: float = 5.0  # s: the complete CRL is re-signed at most this often
    delta_crl_validity_minutes: int = 60  # nextUpdate of delta CRLs
    base_crl_interval_hours: int = 12  # a new base CRL at least this often (<= validity / 2)
    delta_crl_max_entries: int = 10000  # a new base once the delta lists more
    persist_crl: bool = True  # keep the base CRL on disk (<pki dir>/crl) and reuse it at start
    ocsp_validity_minutes: int = 60
    ocsp_reuse_seconds: int = 60  # a no-nonce response re-served while unchanged; 0 = never
    disconnect_on_revoke: bool = True


@dataclass(frozen=True)
class ScepSettings:
    mdm_blob_keys: tuple[Path, ...] = ()  # trusted MDM blob-signing public keys (P-256 PEM)
    max_pending_age_days: int = 7  # manual-approval requests left pending longer are rejected
    signing_time_skew_seconds: int = 3600  # |signingTime - now| above this -> badTime
    workers: int = 2  # SCEP crypto processes (capped at the CPU share); 0 = threads in-process
    # enrollment storms (enrollment/admission.py): per group, PKIOperations in progress at
    # once, how many more may wait, and for how long before a 503 + Retry-After
    max_concurrent: int = 4
    max_queued: int = 200
    queue_timeout: float = 10.0


@dataclass(frozen=True)
class GroupSettings:
    name: str
    vlan: str | None = None
    filter_id: str | None = None
    class_value: str | None = None
    session_timeout: int | None = None
    reply: tuple[ExtraAttribute, ...] = ()  # [groups.X.reply], encoded at load
    quarantine_reply: tuple[ExtraAttribute, ...] = ()  # [groups.X.quarantine_reply]
    quarantine_vlan: str | None = None  # where a held / non-compliant device is admitted
    quarantine_filter_id: str | None = None
    validity_days: int = 365
    key_types: tuple[str, ...] = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")
    ca_key_type: str | None = None
    # SCEP
    challenge_modes: tuple[str, ...] = ("dynamic", "blob")
    static_secret: str | None = None
    # [groups.<name>.scep]: enrollment.algorithms names (legacy_algorithms = true, deprecated,
    # is read into these)
    scep_ciphers: tuple[str, ...] = DEFAULT_CIPHERS
    scep_digests: tuple[str, ...] = DEFAULT_DIGESTS
    scep_max_concurrent: int | None = None  # None: [scep] max_concurrent
    ca_is_ra: bool = False
    include_root: bool = True  # root in GetCACert (the parser's default: not ca_is_ra)
    manual_approval: bool = False
    renewal_window_days: int = 30
    superseded_grace_hours: int = 24
    # MDM (certgate/settings/mdm.py)
    device_id_from: str = "challenge"  # enrollment.issuance_check.parse_device_id_source
    issuance_check: IssuanceCheckSettings | None = None


@dataclass(frozen=True)
class Settings:
    path: Path
    server: ServerSettings
    storage: StorageSettings
    pki: PkiSettings
    radius: RadiusSettings
    http: HttpSettings
    admin: AdminSettings
    revocation: RevocationSettings = field(default_factory=RevocationSettings)
    groups: tuple[GroupSettings, ...] = field(default_factory=tuple)
    scep: ScepSettings = field(default_factory=ScepSettings)
    audit: AuditSettings = field(default_factory=lambda: _audit_defaults())
    mdm: MdmSettings = field(default_factory=lambda: _mdm_defaults())
    radsec: RadsecSettings | None = None  # [radsec]: RADIUS over TLS, off when absent
    warnings: tuple[str, ...] = ()  # risky or deprecated settings that still work, one line each

    def group(self, name: str) -> GroupSettings | None:
        return next((g for g in self.groups if g.name == name), None)


def _mdm_defaults():  # noqa: ANN202 - certgate.settings.mdm imports reader, not model
    from certgate.settings.mdm import MdmSettings

    return MdmSettings()


def _audit_defaults():  # noqa: ANN202 - certgate.settings.audit imports reader, not model
    from certgate.settings.audit import AuditSettings

    return AuditSettings()
