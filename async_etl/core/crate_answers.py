"""Reading CrateDB query answers: the shapes a statement may return, checked before use.

Pure: a ``Response`` (``crate_protocol.parse_response``) in, values out.  The protocol
reference says a query answers ``{"cols": [...], "rows": [[...], ...]}`` with every row as wide
as ``cols``; an aggregate (``count(*)``, ``max(id)``) answers exactly one row of one value.  A
server, proxy or stand-in that answers anything else (``{"cols": [], "rows": []}`` to a count, a
row of the wrong width, a count that is not a number) gets a one-line ``LoadError`` naming the
statement and what came back -- never an ``IndexError`` or ``TypeError`` from deep inside a run.
"""

from __future__ import annotations

import json
from typing import Any

from async_etl.core.crate_protocol import Response, one_line
from async_etl.errors import LoadError

__all__ = ["count_of", "next_id", "odd_answer", "optional_number", "query_rows", "scalar"]

_LIMIT = 160


def shape(response: Response) -> str:
    """What came back, as one short JSON-like line (cols, the first rows, rowcount)."""
    doc: dict[str, Any] = {"cols": list(response.cols), "rows": [list(r) for r in response.rows]}
    if response.rowcount is not None:
        doc["rowcount"] = response.rowcount
    if response.results is not None:
        doc["results"] = f"<{len(response.results)} bulk results>"
    text = json.dumps(doc, default=repr, separators=(",", ":"))
    return text if len(text) <= _LIMIT else text[: _LIMIT - 1] + "…"


def odd_answer(where: str, stmt: str, response: Response, expected: str) -> LoadError:
    """The ``LoadError`` for an answer outside the protocol: statement, what came, what not."""
    return LoadError(
        f"{where}: odd answer to {one_line(stmt, 80)!r}: {shape(response)} (expected {expected})"
    )


def query_rows(
    response: Response, where: str, stmt: str, *, width: int | None = None
) -> tuple[tuple[Any, ...], ...]:
    """The rows of a query answer, each as wide as ``cols`` (and ``width`` when given).

    Raises ``LoadError`` (one line, naming ``stmt``) for any other shape.
    """
    cols = len(response.cols)
    expected = f"rows of {width if width is not None else cols} values"
    if width is not None and cols != width:
        raise odd_answer(where, stmt, response, f"{width} columns")
    if any(len(row) != cols for row in response.rows):
        raise odd_answer(where, stmt, response, expected)
    return response.rows


def scalar(response: Response, where: str, stmt: str) -> Any:
    """The one value of a one-row, one-column answer (``SELECT count(*)``, ``max(...)``).

    Raises ``LoadError`` (one line, naming ``stmt``) for any other shape.
    """
    rows = response.rows
    if len(response.cols) != 1 or len(rows) != 1 or len(rows[0]) != 1:
        raise odd_answer(where, stmt, response, "one row of one value")
    return rows[0][0]


def count_of(response: Response, where: str, stmt: str) -> int:
    """The count of a ``SELECT count(*)`` answer: an integer >= 0, else ``LoadError``."""
    value = scalar(response, where, stmt)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise odd_answer(where, stmt, response, "one row holding a count >= 0")
    return value


def optional_number(response: Response, where: str, stmt: str) -> int | float | None:
    """The value of an aggregate such as ``max(id)``: a number, or None (no rows in the table).

    Raises ``LoadError`` for any other shape or type.
    """
    value = scalar(response, where, stmt)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise odd_answer(where, stmt, response, "one row holding a number or null")
    return value


def next_id(response: Response, where: str, stmt: str) -> int:
    """The first id of a fresh range from a ``SELECT max(id)`` answer: one past it, 1 if NULL.

    Raises ``LoadError`` for any other shape or type.
    """
    highest = optional_number(response, where, stmt)
    return int(highest) + 1 if highest is not None else 1
