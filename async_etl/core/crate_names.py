"""CrateDB's rules for the names of the tables, schemas and columns a load creates or fills.

CrateDB refuses, at run time, a column name that "conflicts with the naming scheme of virtual
system columns" (``_id``, ``_score``, ``_version``, ``_docid``, ...): every name starting with
an underscore, answered ``400 4008 InvalidColumnNameException["_x" conflicts with system column
pattern]`` (docs, CREATE TABLE, Naming restrictions:
https://cratedb.com/docs/crate/reference/en/latest/general/ddl/create-table.html#naming-restrictions;
the check is ``ColumnIdent.validateColumnName`` in crate/crate, reported as crate/crate#15161).
Its other column rules (no ``.``, no subscript ``['...']``) cannot be met here: every name a
load writes is a plain identifier (``core.specs.IDENT``), quoted, so reserved words are fine.

Table and schema names (the same docs section): they "may not contain upper case letters",
"may not *start* with an underscore" and "should not exceed 255 bytes when encoded with utf-8"
(the optionally schema-qualified name); ``blob``, ``information_schema`` and ``sys`` "are
reserved and may not be used" as schemas (docs, CREATE TABLE, Schemas).  Every name here is
double-quoted, so an upper-case one is not folded to lower case as an unquoted one would be:
CrateDB would refuse to create it (and never find a table of that name).  Their character rules
(no backslash, ``/ * ? " < > |``, whitespace, ``,``, ``#``, ``.``) are met by
``core.specs.IDENT``.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "NAMING_RULES",
    "RESERVED_SCHEMAS",
    "SYSTEM_COLUMN_RULE",
    "column_problem",
    "first_column_problem",
    "table_problem",
]

NAMING_RULES = "docs: CREATE TABLE, Naming restrictions"
"""Where CrateDB states its rules for table, schema and column names."""

RESERVED_SCHEMAS = frozenset({"blob", "information_schema", "sys"})
"""Schema names CrateDB reserves (docs, CREATE TABLE, Schemas)."""

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


def table_problem(table: str) -> str | None:
    """Why CrateDB refuses a table called ``table`` (``[schema.]name``); None: it takes it.

    ``"table name 'X': ..."`` or ``"schema name 'x': ..."``, naming the rule and its source
    (``NAMING_RULES``) and, for upper case, the lower-case name to use instead.
    """
    schema, _, name = table.rpartition(".")
    for kind, part in (("schema", schema), ("table", name)):
        if part.startswith("_"):
            return (f"{kind} name {part!r} starts with '_', which CrateDB refuses for table "
                    f"and schema names ({NAMING_RULES})")  # fmt: skip
        if part != part.lower():
            return (f"{kind} name {part!r} has upper case letters, which CrateDB refuses in "
                    f"table and schema names ({NAMING_RULES}); use {part.lower()!r}")  # fmt: skip
    if schema in RESERVED_SCHEMAS:
        return (f"schema name {schema!r} is reserved by CrateDB (blob, information_schema, sys; "
                "docs: CREATE TABLE, Schemas)")  # fmt: skip
    if len(table.encode()) > 255:
        return f"{table!r} is longer than the 255 bytes CrateDB allows ({NAMING_RULES})"
    return None
