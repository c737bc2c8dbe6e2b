"""Every logging call's %-placeholders match its arguments.

A mismatch is not caught by Python until the line is emitted, and then logging prints a
"--- Logging error ---" traceback instead of the line (a renewal path did this in CI).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("certgate", "radius", "enrollment", "revocation", "pki", "store")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]")


def _placeholders(fmt: str) -> int:
    return sum(1 for m in PLACEHOLDER.finditer(fmt) if m.group() != "%%")


def _receiver(node: ast.expr) -> str:
    """`log` for log.info(...), `self.log` for self.log.info(...), '' for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _log_calls():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in LEVELS and node.args
                        and _receiver(node.func.value).lower().endswith(("log", "logger"))):
                    continue
                fmt = node.args[0]
                if not (isinstance(fmt, ast.Constant) and isinstance(fmt.value, str)):
                    continue
                if any(isinstance(a, ast.Starred) for a in node.args[1:]):
                    continue
                yield path.relative_to(ROOT), node.lineno, fmt.value, len(node.args) - 1


def test_the_scan_finds_log_calls() -> None:
    assert sum(1 for _ in _log_calls()) > 90


def test_every_log_call_has_one_argument_per_placeholder() -> None:
    wrong = [f"{path}:{line}: {_placeholders(fmt)} placeholder(s), {n} argument(s)"
             for path, line, fmt, n in _log_calls()
             if n and _placeholders(fmt) != n]
    assert not wrong, "\n".join(wrong)
