"""[groups.X.reply] and [groups.X.quarantine_reply]: RADIUS attributes by dictionary name.

Each key is an attribute name (``"Aruba-User-Role"``, or ``"Name:TAG"`` for a tagged one),
each value a string, an integer (or the name of one of its VALUEs), or a list of them for
several instances. Names are resolved through ``certgate.settings.dictionaries`` and values
checked and encoded by ``radius.reply_attributes``, so ``check-config`` names an unknown
attribute or a value of the wrong type, and the server only copies bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from certgate.settings.dictionaries import Dictionaries, DictionaryError
from certgate.settings.reader import TableReader, shown
from pki.groups import ExtraAttribute
from radius.reply_attributes import (
    MAX_REPLY_OCTETS,
    ReplyAttributeError,
    build,
    split_key,
    total_octets,
)

MAX_ENTRIES = 64  # attributes (instances) in one table


class DictionaryLoader:
    """Reads the dictionaries the first time a table needs them (most configs have none),
    once per config load; a bad ``[radius] dictionaries`` file is one error under that key."""

    def __init__(self, paths: tuple[Path, ...], errors: list[str],
                 factory: Callable[[tuple[Path, ...]], Dictionaries] = Dictionaries) -> None:
        self.paths = paths
        self.errors = errors
        self._factory = factory
        self._loaded: Dictionaries | None = None
        self._failed = False

    def get(self) -> Dictionaries | None:
        if self._loaded is None and not self._failed:
            try:
                self._loaded = self._factory(self.paths)
            except DictionaryError as exc:
                self._failed = True
                self.errors.append(f"radius.dictionaries: {exc} (a FreeRADIUS-format dictionary "
                                   "file: VENDOR, BEGIN-VENDOR, ATTRIBUTE, VALUE lines)")
        return self._loaded


def parse_reply(gr: TableReader, key: str, table: dict[str, Any],
                set_keys: Mapping[str, str], loader: DictionaryLoader
                ) -> tuple[ExtraAttribute, ...]:
    """The encoded attributes of one table (``key`` is ``reply`` or ``quarantine_reply``);
    every problem is recorded under ``groups.<name>.<key>.<attribute>``."""
    if not table:
        return ()
    dictionaries = loader.get()
    if dictionaries is None:
        return ()  # the loader has reported why
    out: list[ExtraAttribute] = []
    prefix = f"{key}."
    for attr_key, value in table.items():
        try:
            name, _ = split_key(attr_key)
            defn = dictionaries.lookup(name)
            out += build(defn, attr_key, _checked(value), set_keys)
        except KeyError as exc:
            gr.error(prefix + attr_key, str(exc.args[0]))
        except ReplyAttributeError as exc:
            gr.error(prefix + attr_key, str(exc))
    if len(out) > MAX_ENTRIES:
        gr.error(key, f"{len(out)} attributes; at most {MAX_ENTRIES} in one table")
        return ()
    size = total_octets(tuple(out))
    if size > MAX_REPLY_OCTETS:
        gr.error(key, f"the attributes take {size} octets encoded; at most {MAX_REPLY_OCTETS}, so "
                 "the Access-Accept stays within RADIUS's 4096 bytes")
        return ()
    return tuple(out)


def _checked(value: Any) -> Any:
    """TOML gives tables and nested lists too: not a RADIUS value."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict | list):
            raise ReplyAttributeError(f"expected a string, an integer or a list of them, got "
                                      f"{shown(value)}")
    return value
