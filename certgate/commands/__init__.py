"""CLI subcommands that live in their own module (the older ones are in certgate/cli*.py).

Each module here defines ``add_parsers(sub, add, settings_of)``: ``sub`` is the top-level
subparsers action, ``add(name, fn, help, parent=sub)`` registers a command the way
certgate/cli.py does, ``settings_of(args)`` loads the config. Modules are registered in
name order, so adding a command is adding a file. A command under a group that cli.py
creates (`certs`, `ca`, ...) gets that group's subparsers with `subcommands(sub, "certs")`.

Keep a module's top-level imports light (argparse, certgate.errors): every CLI call imports
every module here to build the parser, so the command's implementation is imported inside
its handler.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any


def subcommands(sub: argparse._SubParsersAction, group: str) -> argparse._SubParsersAction:
    """The subparsers of the command group `group` (e.g. "certs") created in cli.py."""
    parser = sub.choices[group]
    for action in parser._actions:  # noqa: SLF001 - argparse keeps no public handle
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return action
    raise LookupError(f"{group} has no subcommands")


def add_parsers(sub: argparse._SubParsersAction, add: Callable[..., Any],
                settings_of: Callable[[argparse.Namespace], Any]) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "add_parsers", None)
        if register is not None:
            register(sub, add, settings_of)
