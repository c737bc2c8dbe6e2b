"""TOML configuration -> frozen dataclasses (certgate.settings.model).

Every problem is reported at once, each naming its key and what is expected;
unknown keys are errors (a typo must not silently fall back to a default).
Relative paths are resolved against the config file's directory. One parser per
section: sections.py (the small ones), radius.py, groups.py; reader.py does the
typed reads they share.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from certgate.errors import ConfigError
from certgate.settings.audit import AuditSettings, parse_audit
from certgate.settings.groups import parse_groups
from certgate.settings.mdm import IssuanceCheckSettings, MdmSettings, parse_mdm
from certgate.settings.model import (
    CA_KEY_TYPES,
    KEY_TYPES,
    TLS_VERSIONS,
    AdminSettings,
    GroupSettings,
    HostPort,
    HttpSettings,
    PkiSettings,
    RadiusClientSettings,
    RadiusSettings,
    RevocationSettings,
    ScepSettings,
    ServerSettings,
    Settings,
    StorageSettings,
)
from certgate.settings.radius import parse_radius
from certgate.settings.radsec import RadsecSettings, parse_radsec
from certgate.settings.reader import TableReader, one_line
from certgate.settings.reply import DictionaryLoader
from certgate.settings.sections import (
    parse_admin,
    parse_http,
    parse_pki,
    parse_revocation,
    parse_scep,
    parse_server,
    parse_storage,
    postgres_url_problem,
)
from certgate.settings.toml_errors import explain as explain_toml

__all__ = [
    "CA_KEY_TYPES", "KEY_TYPES", "TLS_VERSIONS", "AdminSettings", "AuditSettings", "ConfigError",
    "GroupSettings", "IssuanceCheckSettings", "MdmSettings",
    "HostPort", "RadsecSettings", "HttpSettings", "PkiSettings", "RadiusClientSettings", "RadiusSettings",
    "RevocationSettings", "ScepSettings", "ServerSettings", "Settings", "StorageSettings",
    "load_settings", "parse_settings", "postgres_url_problem",
]


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
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # which table, which lines, what to write
        raise ConfigError(f"{path}: not valid TOML: {one_line(explain_toml(text, str(exc)))}"
                          ) from None
    except ValueError as exc:  # UnicodeDecodeError, and tomllib's int() of a literal past
        # Python's 4300-digit limit, which is a bare ValueError
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_settings(data, path.resolve())


def parse_settings(data: dict[str, Any], path: Path) -> Settings:
    errors: list[str] = []
    warnings: list[str] = []
    base = path.parent
    top = TableReader(data, "", errors, base, warnings)

    def section(name: str) -> TableReader:
        return top.child(top.table_(name), name)

    server, node_name = parse_server(section("server"), base)
    storage = parse_storage(section("storage"), base, server.data_dir)
    pki = parse_pki(section("pki"), base, server.data_dir)
    radius = parse_radius(section("radius"))
    http = parse_http(section("http"))
    admin = parse_admin(section("admin"), base)
    revocation = parse_revocation(section("revocation"))
    scep = parse_scep(section("scep"), base)
    audit = parse_audit(section("audit"), base)
    dictionaries = DictionaryLoader(radius.dictionaries, errors)
    groups = parse_groups(top.child(top.table_("groups"), "groups"), dictionaries)
    if radius.dictionaries:
        dictionaries.get()  # the operator's files are checked even while no group uses them
    mdm = parse_mdm(section("mdm"), base, tuple(g.name for g in groups))
    for g in groups:  # the SCEP request must outlive its issuance check
        if g.issuance_check is not None and g.issuance_check.timeout >= http.request_timeout:
            errors.append(f"groups.{g.name}.issuance_webhook_timeout: must be shorter than "
                          f"[http] request_timeout ({http.request_timeout:g} s), else the "
                          "device gets HTTP 408 instead of a signed FAILURE")
    radsec = parse_radsec(section("radsec"), base)
    top.finish()
    if radsec is None:
        for i, c in enumerate(radius.clients):
            if "udp" not in c.transports:
                errors.append(f"radius.clients[{i}].transports: client {c.name!r} is RadSec "
                              "only, but there is no [radsec] listen; add a [radsec] table or "
                              'put "udp" in transports')

    if not any(c.coa_port for c in radius.clients):
        for g in groups:
            if g.quarantine_vlan is not None or g.quarantine_filter_id is not None or g.quarantine_reply:
                warnings.append(
                    f"groups.{g.name}: has a quarantine but no [[radius.clients]] sets coa_port, "
                    "so a hold moves only new authentications into it; live sessions stay "
                    "where they are until they re-authenticate (set coa_port on the NAS "
                    "clients that accept CoA/Disconnect)")
    if errors:
        raise ConfigError(f"{path}: {len(errors)} problem(s)", [one_line(e) for e in errors])
    if node_name is None:  # host:port tells two nodes on one host apart too
        node_name = f"{socket.gethostname()[:50]}:{radius.listen.port}"
    return Settings(
        path=path,
        server=replace(server, node_name=node_name),
        storage=storage,
        pki=pki,
        radius=radius,
        http=http,
        admin=admin,
        revocation=revocation,
        groups=groups,
        scep=scep,
        audit=audit,
        mdm=mdm,
        radsec=radsec,
        warnings=tuple(one_line(w) for w in warnings),
    )
