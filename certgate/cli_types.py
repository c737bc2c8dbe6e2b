"""argparse value types: every CLI input is checked against a stated limit."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type=` for an integer in [low, high]: a usage error naming the limit,
    never an OverflowError from deep inside."""

    def parse(text: str) -> int:
        digits = text.strip()
        if len(digits) > 20:  # no int() of a huge string: it is out of range anyway
            raise argparse.ArgumentTypeError(f"{digits[:20]}… is outside {low}..{high}")
        try:
            value = int(digits)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{digits!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{digits} is outside {low}..{high}")
        return value

    return parse
