"""Text from the environment, ``--set`` or flags turned into typed values: the one table.

Every place that reads a boolean or a number out of a string (``ASYNC_ETL_BENCH_*``, the job
file's ``ASYNC_ETL_<SECTION>_<KEY>`` and ``--set``, the command flags' environment overrides)
uses ``parse_bool`` / ``coerce`` here, and every "unknown X" message ends with
``did_you_mean``.  Each function raises ``ValueError`` with the bare reason; the caller adds
the variable, flag or file key that was at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

TRUE_WORDS: Final = frozenset({"y", "yes", "true", "1", "on"})
FALSE_WORDS: Final = frozenset({"n", "no", "false", "0", "off"})
BOOL_HINT: Final = "Y/N, yes/no, true/false, on/off or 1/0"


def parse_bool(text: str) -> bool:
    """``Y``/``N``, ``yes``/``no``, ``true``/``false``, ``on``/``off``, ``1``/``0`` (any case).

    Raises ``ValueError`` for anything else.
    """
    low = text.strip().lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    raise ValueError(f"expected a boolean ({BOOL_HINT}), got {text!r}")


def parse_int(text: str) -> int:
    """A whole number, ``_`` separators allowed (``1_000_000``); ``ValueError`` otherwise."""
    try:
        return int(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def parse_float(text: str) -> float:
    """A number (``0.5``, ``1e3``, ``1_000``); ``ValueError`` otherwise."""
    try:
        return float(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def parse_str(text: str) -> str:
    """The text itself, stripped of surrounding blanks."""
    return text.strip()


PARSERS: Final[dict[type, Callable[[str], Any]]] = {
    bool: parse_bool,
    int: parse_int,
    float: parse_float,
    str: parse_str,
}
"""The typed table: the parser for each value type a setting may have."""


def coerce(text: str, kind: type, choices: Iterable[str] | None = None) -> Any:
    """``text`` as a value of ``kind`` (a key of ``PARSERS``), one of ``choices`` if given.

    Raises ``ValueError`` naming the expected form (and the closest choice), ``KeyError`` for
    a ``kind`` the table does not know (a programming error, not bad input).
    """
    value = PARSERS[kind](text)
    if choices is not None:
        options = [str(c) for c in choices]
        if str(value) not in options:
            raise ValueError(
                f"expected {' | '.join(options)}, got {text!r}{did_you_mean(str(value), options)}"
            )
    return value


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the option closest to ``word``, or ``""`` if none is close."""
    import difflib  # only when a value is refused: not on every start

    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
