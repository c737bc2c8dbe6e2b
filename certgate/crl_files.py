"""The base CRL on disk: `<pki dir>/crl/<group>.base.crl` (DER) and `<group>.base.json`.

Why: a complete CRL of a million entries takes seconds of CPU to rebuild from the store; a
restarted server takes up the persisted one instead, after checking it still matches the
store (certgate/crls.py). A CRL is public, so both files are 0644; they are written to a
temporary file, fsynced and renamed, so a crash leaves the old pair or the new one, and the
JSON (written last) names the DER's CRL number, so a torn pair is detected and ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

FORMAT = 1


def crl_dir(pki_dir: Path) -> Path:
    return Path(pki_dir) / "crl"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # whatever the umask: a CRL is public
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_base(directory: Path, group: str, der: bytes, meta: dict[str, Any]) -> None:
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    _write(directory / f"{group}.base.crl", der)
    _write(directory / f"{group}.base.json",
           json.dumps({"format": FORMAT, "group": group, **meta}, sort_keys=True).encode())
    with contextlib.suppress(OSError):  # the renames survive a power cut
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def load_base(directory: Path, group: str) -> tuple[bytes, dict[str, Any]] | None:
    """(DER, metadata) or None when there is none; ValueError when unreadable."""
    meta_path = directory / f"{group}.base.json"
    der_path = directory / f"{group}.base.crl"
    if not meta_path.exists() or not der_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_bytes())
        der = der_path.read_bytes()
    except (OSError, ValueError) as exc:
        raise ValueError(f"{meta_path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("group") != group:
        raise ValueError(f"{meta_path}: not a format {FORMAT} base CRL record for {group}")
    return der, meta
