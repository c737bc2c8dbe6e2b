"""CLI subcommands that live in their own module (the older ones are in certgate/cli*.py).

Each module here defines ``add_parsers(sub, add, settings_of)``: ``sub`` is the top-level
subparsers action, ``add(name, fn, help, parent=sub)`` registers a command the way
certgate/cli.py does, ``settings_of(args)`` loads the config. Modules are registered in
name order, so adding a command is adding a file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any


def add_parsers(sub: argparse._SubParsersAction, add: Callable[..., Any],
                settings_of: Callable[[argparse.Namespace], Any]) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "add_parsers", None)
        if register is not None:
            register(sub, add, settings_of)
