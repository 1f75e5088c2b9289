"""Command-line values that must be in range: argparse rejects the rest with one line (`--num-processes -3` hung,
`plan --mfu 0` printed infinite GPU-hours)."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """An argument that counts something (processes): a whole number >= 1 (`--num-processes -3` hung)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number > 0")
    return value


def fraction(text: str) -> float:
    """A utilisation: in (0, 1] (`--mfu 0` printed infinite GPU-hours)."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not in (0, 1]: a fraction, e.g. 0.4 for 40%")
    return value
