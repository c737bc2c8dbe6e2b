"""RADIUS dictionaries for ``[groups.X.reply]``: attribute names -> definitions.

Read with pyrad's parser (FreeRADIUS format) at config load, only when a group has a
``reply`` or ``quarantine_reply`` table or ``[radius] dictionaries`` is set, so a config
without them costs nothing. Where a name is looked up, first found wins:

1. ``[radius] dictionaries``, the operator's files, in order (a later file overrides an
   earlier one, as in FreeRADIUS), on top of
2. certgate's own (``certgate/dictionaries``: the standard attributes and the common
   controller vendors), then
3. the system's FreeRADIUS dictionaries (``/usr/share/freeradius/dictionary``) when they
   are installed, read only if a name is in neither: they hold ~10,000 attributes.

Names are matched exactly, then ignoring case (FreeRADIUS does). pyrad skips what it cannot
encode (attributes of vendors with another format than 1,1, extended attributes, TLVs nested
deeper than one level); such a name is reported as known but unsupported.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

from radius.reply_attributes import Definition

PACKAGED = Path(str(resources.files("certgate") / "dictionaries" / "dictionary"))
SYSTEM = Path("/usr/share/freeradius/dictionary")
_INTEGER_TYPES = ("integer", "signed", "short", "byte", "integer64", "date")


class DictionaryError(ValueError):
    """A dictionary file that cannot be read or parsed."""


@contextlib.contextmanager
def _quiet_pyrad() -> Iterator[None]:
    """pyrad warns about every unsupported FreeRADIUS attribute it skips; at config load
    that is noise (an unsupported name used in [reply] gets its own error)."""
    logger = logging.getLogger("pyrad")

    def drop(record: logging.LogRecord) -> bool:
        return False

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _read(paths: Sequence[Path]) -> object:
    from pyrad.dictionary import Dictionary, ParseError

    dictionary = Dictionary()
    for path in paths:
        try:
            with _quiet_pyrad():
                dictionary.ReadDictionary(str(path))
        except ParseError as exc:
            raise DictionaryError(f"{path}: {exc}") from None
        except OSError as exc:
            raise DictionaryError(f"cannot read {exc.filename or path}: {exc.strerror}") from None
        except (ValueError, KeyError, IndexError) as exc:  # pyrad's own checks, not ParseError
            raise DictionaryError(f"{path}: not a usable dictionary ({exc})") from None
    return dictionary


def _read_system(path: Path) -> object | None:
    """The FreeRADIUS dictionaries, file by file: one pyrad cannot parse (FreeRADIUS reads
    a few constructs pyrad refuses) is left out instead of losing them all."""
    from pyrad.dictionary import Dictionary, ParseError

    dictionary = Dictionary()
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        tokens = line.split("#", 1)[0].split()
        if len(tokens) != 2 or tokens[0] not in ("$INCLUDE", "$INCLUDE-"):
            continue
        included = path.parent / tokens[1]
        try:
            with _quiet_pyrad():
                dictionary.ReadDictionary(str(included))
        except (ParseError, OSError, ValueError, KeyError, IndexError):
            continue
    return dictionary


class Dictionaries:
    """Attribute lookups over the three sources above; built once per config load."""

    def __init__(self, extra: Sequence[Path] = (), *, packaged: Path | None = None,
                 system: Path | None | bool = True) -> None:
        """Raises ``DictionaryError`` when certgate's own or an operator's file is bad.
        ``system``: True for ``SYSTEM`` (read when this is built), a path, or None/False."""
        self._main = _read([packaged or PACKAGED, *extra])
        self._system_path = SYSTEM if system is True else (system or None)
        self._system: object | None = None
        self._system_read = False

    def _system_dictionary(self) -> object | None:
        if not self._system_read:
            self._system_read = True
            if self._system_path is not None and self._system_path.is_file():
                self._system = _read_system(self._system_path)
        return self._system

    def lookup(self, name: str) -> Definition:
        """The definition of ``name``; ``KeyError`` with the message to show otherwise."""
        for dictionary in (self._main, self._system_dictionary()):
            if dictionary is None:
                continue
            found = _find(dictionary, name)
            if found is not None:
                return _definition(dictionary, found)
        for dictionary in (self._main, self._system_dictionary()):
            if dictionary is not None and _skipped(dictionary, name):
                raise KeyError(f"{name} is in the dictionaries but cannot be encoded (pyrad skips "
                               "attributes of vendors with a format other than 1,1, extended "
                               "attributes and nested TLVs)")
        raise KeyError(self._unknown(name))

    def _unknown(self, name: str) -> str:
        names: dict[str, None] = {}  # ordered and without the names both sources define
        for dictionary in (self._main, self._system_dictionary()):
            if dictionary is not None:
                names.update(dict.fromkeys(dictionary.attributes))  # type: ignore[attr-defined]
        close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.75)
        where = "certgate's dictionaries, [radius] dictionaries"
        if self._system is not None:
            where += f" or {self._system_path.parent}"  # type: ignore[union-attr]
        hint = f"; did you mean {', '.join(close)}?" if close else (
            "; add a dictionary file defining it to [radius] dictionaries")
        return f"unknown attribute {name!r} (not in {where}){hint}"


def _find(dictionary: object, name: str) -> str | None:
    attributes = dictionary.attributes  # type: ignore[attr-defined]
    if name in attributes:
        return name
    folded = name.lower()
    return next((n for n in attributes if n.lower() == folded), None)


def _skipped(dictionary: object, name: str) -> bool:
    skipped = getattr(dictionary, "skipped_attributes", set())
    folded = name.lower()
    return any(n.lower() == folded for n in skipped)


def _definition(dictionary: object, name: str) -> Definition:
    attr = dictionary.attributes[name]  # type: ignore[attr-defined]
    vendor = dictionary.vendors.GetForward(attr.vendor) if attr.vendor else 0  # type: ignore[attr-defined]
    values: dict[str, int] = {}
    if attr.type in _INTEGER_TYPES:
        for key, encoded in attr.values.forward.items():
            values[key] = int.from_bytes(encoded, "big", signed=attr.type == "signed")
    return Definition(
        name=attr.name,
        code=attr.code,
        datatype=attr.type,
        vendor=vendor,
        vendor_name=attr.vendor or "",
        has_tag=bool(attr.has_tag),
        encrypt=int(attr.encrypt or 0),
        values=values,
        sub_attribute=bool(attr.is_sub_attribute),
    )
