"""RFC 5280 revocation reasons: names, codes and cryptography's ``x509.ReasonFlags``.

The canonical spelling is RFC 5280's camelCase (``keyCompromise``), which is also
the value of the matching ``x509.ReasonFlags`` member. User input (CLI, admin API,
store rows) is parsed case-insensitively and may use snake_case or kebab-case:
``key_compromise``, ``KEY-COMPROMISE`` and ``keycompromise`` all mean
``keyCompromise``.

``removeFromCRL`` is a valid reason *name* (it exists in RFC 5280 §5.3.1) but only
makes sense in delta CRLs; certgate never publishes one, so it is not a valid
reason to revoke with: :func:`parse_reason` refuses it unless asked
(``allow_remove_from_crl=True``), see :data:`REVOCATION_REASONS`.
"""

from __future__ import annotations

from cryptography import x509

__all__ = [
    "REASON_CODES",
    "REVOCATION_REASONS",
    "UnknownReason",
    "canonical_name",
    "from_code",
    "parse_reason",
    "parse_revocation_reason",
    "reason_code",
    "to_flag",
]

_R = x509.ReasonFlags

# RFC 5280 §5.3.1 CRLReason codes (7 is unused).
REASON_CODES: dict[x509.ReasonFlags, int] = {
    _R.unspecified: 0,
    _R.key_compromise: 1,
    _R.ca_compromise: 2,
    _R.affiliation_changed: 3,
    _R.superseded: 4,
    _R.cessation_of_operation: 5,
    _R.certificate_hold: 6,
    _R.remove_from_crl: 8,
    _R.privilege_withdrawn: 9,
    _R.aa_compromise: 10,
}
_BY_CODE: dict[int, x509.ReasonFlags] = {code: flag for flag, code in REASON_CODES.items()}

# Reasons a certificate may be revoked with (everything except removeFromCRL).
REVOCATION_REASONS: tuple[x509.ReasonFlags, ...] = tuple(
    flag for flag in REASON_CODES if flag is not _R.remove_from_crl
)


def _fold(text: str) -> str:
    return text.replace("_", "").replace("-", "").replace(" ", "").lower()


_BY_FOLDED: dict[str, x509.ReasonFlags] = {_fold(flag.value): flag for flag in REASON_CODES}


class UnknownReason(ValueError):
    """The caller supplied a reason name that RFC 5280 does not define."""

    def __init__(self, text: str, valid: tuple[x509.ReasonFlags, ...]) -> None:
        self.text = text
        self.valid = tuple(flag.value for flag in valid)
        super().__init__(f"unknown revocation reason {text!r}; valid reasons: {', '.join(self.valid)}")


def parse_reason(text: str, *, allow_remove_from_crl: bool = False) -> x509.ReasonFlags:
    """An RFC 5280 reason name (case-insensitive; camelCase, snake_case or kebab-case).

    ``removeFromCRL`` is refused unless ``allow_remove_from_crl``: it is not a reason
    to revoke with, and a stored one would make every CRL build for the group fail.
    UnknownReason (a ValueError) lists the valid names.
    """
    if not isinstance(text, str):
        raise TypeError(f"reason must be str, not {type(text).__name__}")
    flag = _BY_FOLDED.get(_fold(text.strip()))
    valid = tuple(REASON_CODES) if allow_remove_from_crl else REVOCATION_REASONS
    if flag is None or flag not in valid:
        raise UnknownReason(text, valid)
    return flag


def parse_revocation_reason(text: str) -> x509.ReasonFlags:
    """Same as ``parse_reason(text)``: any reason except ``removeFromCRL``."""
    return parse_reason(text)


def to_flag(reason: str | x509.ReasonFlags | None) -> x509.ReasonFlags:
    """Normalise a stored reason (None means unspecified) to a revocation ReasonFlags."""
    if reason is None:
        return _R.unspecified
    if isinstance(reason, x509.ReasonFlags):
        if reason is _R.remove_from_crl:
            raise UnknownReason(reason.value, REVOCATION_REASONS)
        return reason
    return parse_revocation_reason(reason)


def canonical_name(reason: str | x509.ReasonFlags) -> str:
    """The RFC 5280 spelling, e.g. ``canonical_name("key_compromise") == "keyCompromise"``."""
    if isinstance(reason, x509.ReasonFlags):
        return reason.value
    return parse_reason(reason, allow_remove_from_crl=True).value


def reason_code(reason: x509.ReasonFlags) -> int:
    """The CRLReason integer (RFC 5280 §5.3.1)."""
    if not isinstance(reason, x509.ReasonFlags):
        raise TypeError(f"reason must be x509.ReasonFlags, not {type(reason).__name__}")
    return REASON_CODES[reason]


def from_code(code: int) -> x509.ReasonFlags:
    """The ReasonFlags for a CRLReason integer; 7 and out-of-range codes are ValueError."""
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"code must be int, not {type(code).__name__}")
    try:
        return _BY_CODE[code]
    except KeyError:
        raise ValueError(f"no CRLReason with code {code}") from None
