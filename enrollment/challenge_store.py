"""Dynamic challenges and blob ledger entries <-> store rows; challenge creation.

Shared by the admin API, the CLI and the SCEP service. The token is returned once
and never stored or logged (only its SHA-256 and the jti are).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from enrollment.challenges import MAX_TTL, ChallengeBinding, ChallengeRecord, new_challenge
from store import Store
from store.records import ChallengeRow

DYNAMIC, BLOB = "dynamic", "blob"
DEFAULT_TTL = dt.timedelta(hours=1)
_TTL_RE = re.compile(r"^\s*(\d{1,12})\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_ttl(text: str | int | None, *, maximum: dt.timedelta = MAX_TTL,
              field: str = "ttl") -> dt.timedelta:
    """"90m", "1h", "2d", "1w" or seconds, at most `maximum` (challenges: 7 days); ValueError
    naming `field` and the limit otherwise."""
    if text is None:
        return min(DEFAULT_TTL, maximum)
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"{field} must be a duration like 1h, 30m, 2d")
    if isinstance(text, int):
        seconds = text
    else:
        m = _TTL_RE.match(text[:40])
        if m is None or len(text) > 40:
            raise ValueError(f"invalid {field} {text[:40]!r}: use e.g. 30m, 1h, 2d")
        seconds = int(m[1]) * _UNITS[m[2]]
    if seconds <= 0:
        raise ValueError(f"{field} must be positive")
    if seconds > maximum.total_seconds():
        raise ValueError(f"{field} {text!r} is above the maximum of {_human(maximum)}")
    return dt.timedelta(seconds=seconds)


def _human(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def binding_to_dict(b: ChallengeBinding) -> dict[str, Any]:
    return {
        "subject_cn": b.subject_cn,
        "sans": list(b.sans),
        "device_id": b.device_id,
        "key_types": list(b.key_types),
        "min_rsa_bits": b.min_rsa_bits,
        "ekus": list(b.ekus) if b.ekus is not None else None,
        "not_before": b.not_before.isoformat() if b.not_before else None,
    }


def binding_from_row(row: ChallengeRow) -> ChallengeBinding:
    d = row.binding
    nb = d.get("not_before")
    ekus = d.get("ekus")
    return ChallengeBinding(
        group=row.group,
        expires_at=row.expires_at,
        subject_cn=d.get("subject_cn"),
        sans=tuple(d.get("sans") or ()),
        device_id=d.get("device_id"),
        key_types=tuple(d.get("key_types") or ()),
        min_rsa_bits=d.get("min_rsa_bits"),
        ekus=tuple(ekus) if ekus is not None else None,
        not_before=dt.datetime.fromisoformat(nb) if nb else None,
    )


def record_from_row(row: ChallengeRow) -> ChallengeRecord:
    return ChallengeRecord(
        jti=row.jti,
        token_sha256=row.token_hash or "",
        binding=binding_from_row(row),
        created_at=row.created_at,
        used_at=row.used_at,
        used_txid=row.used_txid,
        used_spki_sha256=bytes.fromhex(row.used_spki) if row.used_spki else None,
        issued_serial=row.issued_serial,
    )


@dataclass(frozen=True)
class CreatedChallenge:
    token: str  # show once; never log
    jti: str
    group: str
    expires_at: dt.datetime

    def to_json(self) -> dict[str, str]:
        return {
            "challenge": self.token,
            "jti": self.jti,
            "group": self.group,
            "expires_at": self.expires_at.isoformat().replace("+00:00", "Z"),
        }


async def create_dynamic(
    store: Store,
    secret: bytes,
    group: str,
    *,
    now: dt.datetime,
    actor: str,
    ttl: dt.timedelta = DEFAULT_TTL,
    subject_cn: str | None = None,
    sans: Sequence[str] = (),
    device_id: str | None = None,
    key_types: Sequence[str] = (),
    ekus: Sequence[str] | None = None,
) -> CreatedChallenge:
    """Mint a one-time challenge bound to `group` and store its hash. ValueError on bad input."""
    binding = ChallengeBinding(
        group=group,
        expires_at=now + ttl,
        subject_cn=subject_cn,
        sans=tuple(sans),
        device_id=device_id,
        key_types=tuple(key_types),
        ekus=tuple(ekus) if ekus is not None else None,
    )
    token, record = new_challenge(secret, binding, now)
    await store.add_challenge(record.jti, DYNAMIC, group, record.token_sha256,
                              binding_to_dict(binding), now, binding.expires_at, actor)
    return CreatedChallenge(token, record.jti, group, binding.expires_at)
