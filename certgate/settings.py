"""TOML configuration -> frozen dataclasses.

Every problem is reported at once, each naming its key and what is expected;
unknown keys are errors (a typo must not silently fall back to a default).
Relative paths are resolved against the config file's directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from certgate.errors import ConfigError

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
    ocsp_validity_minutes: int = 60
    disconnect_on_revoke: bool = True


@dataclass(frozen=True)
class ScepSettings:
    mdm_blob_keys: tuple[Path, ...] = ()  # trusted MDM blob-signing public keys (P-256 PEM)
    max_pending_age_days: int = 7  # manual-approval requests left pending longer are rejected
    signing_time_skew_seconds: int = 3600  # |signingTime - now| above this -> badTime
    workers: int = 2  # SCEP crypto processes (capped at the CPU count); 0 = threads in-process


@dataclass(frozen=True)
class GroupSettings:
    name: str
    vlan: str | None = None
    filter_id: str | None = None
    class_value: str | None = None
    session_timeout: int | None = None
    validity_days: int = 365
    key_types: tuple[str, ...] = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")
    ca_key_type: str | None = None
    # SCEP
    challenge_modes: tuple[str, ...] = ("dynamic", "blob")
    static_secret: str | None = None
    legacy_algorithms: bool = False
    ca_is_ra: bool = False
    include_root: bool = False
    manual_approval: bool = False
    renewal_window_days: int = 30
    superseded_grace_hours: int = 24


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

    def group(self, name: str) -> GroupSettings | None:
        return next((g for g in self.groups if g.name == name), None)


class _Reader:
    """Pops typed values out of a TOML table, recording errors under dotted key names."""

    def __init__(self, table: dict[str, Any], prefix: str, errors: list[str]) -> None:
        self.table = dict(table)
        self.prefix = prefix
        self.errors = errors

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, message: str) -> None:
        self.errors.append(f"{self.key(name)}: {message}")

    def _take(self, name: str, kinds: tuple[type, ...], expected: str, default: Any) -> Any:
        if name not in self.table:
            return default
        value = self.table.pop(name)
        if isinstance(value, bool) and bool not in kinds:
            self.error(name, f"expected {expected}, got {value!r}")
            return default
        if not isinstance(value, kinds):
            self.error(name, f"expected {expected}, got {value!r}")
            return default
        return value

    def str(self, name: str, default: Any = None, required: bool = False) -> Any:
        if required and name not in self.table:
            self.error(name, "is required (a string)")
        value = self._take(name, (str,), "a string", default)
        if required and value == "":
            self.error(name, "must not be empty")
        return value

    def int(self, name: str, default: Any = None, lo: int = 0, hi: int = 2**31) -> Any:
        value = self._take(name, (int,), "an integer", default)
        if isinstance(value, int) and not lo <= value <= hi:
            self.error(name, f"expected an integer between {lo} and {hi}, got {value}")
            return default
        return value

    def float(self, name: str, default: float, lo: float, hi: float) -> float:
        value = self._take(name, (int, float), "a number", default)
        if not lo <= value <= hi:
            self.error(name, f"expected a number between {lo} and {hi}, got {value}")
            return default
        return float(value)

    def bool(self, name: str, default: bool) -> bool:
        return self._take(name, (bool,), "true or false", default)

    def choice(self, name: str, choices: tuple[str, ...], default: Any) -> Any:
        value = self.str(name, default)
        if value is not None and value not in choices:
            self.error(name, f"expected one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def str_list(self, name: str, default: tuple[str, ...], choices: tuple[str, ...] = ()) -> Any:
        value = self._take(name, (list,), "a list of strings", None)
        if value is None:
            return default
        if not all(isinstance(v, str) for v in value):
            self.error(name, f"expected a list of strings, got {value!r}")
            return default
        bad = [v for v in value if choices and v not in choices]
        if bad:
            self.error(name, f"unknown value(s) {bad}; expected any of {', '.join(choices)}")
            return default
        return tuple(value)

    def table_(self, name: str) -> dict[str, Any]:
        return self._take(name, (dict,), "a table", {})

    def path(self, name: str, base: Path, default: Path | None) -> Path | None:
        value = self.str(name, None)
        if value is None:
            return default
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (base / p)

    def host_port(self, name: str, default: str | None) -> HostPort | None:
        value = self.str(name, default)
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
            port_no = int(port)
            if not sep or not 0 <= port_no <= 65535:
                raise ValueError
        except ValueError:
            self.error(name, f'expected "IP:PORT" like "127.0.0.1:1812", got {value!r}')
            return None
        return HostPort(host, port_no)

    def secret(self, name: str, required: bool) -> str | None:
        """A secret given inline (`name`), from the environment (`name_env`) or a file."""
        inline = self.str(name)
        env = self.str(f"{name}_env")
        file = self.str(f"{name}_file")
        given = [v for v in (inline, env, file) if v is not None]
        if len(given) > 1:
            self.error(name, f"give only one of {name}, {name}_env, {name}_file")
            return None
        if env is not None:
            value = os.environ.get(env)
            if not value:
                self.error(f"{name}_env", f"environment variable {env} is not set or empty")
            return value
        if file is not None:
            try:
                return Path(file).read_text().strip()
            except OSError as exc:
                self.error(f"{name}_file", f"cannot read {file}: {exc.strerror}")
                return None
        if inline is None and required:
            self.error(name, f"is required (or {name}_env / {name}_file)")
        return inline

    def finish(self) -> None:
        for name in sorted(self.table):
            self.error(name, "unknown key (check the spelling; see config/certgate.example.toml)")


def load_settings(path: str | os.PathLike[str]) -> Settings:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}",
            ["pass an existing file with --config FILE or CERTGATE_CONFIG"],
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_settings(data, path.resolve())


def _storage(st: _Reader, base: Path, data_dir: Path) -> StorageSettings:
    explicit_path = "path" in st.table
    path = st.path("path", base, data_dir / "certgate.sqlite")
    url = st.secret("url", required=False)
    if url is not None:
        url = url.strip()
        problem = postgres_url_problem(url)
        if problem:
            st.error("url", f"{problem} (expected postgresql://USER@HOST:PORT/DATABASE; "
                            "the password in url_env/url_file, PGPASSWORD or ~/.pgpass)")
            url = None
        elif explicit_path:
            st.error("path", "give either path (SQLite) or url (PostgreSQL), not both")
    storage = StorageSettings(
        path=path, url=url,
        timeout=st.float("timeout", 5.0, 0.1, 120.0),
        pool_size=st.int("pool_size", 10, 1, 500),
        statement_cache=st.bool("statement_cache", True),
        outage_grace=st.float("outage_grace", 900.0, 0.0, 7 * 86400.0),
        outage_mode=st.choice("outage_mode", ("closed", "open"), "closed"),
    )
    st.finish()
    return storage


def postgres_url_problem(url: str) -> str | None:
    """Why `url` is not a usable PostgreSQL URL (never echoing its password), or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL (check the port)"
    if parts.scheme not in ("postgresql", "postgres"):
        return f"scheme must be postgresql://, got {parts.scheme + '://' if parts.scheme else 'none'}"
    if not parts.hostname and "host=" not in parts.query:
        return "names no host"
    if not parts.path.strip("/"):
        return "names no database (add /DATABASE)"
    if port is not None and not 0 < port < 65536:
        return "port out of range"
    return None


