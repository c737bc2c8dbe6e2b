"""Errors the operator must act on: they carry the message printed on stderr."""

from __future__ import annotations

from pki.errors import PkiError


class ConfigError(Exception):
    """The configuration is wrong; `details` lists every problem found (key: what is expected)."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {d}" for d in self.details)


class OperatorError(Exception):
    """A runtime problem with a known fix (missing key file, wrong passphrase, store unreadable).

    Exit code 1 unless `exit_code` says otherwise.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


OPERATOR_ERRORS = (OperatorError, PkiError)  # what the CLI prints as `certgate: <message>`
