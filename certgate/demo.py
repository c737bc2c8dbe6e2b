"""`certgate demo`: a ready config (groups staff and guests), a generated PKI, then serve."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path

DEMO_CONFIG = """\
# certgate demo configuration, written by `certgate demo`. See config/certgate.example.toml.
[server]
data_dir = "var"

[radius]
listen = "127.0.0.1:{radius_port}"
acct_listen = "127.0.0.1:{acct_port}"

[[radius.clients]]
name = "loopback"
address = "127.0.0.0/8"
secret = "{secret}"
coa_port = 3799

[http]
listen = "127.0.0.1:{http_port}"
public_url = "http://127.0.0.1:{http_port}"

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


def run_demo(directory: Path, serve: bool = True, radius_port: int = 1812,
             acct_port: int = 1813, http_port: int = 8080) -> int:
    from certgate.app import serve as serve_forever
    from certgate.bootstrap import init_pki
    from certgate.errors import OperatorError
    from certgate.settings import load_settings

    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "certgate.toml"
    if not config.exists():
        secret = secrets.token_urlsafe(18)
        token = secrets.token_urlsafe(24)
        text = DEMO_CONFIG.format(secret=secret, token=token,
                                  webhook_secret=secrets.token_urlsafe(24),
                                  radius_port=radius_port, acct_port=acct_port,
                                  http_port=http_port)
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        print(f"wrote {config}", file=sys.stderr)
        print(f"RADIUS shared secret for 127.0.0.0/8 (shown once): {secret}", file=sys.stderr)
        print(f"admin API bearer token (shown once): {token}", file=sys.stderr)
    else:
        print(f"using existing {config} (secrets are in it)", file=sys.stderr)
    settings = load_settings(config)
    report = asyncio.run(init_pki(settings, None))
    for item in report.created:
        print(f"created {item}", file=sys.stderr)
    print(f"root CA: {settings.pki.dir / 'root.crt'}", file=sys.stderr)
    print(f"try: certgate --config {config} certs issue --group staff --cn laptop-01 "
          f"--out {directory / 'clients'}", file=sys.stderr)
    if not serve:
        return 0
    try:
        return asyncio.run(serve_forever(settings))
    except OperatorError:
        raise
