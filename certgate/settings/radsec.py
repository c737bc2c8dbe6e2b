"""[radsec]: RADIUS over TLS (RFC 6614), the listener and whom it trusts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from certgate.settings.model import TLS_VERSIONS, HostPort
from certgate.settings.reader import TableReader, read_referenced_file


@dataclass(frozen=True)
class RadsecSettings:
    listen: HostPort  # TCP, e.g. 0.0.0.0:2083 (the IANA RadSec port)
    client_ca: Path  # PEM bundle: the CA(s) whose certificates NASes and proxies present
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0  # no packet (Status-Server keep-alives count) for this long
    write_timeout: float = 10.0
    max_connections: int = 256
    max_connections_per_address: int = 16
    max_in_flight: int = 64
    tls_min_version: str = "1.2"
    tls_max_version: str = "1.3"


def client_ca_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable client_ca (a PEM bundle of CA certificates), or None."""
    from cryptography import x509

    try:
        data = read_referenced_file(path)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    for cert in certs:
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if not ca:
            return (f"{path}: {cert.subject.rfc4514_string()} is not a CA certificate "
                    "(give the CA that issued the NAS certificates, e.g. certgate's root.crt)")
    return None


def parse_radsec(rs: TableReader, base: Path) -> RadsecSettings | None:
    """None when the table is empty: RadSec off."""
    if not rs.table:
        return None
    if "listen" not in rs.table:
        rs.error("listen", 'is required to serve RadSec (e.g. "0.0.0.0:2083")')
    listen = rs.host_port("listen", None)
    ca = rs.path("client_ca", base, None)
    if ca is None:
        rs.error("client_ca", "is required: a PEM bundle of the CA(s) that issued the NAS "
                              "certificates (e.g. the pki dir's root.crt)")
    elif ca.exists():  # a missing file is a state problem (check-config, serve): certgate's
        # own root.crt, the usual client_ca, only exists after `certgate init`
        problem = client_ca_problem(ca)
        if problem:
            rs.error("client_ca", problem)
            ca = None
    tls_min, tls_max = rs.tls_versions(TLS_VERSIONS)
    settings = RadsecSettings(
        listen=listen or HostPort("0.0.0.0", 2083),
        client_ca=ca or Path("/nonexistent"),
        handshake_timeout=rs.float("handshake_timeout", 10.0, 0.5, 120.0),
        idle_timeout=rs.float("idle_timeout", 300.0, 1.0, 86400.0),
        write_timeout=rs.float("write_timeout", 10.0, 0.5, 600.0),
        max_connections=rs.int("max_connections", 256, 1, 65536),
        max_connections_per_address=rs.int("max_connections_per_address", 16, 1, 65536),
        max_in_flight=rs.int("max_in_flight", 64, 1, 256),
        tls_min_version=tls_min,
        tls_max_version=tls_max,
    )
    rs.finish()
    return settings
