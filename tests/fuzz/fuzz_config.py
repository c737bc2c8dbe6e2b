"""Fuzz configuration loading (certgate.settings). The first byte picks the form:

- even: the rest is the config file itself (bytes, as an operator's editor may save
  them) given to ``load_settings``: not UTF-8, not TOML, or TOML with anything in it;
- odd: the example config (config/certgate.example.toml, with its relative paths
  pointing into a scratch directory that holds a token file and an MDM key) parsed,
  then up to eight of its keys (or new keys beside them) replaced with values of a
  type the rest of the input chooses: strings (including paths, addresses, CIDRs,
  huge and control-character ones), integers from -2**70 to 2**70, floats (nan, inf),
  booleans, dates, arrays and tables; then ``parse_settings``.

Invariants: only ``ConfigError`` (each detail one line naming the dotted key it is
about, the whole report bounded) or a ``Settings``; the same input gives the same
answer twice; within the per-input time budget (no path read blocks or reads
without limit: /dev/zero and FIFOs are refused, files are read up to a size).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certgate.errors import ConfigError
from certgate.settings import Settings, load_settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "config" / "certgate.example.toml").read_text()
SCRATCH = Path(tempfile.mkdtemp(prefix="certgate-fuzz-config-"))
CONFIG_PATH = SCRATCH / "certgate.toml"
(SCRATCH / "tokens").write_text("fuzz-admin-token-0123456789\n")
(SCRATCH / "mdm.pem").write_bytes(
    ec.derive_private_key(0x3D3, ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
os.mkfifo(SCRATCH / "fifo")  # a path the fuzzer may name: reading it must not block
BASE = tomllib.loads(EXAMPLE)
BASE["scep"]["mdm_blob_keys"] = ["mdm.pem"]
#: Every (table path, key) the example has: the structured form mutates these or
#: adds keys next to them.
SLOTS: list[tuple[tuple[str, ...], str]] = []


def _slots(table: dict[str, Any], where: tuple[str, ...]) -> None:
    for key, value in table.items():
        SLOTS.append((where, key))
        if isinstance(value, dict):
            _slots(value, (*where, key))


_slots(BASE, ())
NAMES = sorted({k for _, k in SLOTS} | {"secret_env", "secret_file", "token_file", "quarantine_vlan",
                                        "workers", "url", "postgres", "node_name", "metrics_token"})
STRINGS = ["", " ", "127.0.0.1:1812", "[::1]:1812", "0.0.0.0:0", "127.0.0.1:99999", "10.0.0.0/8",
           "::/0", "300.1.1.1/8", "fifo", "/dev/zero", "/dev/null", "tokens", "mdm.pem", ".", "/",
           "~/x", "re:(a+)+b", "glob:*", "postgresql://u@h/db", "sqlite:///x", "ec-p256", "rsa-2048",
           "1.2", "1.3", "TRACE", "json", "text", "aes256", "\ud800", "a\nb", "\x00", "é" * 40]


class _Bytes:
    """Reads choices off the fuzz input; past its end every choice is 0."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def int(self, bits: int) -> int:
        return int.from_bytes(bytes(self.byte() for _ in range((bits + 7) // 8)), "big", signed=True)

    def text(self) -> str:
        n = self.byte()
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk.decode("utf-8", "surrogateescape")

    def value(self, depth: int = 0) -> Any:
        kind = self.byte() % (11 if depth < 2 else 8)
        if kind == 0:
            return STRINGS[self.byte() % len(STRINGS)]
        if kind == 1:
            return self.text()
        if kind == 2:
            return self.int(16)
        if kind == 3:
            return self.int(72)
        if kind == 4:
            return [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e300, 0.25, -1.5][self.byte() % 8]
        if kind == 5:
            return bool(self.byte() & 1)
        if kind == 6:
            when = [dt.date(2026, 1, 1), dt.time(12, 0), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
            return when[self.byte() % 3]
        if kind == 7:
            return STRINGS[self.byte() % len(STRINGS)] * (1 + self.byte() * 64)
        if kind == 8:
            return [self.value(depth + 1) for _ in range(self.byte() % 4)]
        if kind == 9:
            return {NAMES[self.byte() % len(NAMES)]: self.value(depth + 1) for _ in range(self.byte() % 4)}
        return [{"name": self.text(), "address": self.value(depth + 1), "secret": self.value(depth + 1)}]


def _mutated(data: bytes) -> dict[str, Any]:
    import copy

    config = copy.deepcopy(BASE)
    choices = _Bytes(data)
    for _ in range(1 + choices.byte() % 8):
        where, key = SLOTS[(choices.byte() << 8 | choices.byte()) % len(SLOTS)]
        table: Any = config
        for part in where:
            table = table.get(part) if isinstance(table, dict) else None
        if not isinstance(table, dict):
            continue
        if choices.byte() % 4 == 0:
            key = NAMES[choices.byte() % len(NAMES)]
        if choices.byte() % 8 == 0:
            table.pop(key, None)
        else:
            table[key] = choices.value()
    return config


def _load(mode: int, rest: bytes) -> Settings | ConfigError:
    try:
        if mode % 2 == 0:
            CONFIG_PATH.write_bytes(rest)
            return load_settings(CONFIG_PATH)
        return parse_settings(_mutated(rest), CONFIG_PATH)
    except ConfigError as exc:
        return exc


def _check_report(exc: ConfigError) -> None:
    assert isinstance(exc.message, str) and exc.message, exc
    report = str(exc)
    assert len(report) < 500 * (len(exc.details) + 2), f"config error report of {len(report)} characters"
    for detail in exc.details:
        assert isinstance(detail, str) and detail, exc.details
        assert "\n" not in detail and "\r" not in detail, f"multi-line detail {detail!r:.200}"
        key, sep, _ = detail.partition(": ")
        assert sep and key, f"detail names no key: {detail!r:.200}"


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    first = _load(mode, rest)
    if isinstance(first, ConfigError):
        _check_report(first)
        again = _load(mode, rest)
        assert isinstance(again, ConfigError) and str(again) == str(first), "not deterministic"
        return
    assert isinstance(first, Settings), first
    again = _load(mode, rest)
    assert again == first, "the same config parsed twice differs"


def _seeds() -> list[bytes]:
    example = EXAMPLE.replace('mdm_blob_keys = []', 'mdm_blob_keys = ["mdm.pem"]').encode()
    seeds = [b"\x00" + example, b"\x00", b"\x00[server]\n", b"\x00\xff\xfe", b"\x00a = 9" + b"9" * 5000,
             b"\x00[radius]\nlisten = \"127.0.0.1:1812\"\n[[radius.clients]]\nname=\"x\"\naddress=\"::/0\"\n",
             b"\x00[admin]\ntoken_file = \"fifo\"\n", b"\x00[admin]\ntoken_file = \"/dev/zero\"\n",
             b"\x00[scep]\nmdm_blob_keys = [\"/dev/zero\", \"fifo\", \"tokens\"]\n",
             b"\x00[[radius.clients]]\nname = \"n\"\naddress = \"10.0.0.0/8\"\nsecret_file = \"fifo\"\n"]
    seeds += [bytes([1]) + bytes([i, 0, i * 7 % 256, 1, i % 11, i, 3, 2, 5, 9]) for i in range(24)]
    return seeds


SEEDS = _seeds()

if __name__ == "__main__":
    from tests.fuzz._harness import run

    run("config", one_input, SEEDS)