def parse_settings(data: dict[str, Any], path: Path) -> Settings:
    errors: list[str] = []
    base = path.parent
    top = _Reader(data, "", errors)

    srv = _Reader(top.table_("server"), "server", errors)
    data_dir = srv.path("data_dir", base, base / "var")
    server = ServerSettings(
        data_dir=data_dir,
        log_format=srv.choice("log_format", ("text", "json"), "text"),
        log_level=srv.choice("log_level", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
    )
    node_name = srv.str("node_name")
    if node_name is not None and not NODE_NAME.match(node_name):
        srv.error("node_name", "expected 1-64 characters of letters, digits, '.', '_', ':' or '-'")
        node_name = None
    srv.finish()

    storage = _storage(_Reader(top.table_("storage"), "storage", errors), base, data_dir)

    pk = _Reader(top.table_("pki"), "pki", errors)
    pki = PkiSettings(
        dir=pk.path("dir", base, data_dir / "pki"),
        key_type=pk.choice("key_type", CA_KEY_TYPES, "ec-p256"),
        organization=pk.str("organization", "certgate"),
        root_common_name=pk.str("root_common_name", "certgate Root CA"),
        root_validity_days=pk.int("root_validity_days", 7300, 1, 36500),
        intermediate_validity_days=pk.int("intermediate_validity_days", 3650, 1, 36500),
        server_name=pk.str("server_name", "radius.certgate.test"),
        server_validity_days=pk.int("server_validity_days", 825, 1, 3650),
        ra_key_type=pk.choice("ra_key_type", ("rsa-2048", "rsa-3072"), "rsa-2048"),
        passphrase_env=pk.str("passphrase_env"),
        passphrase_file=pk.path("passphrase_file", base, None),
    )
    if pki.passphrase_env and pki.passphrase_file:
        pk.error("passphrase_env", "give only one of passphrase_env and passphrase_file")
    pk.finish()

    rd = _Reader(top.table_("radius"), "radius", errors)
    listen = rd.host_port("listen", "127.0.0.1:1812")
    acct = rd.host_port("acct_listen", None)
    clients_raw = rd._take("clients", (list,), "an array of tables [[radius.clients]]", [])
    clients: list[RadiusClientSettings] = []
    for i, entry in enumerate(clients_raw):
        prefix = f"radius.clients[{i}]"
        if not isinstance(entry, dict):
            errors.append(f"{prefix}: expected a table with name, address, secret")
            continue
        cr = _Reader(entry, prefix, errors)
        name = cr.str("name", required=True)
        addr_text = cr.str("address", required=True)
        secret = cr.secret("secret", required=True)
        network = None
        if addr_text:
            try:
                network = ipaddress.ip_network(addr_text, strict=False)
            except ValueError:
                cr.error("address", f"expected an IP address or CIDR like 10.0.0.0/24, got {addr_text!r}")
        if secret is not None and len(secret) < 8:
            cr.error("secret", "must be at least 8 characters (use a long random string)")
        require_ma = cr.bool("require_message_authenticator", True)
        coa_port = cr.int("coa_port", None, 1, 65535)
        cr.finish()
        if name and network is not None and secret:
            clients.append(RadiusClientSettings(name, network, secret, require_ma, coa_port))
    names = [c.name for c in clients]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"radius.clients: name {dup!r} is used twice; names must be unique")
    tls_min = rd.choice("tls_min_version", TLS_VERSIONS, "1.2")
    tls_max = rd.choice("tls_max_version", TLS_VERSIONS, "1.3")
    if tls_min and tls_max and tls_min > tls_max:
        rd.error("tls_min_version", f"{tls_min} is above tls_max_version {tls_max}")
    radius = RadiusSettings(
        listen=listen or HostPort("127.0.0.1", 1812),
        acct_listen=acct,
        clients=tuple(clients),
        fragment_size=rd.int("fragment_size", 1024, 256, 4000),
        tls_min_version=tls_min,
        tls_max_version=tls_max,
        tls_groups=rd.str_list("tls_groups", ("X25519", "P-256")),
        resumption=rd.bool("resumption", False),
        conversation_timeout=rd.float("conversation_timeout", 60.0, 1.0, 3600.0),
        conversation_lifetime=rd.float("conversation_lifetime", 120.0, 1.0, 3600.0),
        max_conversations=rd.int("max_conversations", 10000, 1, 10_000_000),
        max_conversations_per_station=rd.int("max_conversations_per_station", 4, 1, 1000),
        max_conversations_per_client=rd.int("max_conversations_per_client", 0, 0, 10_000_000),
        max_buffered_bytes=rd.int("max_buffered_bytes", 192 * 1024 * 1024, 2 * 65536, 1 << 40),
        revocation_poll_interval=rd.float("revocation_poll_interval", 0.25, 0.05, 1.0),
        require_inventory=rd.bool("require_inventory", True),
    )
    if radius.max_conversations_per_client > radius.max_conversations:
        rd.error("max_conversations_per_client", "must be at most max_conversations (0: no cap)")
    if radius.conversation_lifetime < radius.conversation_timeout:
        rd.error("conversation_lifetime", f"must be at least conversation_timeout "
                 f"({radius.conversation_timeout:g} s): it bounds the whole conversation")
    rd.finish()

    ht = _Reader(top.table_("http"), "http", errors)
    http_listen = ht.host_port("listen", "127.0.0.1:8080") or HostPort("127.0.0.1", 8080)
    public_url = ht.str("public_url", f"http://{http_listen}")
    if public_url and not re.match(r"^https?://[^/\s]+(/\S*)?$", public_url):
        ht.error("public_url", f'expected an http(s) URL like "http://pki.example.net", got {public_url!r}')
    http = HttpSettings(
        listen=http_listen,
        public_url=(public_url or "").rstrip("/"),
        max_body_bytes=ht.int("max_body_bytes", 2 * 1024 * 1024, 1024, 64 * 1024 * 1024),
        metrics_token=ht.secret("metrics_token", required=False),
        max_connections=ht.int("max_connections", 1024, 16, 65536),
        max_connections_per_client=ht.int("max_connections_per_client", 256, 1, 65536),
        idle_timeout=ht.int("idle_timeout", 15, 1, 3600),
        request_timeout=ht.int("request_timeout", 30, 1, 3600),
    )
    if http.metrics_token is not None and (len(http.metrics_token) < 16
                                           or not http.metrics_token.isprintable()
                                           or " " in http.metrics_token):
        ht.error("metrics_token", "must be at least 16 printable characters without spaces "
                 "(e.g. `openssl rand -hex 24`)")
    ht.finish()

    ad = _Reader(top.table_("admin"), "admin", errors)
    tokens = list(ad.str_list("tokens", ()))
    token_file = ad.path("token_file", base, None)
    if token_file is not None:
        try:
            tokens += [t.strip() for t in token_file.read_text().splitlines() if t.strip()]
        except OSError as exc:
            ad.error("token_file", f"cannot read {token_file}: {exc.strerror}")
    for t in tokens:
        if len(t) < 16:
            ad.error("tokens", "each admin token must be at least 16 characters")
            break
    admin = AdminSettings(
        tokens=tuple(tokens),
        webhook_secret=ad.secret("webhook_secret", required=False),
        webhook_tolerance_seconds=ad.int("webhook_tolerance_seconds", 300, 1, 86400),
    )
    ad.finish()

    rv = _Reader(top.table_("revocation"), "revocation", errors)
    revocation = RevocationSettings(
        crl_validity_hours=rv.int("crl_validity_hours", 24, 1, 24 * 365),
        ocsp_validity_minutes=rv.int("ocsp_validity_minutes", 60, 1, 7 * 24 * 60),
        disconnect_on_revoke=rv.bool("disconnect_on_revoke", True),
    )
    rv.finish()

    scep = _parse_scep(_Reader(top.table_("scep"), "scep", errors), base)

    groups: list[GroupSettings] = []
    for gname, gtable in top.table_("groups").items():
        prefix = f"groups.{gname}"
        if not isinstance(gtable, dict):
            errors.append(f"{prefix}: expected a table [groups.{gname}]")
            continue
        if not GROUP_NAME.match(gname):
            errors.append(f"{prefix}: group names are 1-32 of a-z 0-9 _ - (used in URLs and labels)")
            continue
        gr = _Reader(gtable, prefix, errors)
        vlan = gr._take("vlan", (int, str), "a VLAN id (1-4094) or name", None)
        if isinstance(vlan, int) and not 1 <= vlan <= 4094:
            gr.error("vlan", f"expected a VLAN id between 1 and 4094, got {vlan}")
        modes = gr.str_list("challenge_modes", ("dynamic", "blob"), ("dynamic", "blob", "static"))
        static_secret = gr.secret("static_secret", required=False)
        if "static" in modes and not static_secret:
            gr.error("static_secret", 'required when challenge_modes includes "static"')
        if static_secret and "static" not in modes:
            gr.error("challenge_modes", 'add "static" to use static_secret (legacy, off by default)')
        groups.append(
            GroupSettings(
                name=gname,
                vlan=str(vlan) if vlan is not None else None,
                filter_id=gr.str("filter_id"),
                class_value=gr.str("class"),
                session_timeout=gr.int("session_timeout", None, 60, 31 * 86400),
                validity_days=gr.int("validity_days", 365, 1, 3650),
                key_types=gr.str_list("key_types", GroupSettings.key_types, KEY_TYPES),
                ca_key_type=gr.choice("ca_key_type", CA_KEY_TYPES, None),
                challenge_modes=modes,
                static_secret=static_secret,
                legacy_algorithms=gr.bool("legacy_algorithms", False),
                ca_is_ra=gr.bool("ca_is_ra", False),
                include_root=gr.bool("include_root", False),
                manual_approval=gr.bool("manual_approval", False),
                renewal_window_days=gr.int("renewal_window_days", 30, 0, 3650),
                superseded_grace_hours=gr.int("superseded_grace_hours", 24, 0, 24 * 365),
            )
        )
        gr.finish()
    if not groups:
        errors.append("groups: define at least one [groups.<name>] table (one intermediate CA each)")
    top.finish()

    if errors:
        raise ConfigError(f"{path}: {len(errors)} problem(s)", errors)
    if node_name is None:  # host:port tells two nodes on one host apart too
        node_name = f"{socket.gethostname()[:50]}:{radius.listen.port}"
    server = replace(server, node_name=node_name)
    return Settings(
        path=path,
        server=server,
        storage=storage,
        pki=pki,
        radius=radius,
        http=http,
        admin=admin,
        revocation=revocation,
        groups=tuple(groups),
        scep=scep,
    )


def _parse_scep(sc: _Reader, base: Path) -> ScepSettings:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    keys: list[Path] = []
    for i, text in enumerate(sc.str_list("mdm_blob_keys", ())):
        path = Path(os.path.expanduser(text))
        path = path if path.is_absolute() else base / path
        name = f"mdm_blob_keys[{i}]"
        try:
            key = load_pem_public_key(path.read_bytes())
        except OSError as exc:
            sc.error(name, f"cannot read {path}: {exc.strerror}")
            continue
        except ValueError:
            sc.error(name, f"{path} is not a PEM public key (-----BEGIN PUBLIC KEY-----)")
            continue
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            sc.error(name, f"{path} must be a P-256 (ES256) public key")
            continue
        keys.append(path)
    scep = ScepSettings(
        mdm_blob_keys=tuple(keys),
        max_pending_age_days=sc.int("max_pending_age_days", 7, 1, 365),
        signing_time_skew_seconds=sc.int("signing_time_skew_seconds", 3600, 1, 7 * 86400),
        workers=sc.int("workers", 2, 0, 64),
    )
    sc.finish()
    return scep
