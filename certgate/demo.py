"""`certgate demo`: a ready config (groups staff and guests), a generated PKI, then serve.

The config is written once, 0600, with freshly generated secrets (RADIUS shared secret,
admin token, webhook secret) stored in it; the RADIUS secret and the admin token are also
printed once. A second run uses the existing file as it is (listen addresses included).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import sys
from pathlib import Path

DEMO_CONFIG = """\
# certgate demo configuration, written by `certgate demo`. See config/certgate.example.toml.
[server]
data_dir = "var"

[radius]
listen = "{radius_listen}"
acct_listen = "{acct_listen}"

[[radius.clients]]
name = "loopback"
address = "127.0.0.0/8"
secret = "{secret}"
coa_port = 3799

[http]
listen = "{http_listen}"
public_url = "{public_url}"

[admin]
tokens = ["{token}"]
webhook_secret = "{webhook_secret}"

[groups.staff]
vlan = 10
class = "staff"
validity_days = 365

[groups.guests]
vlan = 20
class = "guests"
validity_days = 30
session_timeout = 28800
"""


DEFAULT_RADIUS = "127.0.0.1:1812"
DEFAULT_HTTP = "127.0.0.1:8080"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` with an IP address (``[::1]:1812`` for IPv6); ValueError says why."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"expected IP:PORT like 127.0.0.1:1812, got {text!r}") from None
    if not sep or not 1 <= number <= 65535:
        raise ValueError(f"the port must be 1-65535, got {text!r}")
    return host, number


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_demo(directory: Path, serve: bool = True, radius_listen: str = DEFAULT_RADIUS,
             http_listen: str = DEFAULT_HTTP, acct_listen: str | None = None) -> int:
    """`radius_listen` / `http_listen` go into a new config (accounting: `acct_listen`, by
    default the RADIUS port + 1 on the same address); an existing config is kept as it is."""
    from certgate.app import serve as serve_forever
    from certgate.bootstrap import init_pki
    from certgate.errors import ConfigError, OperatorError
    from certgate.settings import load_settings

    radius_host, radius_port = parse_listen(radius_listen)
    http_host, http_port = parse_listen(http_listen)
    if acct_listen is None:
        if radius_port == 65535:
            raise ConfigError("--radius-listen port 65535 leaves no port for accounting "
                              "(RADIUS port + 1): pick a lower one or give --acct-listen")
        acct_listen = _join(radius_host, radius_port + 1)
    parse_listen(acct_listen)
    # devices and MDMs fetch CRLs and SCEP at public_url: never the unspecified address
    public_host = "127.0.0.1" if ipaddress.ip_address(http_host).is_unspecified else http_host
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "certgate.toml"
    if not config.exists():
        secret = secrets.token_urlsafe(18)
        token = secrets.token_urlsafe(24)
        text = DEMO_CONFIG.format(secret=secret, token=token,
                                  webhook_secret=secrets.token_urlsafe(24),
                                  radius_listen=_join(radius_host, radius_port),
                                  acct_listen=acct_listen,
                                  http_listen=_join(http_host, http_port),
                                  public_url=f"http://{_join(public_host, http_port)}")
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        print(f"wrote {config}", file=sys.stderr)
        print(f"RADIUS shared secret for 127.0.0.0/8 (shown once): {secret}", file=sys.stderr)
        print(f"admin API bearer token (shown once): {token}", file=sys.stderr)
        print(f"(both are stored in {config}: [[radius.clients]] secret, [admin] tokens)",
              file=sys.stderr)
        if public_host != http_host:
            print(f"note: [http] public_url is {public_host}: set it to this host's address "
                  "for devices on the network", file=sys.stderr)
    else:
        print(f"using existing {config} (secrets are in it)", file=sys.stderr)
        given = [flag for flag, value, default in (
            ("--radius-listen", radius_listen, DEFAULT_RADIUS),
            ("--http-listen", http_listen, DEFAULT_HTTP)) if value != default]
        if given:
            print(f"{', '.join(given)} ignored: {config} exists; edit its [radius] / [http] "
                  "listen, or use another --dir", file=sys.stderr)
    settings = load_settings(config)
    report = asyncio.run(init_pki(settings, None))
    for item in report.created:
        print(f"created {item}", file=sys.stderr)
    print(f"root CA: {settings.pki.dir / 'root.crt'}", file=sys.stderr)
    print_first_device(config, directory / "clients", settings)
    if not serve:
        return 0
    try:
        return asyncio.run(serve_forever(settings))
    except OperatorError:
        raise


def print_first_device(config: Path, clients: Path, settings) -> None:  # noqa: ANN001
    """The commands from nothing to an eapol_test SUCCESS (README "First device")."""
    cg = f"certgate --config {config}"
    chain, key = clients / "laptop-01.chain.pem", clients / "laptop-01.key"
    profile = clients / "laptop-01.eapol.conf"
    host, port = settings.radius.listen.host, settings.radius.listen.port
    host = "127.0.0.1" if ipaddress.ip_address(host).is_unspecified else host
    steps = [] if chain.exists() else [
        f"{cg} certs issue --group staff --cn laptop-01 --out {clients}"]
    steps += [f"{cg} profile eapol_test --cert {chain} --key {key} --out {profile}",
              f"eapol_test -c {profile} -a {host} -p {port} -s \"$SECRET\"   "
              f"# SECRET: [[radius.clients]] secret in {config}; prints SUCCESS, MPPE keys OK"]
    print(f"first device (trust {settings.pki.dir / 'root.crt'}, pin server name "
          f"{settings.pki.server_name}):", file=sys.stderr)
    for step in steps:
        print(f"  {step}", file=sys.stderr)
