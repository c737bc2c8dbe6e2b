"""certgate test-auth option handling: HOST:PORT, where the secret comes from, usage errors
(exit 2 naming the option), the config's client entry chosen by our source address."""

from __future__ import annotations

import argparse
import ipaddress
from types import SimpleNamespace

import pytest

from certgate.commands import test_auth as ta
from certgate.errors import OperatorError


def _args(**kw) -> argparse.Namespace:  # type: ignore[no-untyped-def]
    base = {"secret": None, "secret_file": None}
    return argparse.Namespace(**{**base, **kw})


def _settings(*clients: tuple[str, str]) -> SimpleNamespace:
    return SimpleNamespace(radius=SimpleNamespace(clients=[
        SimpleNamespace(address=ipaddress.ip_network(net), secret=secret)
        for net, secret in clients]))


@pytest.mark.parametrize(("text", "want"), [("127.0.0.1:1812", ("127.0.0.1", 1812)),
                                            ("[::1]:18120", ("::1", 18120)),
                                            ("radius.example.org:1812",
                                             ("radius.example.org", 1812))])
def test_parse_server(text: str, want: tuple[str, int]) -> None:
    assert ta.parse_server(text) == want


@pytest.mark.parametrize("text", ["127.0.0.1", ":1812", "host:0", "host:99999", "host:x"])
def test_parse_server_refuses(text: str) -> None:
    with pytest.raises(OperatorError) as e:
        ta.parse_server(text)
    assert e.value.exit_code == 2 and "--server" in str(e.value)


def test_secret_sources(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(ta.SECRET_ENV, raising=False)
    f = tmp_path / "s"
    f.write_text("from-file\n")
    assert ta._secret(_args(secret_file=str(f)), None, "10.0.0.1", None) == b"from-file"
    assert ta._secret(_args(secret="given"), None, "10.0.0.1", None) == b"given"
    monkeypatch.setenv(ta.SECRET_ENV, "from-env")
    assert ta._secret(_args(), None, "10.0.0.1", None) == b"from-env"
    monkeypatch.delenv(ta.SECRET_ENV)
    with pytest.raises(OperatorError, match="--secret-file FILE"):
        ta._secret(_args(), None, "10.0.0.1", None)
    with pytest.raises(OperatorError, match="not both"):
        ta._secret(_args(secret="a", secret_file=str(f)), None, "10.0.0.1", None)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(OperatorError, match="is empty"):
        ta._secret(_args(secret_file=str(tmp_path / "empty")), None, "10.0.0.1", None)


def test_secret_from_the_config_only_for_a_local_server(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(ta.SECRET_ENV, raising=False)
    s = _settings(("10.0.0.0/8", "lan"), ("127.0.0.0/8", "loop"))
    assert ta._secret(_args(), s, "127.0.0.1", "127.0.0.1") == b"loop"
    with pytest.raises(OperatorError) as e:  # a remote server: its secret is not ours to guess
        ta._secret(_args(), s, "192.0.2.7", "192.0.2.1")
    assert e.value.exit_code == 2
    with pytest.raises(OperatorError, match="covers our address"):
        ta._secret(_args(), _settings(("10.0.0.0/8", "lan")), "127.0.0.1", "127.0.0.1")
