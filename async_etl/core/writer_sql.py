"""The SQL a writer runs on its table: create it from declared columns, read its columns back.

Pure strings.  Identifiers are validated and quoted (``quote_ident``); a declared type is SQL
text of the target's dialect (``"bigint"``, ``"text"``, ``"timestamp with time zone"``, ...),
checked to be a plain type name so that it cannot carry a second statement.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

from async_etl.core.schema import quote_ident
from async_etl.errors import ConfigError

_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+(\s*,\s*\d+)?\s*\))?(\s*\[\])*$")


def _type(column: str, sql_type: str) -> str:
    if not _TYPE.match(sql_type.strip()):
        raise ConfigError(f"columns[{column!r}]: {sql_type!r} is not a column type")
    return sql_type.strip()


def create_table(table: str, columns: Mapping[str, str], primary_key: Sequence[str]) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with ``columns`` (name -> SQL type) and the primary key.

    Raises ``ConfigError`` for a bad identifier or type, or a key column that is not declared.
    """
    if not columns:
        raise ConfigError("columns: declare at least one column")
    missing = [k for k in primary_key if k not in columns]
    if missing:
        raise ConfigError(f"primary_key: {missing[0]!r} is not a declared column")
    body = [f"{quote_ident(name)} {_type(name, t)}" for name, t in columns.items()]
    if primary_key:
        body.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in primary_key)})")
    return f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} ({', '.join(body)})"


def key_problem(where: str, table: str, given: Sequence[str], found: Sequence[str]) -> str | None:
    """One line when ``primary_key=`` (``given``) is not the existing table's key (``found``).

    ``CREATE TABLE IF NOT EXISTS`` applies no key to a table that exists, so a key other than
    the table's would be silently ignored.  Columns compare as a set (their order in the key
    does not change which rows are duplicates); None when ``given`` is empty or the same key.
    """
    if not given or set(given) == set(found):
        return None
    has = f"primary key {list(found)!r}" if found else "no primary key"
    return f"{where}: primary_key={list(given)!r}, but table {table!r} has {has}"


_UNKNOWN_TYPE = re.compile(
    r'Cannot find data type: ([A-Za-z0-9_ ]+)|type "([A-Za-z0-9_ ]+)" does not exist', re.IGNORECASE
)


def create_refused(where: str, table: str, columns: Mapping[str, str], message: str) -> str:
    """One line for a ``CREATE TABLE`` the server refused (``message``: its error).

    Names the declared column whose type the server does not know (CrateDB: ``Cannot find
    data type: json``, PostgreSQL: ``type "jsonx" does not exist``) when the message says
    which type, else repeats the server's reason.
    """
    found = _UNKNOWN_TYPE.search(message)
    if found:
        unknown = (found.group(1) or found.group(2)).strip().lower()
        for name, sql_type in columns.items():
            base = sql_type.strip().lower().split("(")[0].removesuffix("[]").strip()
            if base == unknown:
                return (
                    f"{where}: columns[{name!r}]: {sql_type.strip()!r} is not a type the "
                    f"server knows (it refused to create table {table!r})"
                )
    return f"{where}: cannot create table {table!r}: {message}"


PG_DECLARED = """SELECT d.n, to_regtype(d.t) IS NULL, format_type(a.atttypid, a.atttypmod),
  a.atttypid IS DISTINCT FROM to_regtype(d.t)::oid
FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS d(n, t, i)
LEFT JOIN pg_attribute a ON a.attrelid = to_regclass($1) AND a.attname = d.n AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY d.i"""
"""Each declared column against the server: (name, type unknown, the table's type or NULL,
the type differs); $1 = quoted table, $2 / $3 = names / ``lookup_type`` of their types.
``to_regtype`` raises, instead of returning NULL, on a name that is no type's syntax."""

_SERIAL = {"smallserial": "smallint", "serial2": "smallint", "serial": "integer",
           "serial4": "integer", "bigserial": "bigint", "serial8": "bigint"}  # fmt: skip
"""The serial pseudo-types, which only ``CREATE TABLE`` knows, as the column type they make."""


def lookup_type(sql_type: str) -> str:
    """A declared PostgreSQL type as ``to_regtype`` can resolve it (``serial`` -> integer)."""
    text = sql_type.strip()
    return _SERIAL.get(text.lower(), text)


def declared_problem(where: str, table: str, name: str, sql_type: str, unknown: bool,
                     has: str | None, differs: bool) -> str | None:  # fmt: skip
    """One line refusing a declared column (a ``PG_DECLARED`` row), or None when it stands.

    Refused: a type the server does not know, whether or not the table exists, and a type
    other than the existing table's column has (the type itself: a length or precision
    modifier is not compared; ``int`` and ``integer`` are one type).  A declared column the
    table lacks is ``pick_columns``' to refuse.
    """
    if unknown:
        return f"{where}: columns[{name!r}]: {sql_type.strip()!r} is not a type the server knows"
    if has is not None and differs:
        return (f"{where}: columns[{name!r}]: declared {sql_type.strip()!r}, but table "
                f"{table!r} has it as {has!r}")  # fmt: skip
    return None


