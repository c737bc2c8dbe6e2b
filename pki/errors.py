"""Errors of the PKI layer: an operator must act (a missing or unreadable key, a wrong
passphrase, a certificate that does not fit). The message says what to do; certgate's CLI
prints it and exits with `exit_code`."""

from __future__ import annotations


class PkiError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
