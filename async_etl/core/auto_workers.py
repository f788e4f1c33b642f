"""A job's ``max_workers = "auto"`` / ``"auto:MIN-MAX"``: parsed apart from the controller.

The adaptive controller (``core.adaptive``) runs only when a job has more than one worker; a
job file is parsed at every start, so the parse lives here and imports nothing.
"""

from __future__ import annotations

__all__ = ["AUTO_DEFAULT", "parse_auto"]

AUTO_DEFAULT = (1, 16)
"""Bounds of a bare ``auto`` job ``max_workers``."""


def parse_auto(text: str, default: tuple[int, int] = AUTO_DEFAULT) -> tuple[int, int]:
    """``"auto"`` or ``"auto:MIN-MAX"`` as (MIN, MAX); ``ValueError`` for anything else."""
    raw = text.strip().lower()
    if raw == "auto":
        return default
    head, _, bounds = raw.partition(":")
    low, _, high = bounds.partition("-")
    if head != "auto" or not low.isdigit() or not high.isdigit():
        raise ValueError(f"expected an integer, auto or auto:MIN-MAX, got {text!r}")
    if not 1 <= int(low) <= int(high):
        raise ValueError(f"auto:MIN-MAX needs 1 <= MIN <= MAX, got {text!r}")
    return int(low), int(high)
