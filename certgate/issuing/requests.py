"""Device requests for `certs issue`: one per `--cn` or per CSV line, checked before anything
is issued. A bad value is a `FieldError` naming its column (or option); a file that cannot be
read as a device list at all is a `CsvFormatError`.

CSV: a header row naming the columns (any order, case-insensitive, `-` or `_`), then one device
per line. Columns: cn (required), group, san (space-separated dns:/email:/uri: values),
device_id, days, key_type; empty cells take the command-line defaults. Comma or semicolon
separated (whichever the header uses), UTF-8 (a BOM is fine), blank lines skipped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection
from dataclasses import dataclass

from cryptography import x509

COLUMNS = ("cn", "group", "san", "device_id", "days", "key_type")
KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072")
MAX_DAYS = 3650
MAX_ROWS = 100_000
MAX_CN = 64  # RFC 5280 ub-common-name


class FieldError(ValueError):
    """One bad value: `column` is the CSV column (also the option name without --)."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


class CsvFormatError(ValueError):
    """The file is not a device list (no header, no cn column, unknown column, ...)."""


@dataclass(frozen=True)
class DeviceRequest:
    cn: str
    group: str
    sans: tuple[x509.GeneralName, ...] = ()
    device_id: str | None = None
    days: int | None = None  # None: the group's validity_days
    key_type: str = "ec-p256"
    where: str = ""  # "line 4" or "--cn laptop-01": how messages name the request
    profile: str = "device"  # or "nas": a RadSec NAS/proxy certificate (pki.profiles)


@dataclass(frozen=True)
class RowError:
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        column = f", column {self.column}" if self.column else ""
        return f"line {self.line}{column}: {self.message}"


def _show(value: str) -> str:
    """A value echoed in a message: bounded, control characters escaped."""
    text = value if len(value) <= 80 else value[:80] + "…"
    return repr(text)


def parse_san(text: str) -> x509.GeneralName:
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise ValueError(f"{_show(text)}: expected dns:NAME, email:ADDR or uri:URI")
    kind = kind.lower()
    make = {"dns": x509.DNSName, "email": x509.RFC822Name,
            "uri": x509.UniformResourceIdentifier}.get(kind)
    if make is None:
        raise ValueError(f"{_show(text)}: unknown kind {_show(kind)} (dns, email, uri)")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError(f"{_show(text)}: must be printable ASCII without spaces "
                         "(IDNA-encode international names: xn--...)")
    return make(value)


def check_cn(cn: str) -> str:
    cn = cn.strip()
    if not cn:
        raise FieldError("cn", "empty: every device needs a common name")
    if len(cn) > MAX_CN:
        raise FieldError("cn", f"{_show(cn)} is longer than {MAX_CN} characters")
    if "/" in cn or "\\" in cn or cn.startswith(".") or not cn.isprintable():
        raise FieldError("cn", f"{_show(cn)} cannot be used as a file name "
                         "(no /, \\, control characters or leading dot)")
    return cn


def make_request(*, cn: str, group: str | None, sans: list[str], device_id: str | None,
                 days: str | int | None, key_type: str | None, groups: Collection[str],
                 default_key_type: str, where: str) -> DeviceRequest:
    """One checked request; the first bad value raises FieldError."""
    cn = check_cn(cn)
    if not group:
        raise FieldError("group", "empty and no --group given")
    if group not in groups:
        raise FieldError("group", f"unknown group {_show(group)} (groups: {', '.join(groups)})")
    general_names = []
    for text in sans:
        try:
            general_names.append(parse_san(text))
        except ValueError as exc:
            raise FieldError("san", str(exc)) from None
    if isinstance(days, str):
        days = days.strip()
        if not days.isdigit() or len(days) > 5:
            raise FieldError("days", f"{_show(days)} is not an integer 1..{MAX_DAYS}")
        days = int(days)
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise FieldError("days", f"{days} is outside 1..{MAX_DAYS}")
    key_type = (key_type or default_key_type).strip().lower()
    if key_type not in KEY_TYPES:
        raise FieldError("key_type", f"{_show(key_type)} is not one of {', '.join(KEY_TYPES)}")
    if device_id is not None:
        device_id = device_id.strip() or None
        if device_id is not None and (len(device_id) > 256 or not device_id.isprintable()):
            raise FieldError("device_id", f"{_show(device_id)}: at most 256 printable characters")
    return DeviceRequest(cn, group, tuple(general_names), device_id, days, key_type, where)


def _header(row: list[str]) -> list[str]:
    names = [c.strip().lower().replace("-", "_") for c in row]
    for name in names:
        if name not in COLUMNS:
            raise CsvFormatError(f"line 1: unknown column {_show(name)} (columns: "
                                 f"{', '.join(COLUMNS)}; the first line must be the header)")
    seen = set()
    for name in names:
        if name in seen:
            raise CsvFormatError(f"line 1: column {name} appears twice")
        seen.add(name)
    if "cn" not in seen:
        raise CsvFormatError(f"line 1: no cn column (header {','.join(names)}; columns: "
                             f"{', '.join(COLUMNS)})")
    return names


def read_devices(text: str, *, groups: Collection[str], default_group: str | None,
                 default_days: int | None, default_key_type: str
                 ) -> list[DeviceRequest | RowError]:
    """Every data line as a request or a RowError naming its line and column, in file order.
    A second line for the same cn is an error (its files would overwrite the first's)."""
    text = text.removeprefix("\ufeff")
    first = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if not header or not any(c.strip() for c in header):
            raise CsvFormatError("line 1: empty; the first line must be the header (e.g. "
                                 "cn,group,san,device_id,days,key_type)")
        columns = _header(header)
        out: list[DeviceRequest | RowError] = []
        first_line: dict[str, int] = {}
        line = reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(out) >= MAX_ROWS:
                raise CsvFormatError(f"line {start}: more than {MAX_ROWS} devices; split the file")
            if len(row) != len(columns):
                out.append(RowError(start, None, f"{len(row)} fields, the header has "
                                    f"{len(columns)}"))
                continue
            cells = dict(zip(columns, row, strict=True))
            try:
                request = make_request(
                    cn=cells["cn"], group=cells.get("group", "").strip() or default_group,
                    sans=cells.get("san", "").split(), device_id=cells.get("device_id"),
                    days=cells.get("days", "").strip() or default_days,
                    key_type=cells.get("key_type", "").strip() or None, groups=groups,
                    default_key_type=default_key_type, where=f"line {start}",
                )
            except FieldError as exc:
                out.append(RowError(start, exc.column, exc.message))
                continue
            if request.cn in first_line:
                out.append(RowError(start, "cn", f"{_show(request.cn)} is already on line "
                                    f"{first_line[request.cn]} (one set of files per cn)"))
                continue
            first_line[request.cn] = start
            out.append(request)
    except csv.Error as exc:
        raise CsvFormatError(f"line {reader.line_num}: not valid CSV ({exc})") from None
    return out
