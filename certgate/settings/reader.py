"""Typed reads out of one TOML table, each problem recorded under its dotted key.

Every problem is reported at once, each naming its key and what is expected;
unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import stat
from pathlib import Path
from typing import Any

from certgate.settings.model import HostPort

#: Files a config names (tokens, secrets, PEM keys) are small; past this it is a mistake.
MAX_REFERENCED_FILE = 1 << 20


def read_referenced_file(path: Path) -> bytes:
    """The bytes of a file a config key names: a regular file of at most
    MAX_REFERENCED_FILE bytes. A FIFO, a device (/dev/zero) or a directory raises
    OSError with a strerror saying so, instead of blocking or reading without end."""
    if "\x00" in str(path):
        raise OSError(errno.EINVAL, "a path must not contain a NUL character")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = f.read(MAX_REFERENCED_FILE + 1)
    if len(data) > MAX_REFERENCED_FILE:
        raise OSError(errno.EFBIG, f"larger than {MAX_REFERENCED_FILE} bytes")
    return data


MAX_DETAIL = 400
_ESCAPE_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(detail: str) -> str:
    """A problem as reported: one line (control characters that came from the file,
    in a key, a path or a variable name, escaped), at most MAX_DETAIL characters."""
    detail = detail.translate(_ESCAPE_CONTROLS)
    if len(detail) > MAX_DETAIL:
        detail = f"{detail[:MAX_DETAIL]}... ({len(detail)} characters)"
    return detail


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters: a mistaken
    value can be megabytes long (a pasted file), the report must stay readable."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


class TableReader:
    """Pops typed values out of a TOML table, recording errors under dotted key names."""

    def __init__(self, table: dict[str, Any], prefix: str, errors: list[str],
                 base: Path | None = None, warnings: list[str] | None = None) -> None:
        self.table = dict(table)
        self.prefix = prefix
        self.errors = errors
        self.base = base  # relative `*_file` paths resolve against it (the config's directory)
        # not errors: deprecated keys that still work (check-config prints them, serve logs them)
        self.warnings = warnings if warnings is not None else []

    def child(self, table: dict[str, Any], prefix: str) -> TableReader:
        return TableReader(table, prefix, self.errors, self.base, self.warnings)

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, message: str) -> None:
        self.errors.append(f"{self.key(name)}: {message}")

    def warn(self, name: str, message: str) -> None:
        self.warnings.append(f"{self.key(name)}: {message}")

    def take(self, name: str, kinds: tuple[type, ...], expected: str, default: Any) -> Any:
        if name not in self.table:
            return default
        value = self.table.pop(name)
        if isinstance(value, bool) and bool not in kinds:
            self.error(name, f"expected {expected}, got {shown(value)}")
            return default
        if not isinstance(value, kinds):
            self.error(name, f"expected {expected}, got {shown(value)}")
            return default
        return value

    def str(self, name: str, default: Any = None, required: bool = False) -> Any:
        if required and name not in self.table:
            self.error(name, "is required (a string)")
        value = self.take(name, (str,), "a string", default)
        if required and value == "":
            self.error(name, "must not be empty")
        return value

    def int(self, name: str, default: Any = None, lo: int = 0, hi: int = 2**31) -> Any:
        value = self.take(name, (int,), "an integer", default)
        if isinstance(value, int) and not lo <= value <= hi:
            self.error(name, f"expected an integer between {lo} and {hi}, got {value}")
            return default
        return value

    def float(self, name: str, default: float, lo: float, hi: float) -> float:
        value = self.take(name, (int, float), "a number", default)
        if not lo <= value <= hi:
            self.error(name, f"expected a number between {lo} and {hi}, got {value}")
            return default
        return float(value)

    def bool(self, name: str, default: bool) -> bool:
        return self.take(name, (bool,), "true or false", default)

    def choice(self, name: str, choices: tuple[str, ...], default: Any) -> Any:
        value = self.str(name, default)
        if value is not None and value not in choices:
            self.error(name, f"expected one of {', '.join(choices)}, got {shown(value)}")
            return default
        return value

    def str_list(self, name: str, default: tuple[str, ...], choices: tuple[str, ...] = ()) -> Any:
        value = self.take(name, (list,), "a list of strings", None)
        if value is None:
            return default
        if not all(isinstance(v, str) for v in value):
            self.error(name, f"expected a list of strings, got {shown(value)}")
            return default
        bad = [v for v in value if choices and v not in choices]
        if bad:
            self.error(name, f"unknown value(s) {shown(bad)}; expected any of {', '.join(choices)}")
            return default
        return tuple(value)

    def tls_versions(self, versions: tuple[str, ...]) -> tuple[str, str]:
        """tls_min_version / tls_max_version (default 1.2..1.3), min not above max."""
        tls_min = self.choice("tls_min_version", versions, "1.2")
        tls_max = self.choice("tls_max_version", versions, "1.3")
        if tls_min and tls_max and tls_min > tls_max:
            self.error("tls_min_version", f"{tls_min} is above tls_max_version {tls_max}")
        return tls_min, tls_max

    def table_(self, name: str) -> dict[str, Any]:
        return self.take(name, (dict,), "a table", {})

    def path(self, name: str, base: Path, default: Path | None) -> Path | None:
        value = self.str(name, None)
        if value is None:
            return default
        if "\x00" in value:  # the OS cannot name it (os functions raise ValueError)
            self.error(name, "a path must not contain a NUL character")
            return default
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (base / p)

    def host_port(self, name: str, default: str | None) -> HostPort | None:
        value = self.str(name, default)
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
            port_no = int(port)
            if not sep or not 0 <= port_no <= 65535:
                raise ValueError
        except ValueError:
            self.error(name, f'expected "IP:PORT" like "127.0.0.1:1812", got {shown(value)}')
            return None
        return HostPort(host, port_no)

    def secret(self, name: str, required: bool) -> str | None:
        """A secret given inline (`name`), from the environment (`name_env`) or a file."""
        inline = self.str(name)
        env = self.str(f"{name}_env")
        file = self.str(f"{name}_file")
        given = [v for v in (inline, env, file) if v is not None]
        if len(given) > 1:
            self.error(name, f"give only one of {name}, {name}_env, {name}_file")
            return None
        if env is not None:
            value = os.environ.get(env)
            if not value:
                self.error(f"{name}_env", f"environment variable {env} is not set or empty")
            return value
        if file is not None:
            try:
                path = Path(os.path.expanduser(file))
                if self.base is not None and not path.is_absolute():
                    path = self.base / path
                return read_referenced_file(path).decode("utf-8").strip()
            except UnicodeDecodeError:
                self.error(f"{name}_file", f"{file} is not UTF-8 text")
                return None
            except OSError as exc:
                self.error(f"{name}_file", f"cannot read {file}: {exc.strerror}")
                return None
        if inline is None and required:
            self.error(name, f"is required (or {name}_env / {name}_file)")
        return inline

    def finish(self) -> None:
        for name in sorted(self.table):
            self.error(name, "unknown key (check the spelling; see config/certgate.example.toml)")
