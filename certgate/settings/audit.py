"""[audit]: where the audit stream goes (docs/audit-events.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from certgate.settings.reader import TableReader, shown

#: RFC 5424 facility names (syslog(3) spelling), for syslog_facility.
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
              "cron", "authpriv", "ftp", "local0", "local1", "local2", "local3", "local4",
              "local5", "local6", "local7")
SYSLOG_SCHEMES = ("udp", "tcp", "tls")
_HOST = re.compile(r"^[A-Za-z0-9._-]{1,253}$|^[0-9a-fA-F:.]+$")


@dataclass(frozen=True)
class AuditSettings:
    file: Path | None = None  # JSON lines, reopened on SIGHUP
    syslog: str | None = None  # udp://host:514, tcp://host:port or tls://host:port
    syslog_ca: Path | None = None  # CA bundle verifying a tls:// server (default: system CAs)
    syslog_facility: str = "authpriv"
    syslog_sd_id: str = "certgate@32473"  # NAME@PEN of the structured data (your PEN)
    queue_size: int = 10000  # events held per sink while it is slow; beyond: dropped, counted
    store_authentications: bool = False  # also persist RADIUS results in the store's audit table

    @property
    def enabled(self) -> bool:
        return self.file is not None or self.syslog is not None


def syslog_url_problem(url: str) -> str | None:
    """Why `url` is not udp://HOST[:PORT], tcp://HOST:PORT or tls://HOST:PORT, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "has a port that is not a number between 0 and 65535"
    if parts.scheme not in SYSLOG_SCHEMES:
        got = parts.scheme + "://" if parts.scheme else "none"
        return f"scheme must be udp://, tcp:// or tls://, got {got}"
    if not parts.hostname or not _HOST.match(parts.hostname):
        return "names no host"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return "must be just SCHEME://HOST:PORT (no path, query or user)"
    if port is None and parts.scheme != "udp":
        return f"{parts.scheme}:// needs a port (e.g. {parts.scheme}://{parts.hostname}:" \
               f"{6514 if parts.scheme == 'tls' else 514})"
    if port is not None and not 0 < port < 65536:
        return "port out of range (1-65535)"
    return None


def _sd_id(au: TableReader) -> str:
    from certgate.audit.rfc5424 import DEFAULT_SD_ID, FormatError, check_sd_id

    value = au.str("syslog_sd_id")
    if value is None:
        return DEFAULT_SD_ID
    try:
        return check_sd_id(value)
    except FormatError:
        au.error("syslog_sd_id", f"{shown(value)} is not NAME@PEN (your organisation's IANA "
                                 "Private Enterprise Number, e.g. \"certgate@32473\"), at most "
                                 "32 printable ASCII characters without = ] \" or space")
        return DEFAULT_SD_ID


def parse_audit(au: TableReader, base: Path) -> AuditSettings:
    syslog = au.str("syslog")
    if syslog is not None:
        problem = syslog_url_problem(syslog.strip())
        if problem:
            au.error("syslog", f"{shown(syslog)} {problem} (expected \"udp://HOST:514\", "
                               "\"tcp://HOST:PORT\" or \"tls://HOST:PORT\")")
            syslog = None
        else:
            syslog = syslog.strip()
    ca = au.path("syslog_ca", base, None)
    if ca is not None:
        if syslog is not None and not syslog.startswith("tls://"):
            au.error("syslog_ca", "only applies to a tls:// syslog URL; remove it or use tls://")
        elif not ca.is_file():
            au.error("syslog_ca", f"{ca} is not a readable file (a PEM CA bundle)")
    audit = AuditSettings(
        file=au.path("file", base, None),
        syslog=syslog,
        syslog_ca=ca,
        syslog_facility=au.choice("syslog_facility", FACILITIES, "authpriv"),
        syslog_sd_id=_sd_id(au),
        queue_size=au.int("queue_size", 10000, 100, 1_000_000),
        store_authentications=au.bool("store_authentications", False),
    )
    if audit.file is not None and audit.file.is_dir():
        au.error("file", f"{audit.file} is a directory; name a file, e.g. "
                         "/var/log/certgate/audit.json")
    au.finish()
    return audit
