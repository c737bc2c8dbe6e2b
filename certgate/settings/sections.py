"""Parsers for the small sections: [server], [storage], [pki], [http], [admin],
[revocation] and [scep]. Each takes its table's reader and returns its dataclass."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from certgate.settings.model import (
    CA_KEY_TYPES,
    NODE_NAME,
    AdminSettings,
    HostPort,
    HttpSettings,
    PkiSettings,
    RevocationSettings,
    ScepSettings,
    ServerSettings,
    StorageSettings,
)
from certgate.settings.reader import TableReader, read_referenced_file, shown

MAX_WORKERS = 64


def _workers(srv: TableReader) -> int:
    """[server] workers: a count, or "auto" for one per CPU this process may run on."""
    value = srv.take("workers", (int, str), f'an integer between 1 and {MAX_WORKERS} or "auto"', 1)
    if value == "auto":
        return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))
    if isinstance(value, str) or not 1 <= value <= MAX_WORKERS:
        srv.error("workers", f'expected an integer between 1 and {MAX_WORKERS} or "auto", '
                  f"got {shown(value)}")
        return 1
    return value


def parse_server(srv: TableReader, base: Path) -> tuple[ServerSettings, str | None]:
    """[server], and the node_name it names (None: derived from host and port later)."""
    server = ServerSettings(
        data_dir=srv.path("data_dir", base, base / "var"),
        log_format=srv.choice("log_format", ("text", "json"), "text"),
        log_level=srv.choice("log_level", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
        workers=_workers(srv),
    )
    node_name = srv.str("node_name")
    if node_name is not None and not NODE_NAME.match(node_name):
        srv.error("node_name", "expected 1-64 characters of letters, digits, '.', '_', ':' or '-'")
        node_name = None
    srv.finish()
    return server, node_name


def parse_storage(st: TableReader, base: Path, data_dir: Path) -> StorageSettings:
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


def parse_pki(pk: TableReader, base: Path, data_dir: Path) -> PkiSettings:
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
    return pki


def parse_http(ht: TableReader) -> HttpSettings:
    http_listen = ht.host_port("listen", "127.0.0.1:8080") or HostPort("127.0.0.1", 8080)
    public_url = ht.str("public_url", f"http://{http_listen}")
    if public_url and not re.match(r"^https?://[^/\s]+(/\S*)?$", public_url):
        ht.error("public_url",
                 f'expected an http(s) URL like "http://pki.example.net", got {shown(public_url)}')
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
    return http


def parse_admin(ad: TableReader, base: Path) -> AdminSettings:
    tokens = list(ad.str_list("tokens", ()))
    token_file = ad.path("token_file", base, None)
    if token_file is not None:
        try:
            text = read_referenced_file(token_file).decode("utf-8")
            tokens += [t.strip() for t in text.splitlines() if t.strip()]
        except UnicodeDecodeError:
            ad.error("token_file", f"{token_file} is not UTF-8 text")
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
    return admin


def parse_revocation(rv: TableReader) -> RevocationSettings:
    revocation = RevocationSettings(
        crl_validity_hours=rv.int("crl_validity_hours", 24, 1, 24 * 365),
        full_crl_interval=rv.float("full_crl_interval", 5.0, 0.0, 3600.0),
        delta_crl_validity_minutes=rv.int("delta_crl_validity_minutes", 60, 2, 7 * 24 * 60),
        base_crl_interval_hours=rv.int("base_crl_interval_hours", 12, 1, 24 * 365),
        delta_crl_max_entries=rv.int("delta_crl_max_entries", 10000, 1, 10_000_000),
        persist_crl=rv.bool("persist_crl", True),
        ocsp_validity_minutes=rv.int("ocsp_validity_minutes", 60, 1, 7 * 24 * 60),
        ocsp_reuse_seconds=rv.int("ocsp_reuse_seconds", 60, 0, 3600),
        disconnect_on_revoke=rv.bool("disconnect_on_revoke", True),
    )
    rv.finish()
    return revocation


def parse_scep(sc: TableReader, base: Path) -> ScepSettings:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    keys: list[Path] = []
    for i, text in enumerate(sc.str_list("mdm_blob_keys", ())):
        if "\x00" in text:
            sc.error(f"mdm_blob_keys[{i}]", "a path must not contain a NUL character")
            continue
        path = Path(os.path.expanduser(text))
        path = path if path.is_absolute() else base / path
        name = f"mdm_blob_keys[{i}]"
        try:
            key = load_pem_public_key(read_referenced_file(path))
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
        max_concurrent=sc.int("max_concurrent", 4, 1, 4096),
        max_queued=sc.int("max_queued", 200, 0, 100_000),
        queue_timeout=sc.float("queue_timeout", 10.0, 0.1, 300.0),
    )
    sc.finish()
    return scep
