"""tomllib's parse errors, said so an operator can fix them.

tomllib says ``Cannot declare ('groups', 'staff') twice (at line 9, column 14)`` or
``Cannot overwrite a value (at line 3, column 17)``; the operator wants the table, both
lines, and what to write instead (merge the two tables; write ``[[radius.clients]]`` for
every client). Python 3.11's TOMLDecodeError carries only that message, so the line number
is read from it and the headers are read from the source text.
"""

from __future__ import annotations

import re

_AT = re.compile(r"\(at line (\d+), column \d+\)")
_DECLARED_TWICE = re.compile(r"^Cannot declare \((.*)\) twice")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_ARRAYS = {"radius.clients": "RADIUS client"}  # tables certgate reads as arrays of tables


def _key(text: str) -> str:
    """A dotted key as written in a header (spaces and quotes removed)."""
    return ".".join(part.strip().strip("\"'") for part in text.split("."))


def _headers(text: str) -> list[tuple[int, bool, str]]:
    """(line number, is an array-of-tables header, dotted key) of each table header."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            out.append((number, m[1] == "[[", _key(m[2])))
    return out


def explain(text: str, message: str) -> str:
    """The reason to print for a TOMLDecodeError `message` on source `text`."""
    at = _AT.search(message)
    if at is None:
        return message
    line = int(at[1])
    headers = _headers(text)
    here = next(((array, key) for n, array, key in headers if n == line), None)
    twice = _DECLARED_TWICE.match(message)
    if twice:
        table = ".".join(part.strip().strip("'\"") for part in twice[1].split(",") if part.strip())
        return _declared_twice(table, line, headers, message)
    if message.startswith("Cannot overwrite a value") and here is not None:
        array, key = here
        earlier = [n for n, a, k in headers if k == key and n < line and not a]
        if array and earlier:
            return (f"line {line} has [[{key}]] but line {earlier[0]} has [{key}]: "
                    f"{_array_fix(key)} ({message})")
        return (f"[{key}] at line {line} redefines a key set before it: define {key} in one "
                f"place ({message})")
    if message.startswith("Cannot overwrite a value"):
        shown = text.splitlines()[line - 1].strip()[:80] if line <= len(text.splitlines()) else ""
        return (f"line {line} ({shown!r}) sets a key that is already set in its table: keep "
                f"one of them ({message})")
    return message


def _array_fix(key: str) -> str:
    what = _ARRAYS.get(key, "entry")
    return f"write [[{key}]] (double brackets) once per {what}, never [{key}]"


def _declared_twice(table: str, line: int, headers: list[tuple[int, bool, str]],
                    message: str) -> str:
    earlier = [(n, a) for n, a, k in headers if k == table and n < line]
    here = next((a for n, a, k in headers if n == line), None)
    if earlier and here is False and any(a for _, a in earlier):
        first = next(n for n, a in earlier if a)
        return (f"line {line} has [{table}] but line {first} has [[{table}]]: "
                f"{_array_fix(table)} ({message})")
    if earlier:
        first = earlier[0][0]
        fix = "merge them into one table"
        if table.startswith("groups.") and table.count(".") == 1:
            fix = (f"merge them into one [groups.{table[7:]}] (one table per group), or rename "
                   "one if it is another group")
        return f"[{table}] is declared twice (lines {first} and {line}): {fix} ({message})"
    return (f"[{table}] at line {line} declares a table already defined above (by a dotted key "
            f"or an inline table): define {table} in one place ({message})")
