"""[radsec] and the RadSec keys of [[radius.clients]]: parsed, and every problem names its key."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certgate.errors import ConfigError
from certgate.settings import parse_settings

CLIENTS = """
[[radius.clients]]
name = "wlc"
address = "10.0.0.0/24"
secret = "0123456789"
[groups.staff]
"""


def _cert(ca: bool) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def parse(text: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    return parse_settings(tomllib.loads(text), tmp_path / "c.toml")


def test_radsec_is_off_without_the_table(tmp_path: Path) -> None:
    s = parse(CLIENTS, tmp_path)
    assert s.radsec is None
    assert s.radius.clients[0].transports == ("udp", "radsec")


def test_radsec_table_and_a_radsec_only_pinned_client(tmp_path: Path) -> None:
    (tmp_path / "nas-ca.pem").write_bytes(_cert(ca=True))
    s = parse(CLIENTS + """
[[radius.clients]]
name = "cloud"
address = "0.0.0.0/0"
transports = ["radsec"]
radsec_name = "wlc-1.example.net"

[radsec]
listen = "0.0.0.0:2083"
client_ca = "nas-ca.pem"
idle_timeout = 120
max_in_flight = 32
tls_min_version = "1.3"
""", tmp_path)
    assert s.radsec is not None
    assert (s.radsec.listen.host, s.radsec.listen.port) == ("0.0.0.0", 2083)
    assert s.radsec.client_ca == tmp_path / "nas-ca.pem"
    assert s.radsec.idle_timeout == 120 and s.radsec.max_in_flight == 32
    assert s.radsec.tls_min_version == "1.3"
    cloud = s.radius.clients[1]
    assert cloud.transports == ("radsec",) and cloud.radsec_name == "wlc-1.example.net"
    assert cloud.secret == "radsec"  # RFC 6614: no shared secret of its own


@pytest.mark.parametrize(("snippet", "expected"), [
    ('[radsec]\nlisten = "0.0.0.0"\nclient_ca = "ca.pem"\n', 'radsec.listen: expected "IP:PORT"'),
    ('[radsec]\nclient_ca = "ca.pem"\n', "radsec.listen: is required"),
    ('[radsec]\nlisten = "0.0.0.0:2083"\n', "radsec.client_ca: is required"),
    ('[radsec]\nlisten = "0.0.0.0:2083"\nclient_ca = "junk.pem"\n',
     "radsec.client_ca: "),
    ('[radsec]\nlisten = "0.0.0.0:2083"\nclient_ca = "leaf.pem"\n',
     "radsec.client_ca: "),
    ('[radsec]\nlisten = "0.0.0.0:2083"\nclient_ca = "ca.pem"\nmax_in_flight = 1000\n',
     "radsec.max_in_flight: expected an integer between 1 and 256"),
    ('[radsec]\nlisten = "0.0.0.0:2083"\nclient_ca = "ca.pem"\ntls_min_version = "1.1"\n',
     "radsec.tls_min_version: expected one of 1.2, 1.3"),
    ('[radsec]\nlisten = "0.0.0.0:2083"\nclient_ca = "ca.pem"\nbogus = 1\n',
     "radsec.bogus: unknown key"),
    ('[[radius.clients]]\nname = "x"\naddress = "10.1.0.0/16"\ntransports = ["tls"]\n'
     'secret = "0123456789"\n', "radius.clients[1].transports: unknown value(s)"),
    ('[[radius.clients]]\nname = "x"\naddress = "10.1.0.0/16"\ntransports = ["radsec"]\n',
     "radius.clients[1].transports: client 'x' is RadSec only, but there is no [radsec]"),
    ('[[radius.clients]]\nname = "x"\naddress = "10.1.0.0/16"\nradsec_name = "a b/c"\n'
     'secret = "0123456789"\n', "radius.clients[1].radsec_name: expected a DNS name"),
])
def test_errors_name_the_key(tmp_path: Path, snippet: str, expected: str) -> None:
    (tmp_path / "ca.pem").write_bytes(_cert(ca=True))
    (tmp_path / "leaf.pem").write_bytes(_cert(ca=False))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError) as err:
        parse(CLIENTS + snippet, tmp_path)
    assert any(d.startswith(expected) for d in err.value.details), err.value.details
    if "leaf.pem" in snippet:
        assert any("is not a CA certificate" in d for d in err.value.details)
    if "junk.pem" in snippet:
        assert any("no PEM certificate" in d for d in err.value.details)


def test_check_config_names_an_unreadable_client_ca(tmp_path: Path) -> None:
    """The file may not exist when the config is parsed (certgate's root.crt appears at
    `certgate init`); check-config's state checks and `serve` name it."""
    from tests.support import certgate, write_config

    config = write_config(tmp_path / "cg", extra='[radsec]\nlisten = "127.0.0.1:2083"\n'
                                                 'client_ca = "nas-ca.pem"\n')
    certgate("init", config=config)
    r = certgate("check-config", config=config, check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "[radsec] client_ca: cannot read" in r.stderr and "nas-ca.pem" in r.stderr
    assert "Traceback" not in r.stderr
    (config.parent / "nas-ca.pem").write_text("junk\n")
    r = certgate("check-config", "--no-state", config=config, check=False)
    assert r.returncode == 2 and "radsec.client_ca:" in r.stderr and "no PEM certificate" in r.stderr
