"""argparse value types: every CLI input is checked against a stated limit."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type=` for an integer in [low, high]: a usage error naming the limit,
    never an OverflowError from deep inside."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip()[:20])
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:20]!r} is not an integer") from None
        if not low <= value <= high or len(text.strip()) > 20:
            raise argparse.ArgumentTypeError(f"{text[:20]} is outside {low}..{high}")
        return value

    return parse
