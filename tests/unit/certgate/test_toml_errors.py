"""A TOML error in the config says which table, which lines, and what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from certgate.errors import ConfigError
from certgate.settings import load_settings
from tests.support import write_config


def _line(tmp_path: Path, header: str, extra: str = "") -> int:
    """The line of `header` in the test config (BASE_CONFIG + extra)."""
    lines = write_config(tmp_path / "probe", extra=extra).read_text().splitlines()
    return [i for i, text in enumerate(lines, 1) if text.strip() == header][-1]


def _error(tmp_path: Path, extra: str) -> str:
    config = write_config(tmp_path / "c", extra=extra)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{config}: not valid TOML: ")
    return text


def test_a_group_declared_twice(tmp_path: Path) -> None:
    extra = "\n[groups.staff]\nvlan = 30\n"
    text = _error(tmp_path, extra)
    first, second = _line(tmp_path, "[groups.staff]"), _line(tmp_path, "[groups.staff]", extra)
    assert f"[groups.staff] is declared twice (lines {first} and {second}): merge them into one " \
           "[groups.staff] (one table per group), or rename one if it is another group" in text


def test_radius_clients_as_a_table_after_the_array(tmp_path: Path) -> None:
    extra = '\n[radius.clients]\nname = "ap"\n'
    text = _error(tmp_path, extra)
    first, second = _line(tmp_path, "[[radius.clients]]"), _line(tmp_path, "[radius.clients]", extra)
    assert f"line {second} has [radius.clients] but line {first} has [[radius.clients]]: write " \
           "[[radius.clients]] (double brackets) once per RADIUS client, never " \
           "[radius.clients]" in text


def test_radius_clients_as_the_array_after_a_table(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[radius.clients]\nname = "a"\n\n[[ radius.clients ]]\nname = "b"\n')
    with pytest.raises(ConfigError, match=r"line 4 has \[\[radius.clients\]\] but line 1 has "
                       r"\[radius.clients\]: write \[\[radius.clients\]\]"):
        load_settings(config)


def test_other_redefinitions(tmp_path: Path) -> None:
    end = _line(tmp_path, "[groups.guests]") + 3  # the last line of the base config
    assert f"[server] is declared twice (lines 1 and {end + 2}): merge them into one table" in _error(
        tmp_path / "a", '\n[ "server" ]\nlog_level = "INFO"\n')
    assert f"line {end + 4} ('vlan = 2') sets a key that is already set in its table: keep one" in _error(
        tmp_path / "b", "\n[groups.x]\nvlan = 1\nvlan = 2\n")
    dotted = tmp_path / "d.toml"
    dotted.write_text('server.log_level = "INFO"\n[server]\n')
    with pytest.raises(ConfigError, match=r"\[server\] at line 2 declares a table already "
                       r"defined above \(by a dotted key or an inline table\)"):
        load_settings(dotted)


def test_other_syntax_errors_keep_tomllib_message(tmp_path: Path) -> None:
    end = _line(tmp_path, "[groups.guests]") + 3
    assert f"Expected '=' after a key in a key/value pair (at line {end + 3}" in _error(
        tmp_path, "\n[x]\nnot toml\n")
