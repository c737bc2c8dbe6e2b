"""[radius] and its [[radius.clients]]: listeners, NAS secrets, TLS and the budgets."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from certgate.settings.model import TLS_VERSIONS, HostPort, RadiusClientSettings, RadiusSettings
from certgate.settings.reader import TableReader, shown

TRANSPORTS = ("udp", "radsec")
_CERT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,252}$")


def parse_radius(rd: TableReader) -> RadiusSettings:
    listen = rd.host_port("listen", "127.0.0.1:1812")
    acct = rd.host_port("acct_listen", None)
    clients = _parse_clients(rd)
    tls_min, tls_max = rd.tls_versions(TLS_VERSIONS)
    radius = RadiusSettings(
        listen=listen or HostPort("127.0.0.1", 1812),
        acct_listen=acct,
        clients=clients,
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
        dictionaries=_dictionary_paths(rd),
        coa_source=_coa_source(rd),
        coa_timeout=rd.float("coa_timeout", 1.0, 0.1, 30.0),
        coa_attempts=rd.int("coa_attempts", 3, 1, 10),
    )
    if radius.max_conversations_per_client > radius.max_conversations:
        rd.error("max_conversations_per_client", "must be at most max_conversations (0: no cap)")
    if radius.conversation_lifetime < radius.conversation_timeout:
        rd.error("conversation_lifetime", f"must be at least conversation_timeout "
                 f"({radius.conversation_timeout:g} s): it bounds the whole conversation")
    rd.finish()
    return radius


def _coa_source(rd: TableReader) -> str | None:
    text = rd.str("coa_source")
    if text is None:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        rd.error("coa_source", f"expected an IP address of this host (the address NASes know "
                 f"certgate by), got {shown(text)}")
        return None
    if ip.is_unspecified:
        rd.error("coa_source", "must be a specific address (a NAS's DAS checks the source), "
                 "not a wildcard; leave it out to send from the [radius] listen address")
        return None
    return str(ip)


def _dictionary_paths(rd: TableReader) -> tuple[Path, ...]:
    """[radius] dictionaries: FreeRADIUS-format files for [groups.X.reply] names, relative to
    the config file's directory; read (and checked) when the groups are parsed."""
    paths: list[Path] = []
    for i, text in enumerate(rd.str_list("dictionaries", ())):
        if "\x00" in text or not text.strip():
            rd.error(f"dictionaries[{i}]", "expected the path of a dictionary file")
            continue
        path = Path(os.path.expanduser(text))
        if not path.is_absolute() and rd.base is not None:
            path = rd.base / path
        if not path.is_file():
            rd.error(f"dictionaries[{i}]", f"{path} is not a file (a FreeRADIUS-format dictionary)")
            continue
        paths.append(path)
    return tuple(paths)


def _parse_clients(rd: TableReader) -> tuple[RadiusClientSettings, ...]:
    errors = rd.errors
    clients: list[RadiusClientSettings] = []
    for i, entry in enumerate(rd.take("clients", (list,), "an array of tables [[radius.clients]]", [])):
        prefix = f"radius.clients[{i}]"
        if not isinstance(entry, dict):
            errors.append(f"{prefix}: expected a table with name, address, secret")
            continue
        cr = rd.child(entry, prefix)
        name = cr.str("name", required=True)
        addr_text = cr.str("address", required=True)
        transports = cr.str_list("transports", ("udp", "radsec"), TRANSPORTS)
        if not transports:
            cr.error("transports", 'must name at least one of "udp", "radsec"')
            transports = ("udp", "radsec")
        radsec_only = "udp" not in transports
        # A RadSec-only client has no shared secret: RFC 6614 fixes it to "radsec".
        secret = cr.secret("secret", required=not radsec_only)
        if secret is None and radsec_only:
            secret = "radsec"
        network = None
        if addr_text:
            try:
                network = ipaddress.ip_network(addr_text, strict=False)
            except ValueError:
                cr.error("address",
                         f"expected an IP address or CIDR like 10.0.0.0/24, got {shown(addr_text)}")
        if secret is not None and len(secret) < 8 and not radsec_only:
            cr.error("secret", "must be at least 8 characters (use a long random string)")
        require_ma = cr.bool("require_message_authenticator", True)
        coa_port = cr.int("coa_port", None, 1, 65535)
        radsec_name = cr.str("radsec_name")
        if radsec_name is not None and not _CERT_NAME.match(radsec_name):
            cr.error("radsec_name", f"expected a DNS name or certificate CN like "
                     f'"wlc-1.example.net", got {shown(radsec_name)}')
            radsec_name = None
        cr.finish()
        if name and network is not None and secret:
            clients.append(RadiusClientSettings(name, network, secret, require_ma, coa_port,
                                                tuple(dict.fromkeys(transports)), radsec_name))
    names = [c.name for c in clients]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"radius.clients: name {shown(dup)} is used twice; names must be unique")
    return tuple(clients)
