"""Limits on waits: the one rule for a number of seconds that bounds a wait.

Every user-settable wait (``status`` / ``stop --timeout``, a job file's ``[state]
forget_timeout``, ``StateSpec.forget_timeout``) is checked here, so each is refused in the
same words: 0 or less would give up before trying, NaN or infinity would never give up.
Pure: no I/O.
"""

from __future__ import annotations

import math

__all__ = ["WAIT_RULE", "wait_problem"]

WAIT_RULE = "expected seconds, a finite number > 0"
"""What a wait's limit must be, as its one-line refusal starts."""


def wait_problem(seconds: object, shown: str | None = None) -> str | None:
    """Why ``seconds`` cannot bound a wait, in one line; None for a finite number > 0.

    ``seconds`` is any value (a bool is refused: ``True`` is not a number of seconds);
    ``shown`` is how the line quotes it (default ``repr(seconds)``: the text a user typed
    reads better than the float it became).
    """
    number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    if number and math.isfinite(seconds) and seconds > 0:  # type: ignore[arg-type,operator]
        return None
    return f"{WAIT_RULE}, got {repr(seconds) if shown is None else shown}"
