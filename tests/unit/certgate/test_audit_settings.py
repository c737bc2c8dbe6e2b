"""[audit] settings: defaults, relative paths, and each bad value named by key with the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from certgate.errors import ConfigError
from certgate.settings import parse_settings

MINIMAL = """
[[radius.clients]]
name = "wlc"
address = "10.0.0.0/24"
secret = "0123456789"
[groups.staff]
"""


def parse(audit: str, tmp_path: Path):
    return parse_settings(tomllib.loads(MINIMAL + "[audit]\n" + audit), tmp_path / "c.toml")


def problems(audit: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        parse(audit, tmp_path)
    return "\n".join(info.value.details)


def test_defaults_off(tmp_path: Path) -> None:
    a = parse("", tmp_path).audit
    assert not a.enabled and a.file is None and a.syslog is None
    assert a.syslog_facility == "authpriv" and a.queue_size == 10000
    assert a.store_authentications is False


def test_file_relative_to_the_config_and_syslog_urls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    a = parse('file = "log/audit.json"\nsyslog = "tls://siem.example.net:6514"\n'
              'syslog_ca = "ca.pem"\nsyslog_facility = "local3"\n', tmp_path).audit
    assert a.file == tmp_path / "log" / "audit.json"
    assert a.syslog == "tls://siem.example.net:6514" and a.syslog_ca == ca
    assert a.syslog_facility == "local3" and a.enabled
    for url in ("udp://127.0.0.1:514", "udp://siem", "tcp://[::1]:1514"):
        assert parse(f'syslog = "{url}"', tmp_path).audit.syslog == url


@pytest.mark.parametrize(("url", "why"), [
    ("http://siem:514", "scheme must be udp://, tcp:// or tls://, got http://"),
    ("siem:514", "scheme must be"),
    ("tcp://siem", "tcp:// needs a port (e.g. tcp://siem:514)"),
    ("tls://siem", "tls:// needs a port (e.g. tls://siem:6514)"),
    ("udp://:514", "names no host"),
    ("udp://siem:99999", "port that is not a number between 0 and 65535"),
    ("tcp://siem:514/path", "no path"),
])
def test_bad_syslog_url_names_the_key_and_the_form(tmp_path: Path, url: str, why: str) -> None:
    text = problems(f'syslog = "{url}"', tmp_path)
    assert text.startswith("audit.syslog: ") and why in text
    assert 'expected "udp://HOST:514", "tcp://HOST:PORT" or "tls://HOST:PORT"' in text


def test_bad_facility_ca_queue_and_unknown_key(tmp_path: Path) -> None:
    text = problems('syslog = "udp://siem:514"\nsyslog_facility = "security"\n'
                    'syslog_ca = "missing.pem"\nqueue_size = 5\nfiel = "x"\n', tmp_path)
    assert "audit.syslog_facility: expected one of kern, user" in text and "authpriv" in text
    assert "audit.syslog_ca: only applies to a tls:// syslog URL" in text
    assert "audit.queue_size: expected an integer between 100 and 1000000, got 5" in text
    assert "audit.fiel" in text
    assert "audit.syslog_ca: " in problems('syslog = "tls://s:6514"\nsyslog_ca = "nope.pem"',
                                           tmp_path)


def test_file_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    assert "audit.file: " in problems('file = "logs"', tmp_path)


def test_syslog_sd_id_default_own_pen_and_bad_forms(tmp_path: Path) -> None:
    assert parse("", tmp_path).audit.syslog_sd_id == "certgate@32473"
    own = parse('syslog = "udp://siem"\nsyslog_sd_id = "netaccess@54321"', tmp_path).audit
    assert own.syslog_sd_id == "netaccess@54321"
    for bad in ("certgate", "cert gate@1", "certgate@abc", "x" * 30 + "@12345"):
        text = problems(f'syslog_sd_id = "{bad}"', tmp_path)
        assert text.startswith("audit.syslog_sd_id: ") and "NAME@PEN" in text, bad
    from certgate.audit.wiring import build_sinks

    settings = parse('syslog = "udp://127.0.0.1:514"\nsyslog_sd_id = "netaccess@54321"', tmp_path)
    (sink,) = build_sinks(settings, None)
    assert sink.sd_id == "netaccess@54321"