_CRATE_ALIASES = {
    "string": "text", "varchar": "text", "character varying": "text", "character": "text",
    "char": "text", "long": "bigint", "int8": "bigint", "int": "integer", "int4": "integer",
    "short": "smallint", "int2": "smallint", "double": "double precision",
    "float8": "double precision", "float": "real", "float4": "real", "bool": "boolean",
    "decimal": "numeric", "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
}  # fmt: skip
"""CrateDB's other names of a type, as ``information_schema`` names it (``TIMESTAMP`` alone is
without time zone; a length-limited or fixed-length string is compared as text)."""


def crate_type_key(sql_type: str) -> str:
    """A CrateDB type, declared or read from ``information_schema``, as one comparable name.

    Aliases fold (``long`` / ``int8`` -> ``bigint``), a length or precision modifier is dropped,
    an object's definition too, and ``t[]`` / ``array(t)`` / ``t_array`` read alike.
    """
    text = " ".join(sql_type.strip().lower().split())
    arrays = 0
    while True:
        if text.endswith("[]"):
            text = text[:-2].rstrip()
        elif text.startswith("array(") and text.endswith(")"):
            text = text[len("array(") : -1].strip()
        elif text.endswith("_array"):
            text = text[: -len("_array")]
        else:
            break
        arrays += 1
    if text.startswith("object"):
        text = "object"
    text = re.sub(r"\s*\(.*\)$", "", text)  # varchar(10), numeric(10, 2)
    return _CRATE_ALIASES.get(text, text) + "_array" * arrays


def crate_declared_problem(
    where: str, table: str, declared: Mapping[str, str], existing: Mapping[str, str]
) -> str | None:
    """One line refusing the first declared column whose type the existing table's differs from.

    ``existing``: name -> ``information_schema`` type; None when no declared type differs.
    Compared by ``crate_type_key``; a declared column the table lacks is ``pick_columns``' to
    refuse.
    """
    for name, sql_type in declared.items():
        has = existing.get(name)
        if has is not None and crate_type_key(sql_type) != crate_type_key(has):
            return declared_problem(where, table, name, sql_type, False, has, True)
    return None


PG_COLUMNS = """SELECT a.attname, t.typname, NOT a.attnotnull, a.atttypmod, a.attgenerated <> '',
a.attidentity = 'a', a.atthasdef OR a.attidentity <> ''
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum"""
"""A PostgreSQL table's columns: (name, typname, nullable, typmod, generated, identity always,
has a default or an identity); $1 = quoted table.

A generated column (``GENERATED ALWAYS AS (...) STORED``) takes no value: the writer leaves it
out, and ``pick_columns`` refuses it by that name when ``columns=`` names it.  An identity
column ``GENERATED ALWAYS`` is left out of every column (``pick_columns``' ``always``): the
server numbers it; named in ``columns=`` it is filled (COPY takes its value).
"""

PG_PRIMARY_KEY = """SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = to_regclass($1) AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)"""
"""A PostgreSQL table's primary key columns in key order (none: no key); $1 = quoted table."""

CRATE_COLUMNS = (
    "SELECT column_name, data_type, character_maximum_length FROM information_schema.columns "
    "WHERE table_schema = ? AND table_name = ? AND is_generated = 'NEVER' "
    "ORDER BY ordinal_position"
)
"""A CrateDB table's columns in order: (name, type, ``VARCHAR(n)``'s n or NULL) rows (args:
schema, table); sub-columns contain ``[``.  ``drift.crate_listed_type`` makes one type of the
last two, as a job's target listing (``drift.target_columns_sql``) does."""

CRATE_PRIMARY_KEY = (
    "SELECT column_name FROM information_schema.key_column_usage "
    "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position"
)
"""A CrateDB table's primary key columns in order (args: schema, table)."""


def crate_insert(table: str, columns: Sequence[str]) -> str:
    """``INSERT INTO t (c1, ...) VALUES (?, ...)`` for a bulk request."""
    cols = ", ".join(quote_ident(c) for c in columns)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {quote_ident(table)} ({cols}) VALUES ({marks})"


def pick_columns(
    table: str,
    present: Sequence[str],
    wanted: Sequence[str] | None,
    generated: Collection[str] = (),
    always: Collection[str] = (),
) -> tuple[str, ...]:
    """The columns a writer fills: ``wanted`` (each must exist) or every column ``present``.

    ``generated``: the table's generated columns, not in ``present`` (the server computes
    them).  ``always``: columns of ``present`` left out of every column (PostgreSQL's
    ``GENERATED ALWAYS AS IDENTITY``: the server numbers them), taken only when wanted.
    Raises ``ConfigError`` naming the table when it has no columns (it does not
    exist), a wanted column is generated, or one is missing.
    """
    if not present and not generated:
        raise ConfigError(f"table {table!r} does not exist (declare columns= to create it)")
    if wanted is None:
        return tuple(c for c in present if c not in always)
    for name in wanted:
        if name in generated:
            raise ConfigError(
                f"table {table!r}: column {name!r} is generated (GENERATED ALWAYS AS ... "
                "STORED): PostgreSQL computes it and refuses a value for it; leave it out "
                "of columns="
            )
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ConfigError(f"table {table!r} has no column {missing[0]!r}")
    return tuple(wanted)
