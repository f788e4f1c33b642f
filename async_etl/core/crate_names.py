"""CrateDB's rules for the names of the columns a load creates or fills.

CrateDB refuses, at run time, a column name that "conflicts with the naming scheme of virtual
system columns" (``_id``, ``_score``, ``_version``, ``_docid``, ...): every name starting with
an underscore, answered ``400 4008 InvalidColumnNameException["_x" conflicts with system column
pattern]`` (docs, CREATE TABLE, Naming restrictions:
https://cratedb.com/docs/crate/reference/en/latest/general/ddl/create-table.html#naming-restrictions;
the check is ``ColumnIdent.validateColumnName`` in crate/crate, reported as crate/crate#15161).
Its other column rules (no ``.``, no subscript ``['...']``) cannot be met here: every name a
load writes is a plain identifier (``core.specs.IDENT``), quoted, so reserved words are fine.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SYSTEM_COLUMN_RULE", "column_problem", "first_column_problem"]

SYSTEM_COLUMN_RULE = (
    "CrateDB reserves names starting with '_' for its system columns (_id, _score, _version; "
    "docs: CREATE TABLE, Naming restrictions)"
)
"""Why a column name starting with ``_`` is refused, with the rule's source."""


def column_problem(name: str) -> str | None:
    """Why CrateDB refuses a column called ``name`` (``SYSTEM_COLUMN_RULE``); None: it takes it."""
    return SYSTEM_COLUMN_RULE if name.startswith("_") else None


def first_column_problem(names: Iterable[str]) -> str | None:
    """``column '<name>': <why>`` for the first of ``names`` CrateDB refuses; None when none."""
    for name in names:
        why = column_problem(name)
        if why is not None:
            return f"column {name!r}: {why}"
    return None
