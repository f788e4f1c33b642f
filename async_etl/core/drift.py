"""Source schema drift: the source's columns against an existing target table's, before writing.

Theory of operation
-------------------
Preflight reads the source's columns (PostgreSQL type names) and, when the target table
exists, the target's columns as that target names its types.  ``compare`` maps each source
type to the type the target would have been created with (``expect``: the identity for
PostgreSQL, ``crate_type`` / ``oracle_type`` for the others) and sorts the differences:

* **added**: a source column the target lacks;
* **dropped**: a target data column (not one of the SCD columns) the source lacks;
* **retyped**: a column whose target type cannot hold the source's values without changing
  them (``fits`` is False): another family (text vs integer, timestamp vs timestamptz), a
  narrower float, a numeric scale that would round.  Widening is fine (integer into bigint or
  numeric, real into double precision, any text into any text; a value too long or too large
  for the target is refused by the database row by row, never silently changed).  But not
  text or varchar into ``character(n)``: it drops a value's trailing blanks (``'ab '`` comes
  back ``'ab'``), and a type-2 run compares the source's ``'ab '`` with it and sees a change
  every time.  Nor an array of text into an array of ``varchar(n)`` of a smaller (or
  a source without a) length: PostgreSQL cuts an element whose excess is only blanks
  (``'abc  '`` into ``varchar(3)`` is ``'abc'``).  A scalar ``varchar(n)`` fits: a PostgreSQL
  source's SELECT guards its values row by row (``core.pg_casts.length_guards``).

``decide`` turns a drift into one line naming the first column, or, with
``schema_evolution = "add_columns"``, into the columns to add (nullable, the type the target
would have created).  Dropped and retyped columns are refused in every mode: a run never
drops or retypes a target column.  ``add_column_sql`` renders the ``ALTER TABLE`` per target.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from async_etl.core.scd_sql_common import Sql, check_type, quote

__all__ = [
    "ACROSS",
    "PG_DROPPED_COLUMNS_SQL",
    "PG_GENERATED",
    "PG_RELKINDS",
    "PG_RELKIND_WHY",
    "Column",
    "Drift",
    "Evolution",
    "add_column_sql",
    "compare",
    "crate_array_types",
    "crate_fits",
    "crate_listed_type",
    "crate_show_create_sql",
    "crate_text_array",
    "decide",
    "oracle_column_type",
    "oracle_fits",
    "pg_generated_problem",
    "pg_not_a_table",
    "pg_partition_key_problem",
    "pg_partition_key_sql",
    "pg_partitioned_refresh_problem",
    "pg_scd_type_problem",
    "pg_types_to_check",
    "sql_fits",
    "target_columns_sql",
]

Column = tuple[str, str]
"""(column name, type name)."""

Evolution = Literal["none", "add_columns"]

_TEXT = frozenset({"text", "character varying", "character", "varchar", "char", "string"})
_BLANK_PADDED = frozenset({"character", "char"})
"""``character(n)``: blank-padded, and its trailing blanks are no part of its value."""
_INTS = ("smallint", "integer", "bigint")
_ALIAS = {"int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint",
          "bool": "boolean", "float8": "double precision", "float4": "real",
          "timestamptz": "timestamp with time zone", "decimal": "numeric",
          "varchar": "character varying", "char": "character", "bpchar": "character",
          "string": "text"}  # fmt: skip
ACROSS: frozenset[tuple[str, str]] = frozenset(
    {(s, t) for s in _INTS for t in (*_INTS, "numeric") if s != t}
    | {("real", "double precision")}
    | {(s, t) for s in ("text", "character varying", "character")
       for t in ("text", "character varying") if s != t}
)  # fmt: skip
"""The one table of (source, target) pairs of two base types (PostgreSQL names, modifiers
off) whose values may fit across: ``sql_fits`` refuses every other pair of two base types and
decides these by their modifiers (an integer into ``numeric(p,s)`` of a scale >= 0); a binary
COPY casts exactly these (``core.pg_casts.copy_casts``), since their binary formats differ.
A narrowing pair (bigint into integer) fits: the database refuses a value out of range."""
_ORA_TEXT = frozenset({"VARCHAR2", "NVARCHAR2", "CHAR", "NCHAR", "CLOB", "NCLOB"})
_ORA_PADDED = frozenset({"CHAR", "NCHAR"})
"""Oracle's blank-padded text types: a shorter value is stored with trailing blanks added."""
_MODS = re.compile(r"\(([^)]*)\)")


@dataclass(frozen=True, slots=True)
class Drift:
    """How an existing target's columns differ from the source's (each in source order)."""

    added: tuple[Column, ...] = ()
    """Source columns the target lacks: (name, type the target would give it)."""
    dropped: tuple[Column, ...] = ()
    """Target data columns the source lacks: (name, target type)."""
    retyped: tuple[tuple[str, str, str], ...] = ()
    """(name, type the source's values need, the target's type) that does not fit."""
    missing_meta: tuple[str, ...] = ()
    """SCD columns (valid_from ...) the target lacks: a table made for another SCD type."""

    @property
    def empty(self) -> bool:
        """True when the target matches the source."""
        return not (self.added or self.dropped or self.retyped or self.missing_meta)


def _split(type_name: str) -> tuple[str, tuple[str, ...], bool]:
    """(base name, modifiers, is array) of a type name in PostgreSQL or CrateDB spelling."""
    t = " ".join(type_name.strip().lower().split())
    array = False
    if t.endswith("[]"):
        t, array = t[:-2].strip(), True
    elif t.endswith("_array"):
        t, array = t[: -len("_array")], True
    elif t.startswith("array(") and t.endswith(")"):
        t, array = t[len("array(") : -1].strip(), True
    mods = tuple(m.strip() for group in _MODS.findall(t) for m in group.split(","))
    base = " ".join(_MODS.sub(" ", t).split())
    return _ALIAS.get(base, base), mods, array


def _cuts_blanks(smods: tuple[str, ...], tmods: tuple[str, ...]) -> bool:
    """True when ``varchar(n)`` (``tmods``) may cut a value of a text type of ``smods``' length.

    PostgreSQL stores a longer value "unless the excess characters are all spaces, in which
    case the string will be truncated" (docs, Character Types): a source without a length, or
    a longer one.
    """
    return bool(tmods) and (not smods or int(smods[0]) > int(tmods[0]))


def _scale(mods: tuple[str, ...]) -> int | None:
    """The scale of ``numeric(p[,s])`` (None: unconstrained)."""
    if not mods:
        return None
    return int(mods[1]) if len(mods) > 1 else 0


def crate_listed_type(data_type: str, length: int | None) -> str:
    """A CrateDB column's type from ``information_schema.columns``, with a length kept.

    ``character_maximum_length`` is, "if the data type is a character type", "the declared
    length limit; otherwise NULL" (CrateDB docs, Information schema, columns).  A ``VARCHAR(n)``
    column reads ``character varying(n)`` (CrateDB names its data_type ``text``; the stand-in
    ``character varying``), a ``CHAR(n)`` / ``CHARACTER(n)`` one ``character(n)`` (n is 1
    for ``CHARACTER`` alone), so that a load can refuse a value CrateDB would cut or pad
    (``core.exact.text_length_check``).  Other types are kept as read.
    """
    if length is not None:
        base = " ".join(data_type.strip().lower().split())
        if base in ("text", "character varying", "varchar"):
            return f"character varying({int(length)})"
        if base in ("character", "char"):
            return f"character({int(length)})"
    return data_type


_TEXT_ARRAYS = frozenset({"text_array", "character varying_array", "character_array"})
_BOUNDED_ARRAY = re.compile(
    r'^\s*"((?:[^"]|"")+)"\s+ARRAY\(\s*(VARCHAR|CHARACTER)\s*\(\s*(\d+)\s*\)\s*\)',
    re.IGNORECASE | re.MULTILINE,
)


def crate_text_array(data_type: str) -> bool:
    """True for an ``information_schema`` array of text, whose element length it never gives.

    An array's ``character_maximum_length`` is NULL (it is given "if the data type is a
    character type": CrateDB docs, Information schema, columns) and its data_type names the
    element type alone (``text_array`` for ``ARRAY(TEXT)`` and ``ARRAY(VARCHAR(n))`` alike,
    ``character_array`` for ``ARRAY(CHARACTER(n))``), so such a column's definition is read
    with ``SHOW CREATE TABLE`` (``crate_show_create_sql``, ``crate_array_types``).
    """
    return " ".join(data_type.strip().lower().split()) in _TEXT_ARRAYS


def crate_show_create_sql(schema: str, table: str) -> str:
    """``SHOW CREATE TABLE "schema"."table"``: one row, the table's ``CREATE TABLE`` statement.

    CrateDB docs, SHOW CREATE TABLE: it "can be used to dump the schema of an existing
    user-created table".  Raises ``ValueError`` for a name that is not an identifier.
    """
    return f"SHOW CREATE TABLE {quote(f'{schema}.{table}', 'crate')}"


def crate_array_types(ddl: str) -> dict[str, str]:
    """The ``ARRAY(VARCHAR(n))`` / ``ARRAY(CHARACTER(n))`` columns of a ``SHOW CREATE TABLE``.

    ``{name: 'character varying(n)[]' | 'character(n)[]'}``: types ``sql_fits`` refuses a text
    array into (CrateDB would cut an element's blank excess, or pad a shorter one: docs, Data
    types, VARCHAR(n) and CHARACTER(n)), so a load never stores such an element changed.
    """
    found = {}
    for m in _BOUNDED_ARRAY.finditer(ddl):
        kind = "character varying" if m.group(2).lower() == "varchar" else "character"
        found[m.group(1).replace('""', '"')] = f"{kind}({int(m.group(3))})[]"
    return found


def crate_fits(source: str, target: str) -> bool:
    """``sql_fits`` for a CrateDB target, where a text also fits ``character(n)``.

    CrateDB keeps a ``CHARACTER(n)`` value's blanks (a shorter value is stored "right padded
    with whitespaces" and its ``char_length`` is n: CrateDB docs, Data types, CHARACTER(n)),
    so a text of exactly n characters is stored as it is; any other is refused per row
    (``core.exact.text_length_check``).  PostgreSQL's ``character(n)`` drops a value's
    trailing blanks instead, which ``sql_fits`` refuses.
    """
    sb, _, sarr = _split(source)
    tb, tmods, tarr = _split(target)
    if sb in _TEXT and tb in _BLANK_PADDED and tmods and not (sarr or tarr):
        return True
    return sql_fits(source, target)


def sql_fits(source: str, target: str) -> bool:
    """True when a column of type ``target`` holds every ``source`` value unchanged (or refuses it).

    Both in PostgreSQL / CrateDB spelling (``character varying(20)``, ``bigint[]``,
    ``text_array``, ``ARRAY(TEXT)``).
    """
    sb, smods, sarr = _split(source)
    tb, tmods, tarr = _split(target)
    if sarr != tarr or (sb != tb and (sb, tb) not in ACROSS):
        return False
    if sb in _TEXT and tb in _TEXT:  # character(n) keeps no trailing blank of a text value
        if tb in _BLANK_PADDED or sb in _BLANK_PADDED:
            return sb in _BLANK_PADDED
        return not (tarr and _cuts_blanks(smods, tmods))
    if sb in _INTS and tb in _INTS:
        return True
    if sb in _INTS and tb == "numeric":  # numeric(p,s), s >= 0, holds an integer's digits
        return (_scale(tmods) or 0) >= 0
    if sb == "numeric" and tb == "numeric":
        ts, ss = _scale(tmods), _scale(smods)
        return ts is None if ss is None else ts is None or ts >= ss
    if sb == "real" and tb == "double precision":
        return True
    if sb == tb and (sb in _FRACTIONS or sb.startswith("interval ")):  # timestamp(0) rounds
        return _precision(tmods) >= _precision(smods)  # a source's microseconds
    return sb == tb


_FRACTIONS = frozenset({"timestamp with time zone", "timestamp without time zone",
                        "timestamp", "timestamptz", "time without time zone", "time",
                        "time with time zone", "timetz", "interval"})  # fmt: skip
"""Types whose ``(p)`` is the digits of a second they keep (6 when not given); so is every
``interval <fields>`` (``interval second(3)``, ``interval day to second(0)``), whose fields
must be the same on both sides (``interval day`` drops a value's hours)."""


def _precision(mods: tuple[str, ...]) -> int:
    """The fractional-second digits of ``timestamp(p)`` / ``time(p)`` (6: not given)."""
    return int(mods[0]) if mods and mods[0].isdigit() else 6


def oracle_column_type(data_type: str, precision: int | None, scale: int | None,
                       char_length: int | None) -> str:  # fmt: skip
    """An Oracle column as ``oracle_type`` spells it, from ``all_tab_columns``' fields."""
    base = " ".join(_MODS.sub(" ", data_type.upper()).split())
    if base == "NUMBER":
        if precision is None:
            return "NUMBER" if scale is None else f"NUMBER(38,{scale})"
        return f"NUMBER({precision})" if not scale else f"NUMBER({precision},{scale})"
    if base in ("VARCHAR2", "NVARCHAR2", "CHAR", "NCHAR") and char_length:
        return f"{base}({char_length} CHAR)"
    if base.startswith("TIMESTAMP") and scale is not None and scale < 6:  # rounds a source's
        return base.replace("TIMESTAMP", f"TIMESTAMP({scale})", 1)  # microseconds: oracle_fits
    return base


def oracle_fits(source: str, target: str) -> bool:
    """True when an Oracle ``target`` column holds every value of type ``source`` (Oracle).

    Text into any text but ``CHAR`` / ``NCHAR`` (blank-padded: only from one of them), as
    ``sql_fits`` refuses text into PostgreSQL's ``character(n)``.  ``TIMESTAMP(p)`` only from one of
    at most ``p`` fractional-second digits (6 when not given): Oracle rounds a value's
    fractional seconds to the column's precision on insert, where PostgreSQL's ``timestamp(p)``
    is refused the same way by ``sql_fits``.
    """
    sb, tb = (" ".join(_MODS.sub(" ", t.upper()).split()) for t in (source, target))
    if sb in _ORA_TEXT and tb in _ORA_TEXT:  # CHAR(n) pads: 'ab' would come back 'ab '
        return tb not in _ORA_PADDED or sb in _ORA_PADDED
    if sb == "NUMBER" and tb == "NUMBER":
        smods, tmods = (tuple(_MODS.findall(t)[0].split(",")) if "(" in t else ()
                        for t in (source, target))  # fmt: skip
        ts, ss = _scale(tmods), _scale(smods)
        return ts is None if ss is None else ts is None or ts >= ss
    if sb == "BINARY_FLOAT" and tb == "BINARY_DOUBLE":
        return True
    if sb == tb and sb.startswith("TIMESTAMP"):  # TIMESTAMP(0) rounds fractional seconds
        return _ora_precision(target) >= _ora_precision(source)
    return sb == tb


def _ora_precision(type_name: str) -> int:
    """The fractional-second digits of Oracle's ``TIMESTAMP(p) ...`` (6: not given)."""
    mods = _MODS.findall(type_name)
    return int(mods[0]) if mods and mods[0].strip().isdigit() else 6


def compare(
    source: Sequence[Column],
    target: Sequence[Column],
    meta: Collection[str],
    expect: Callable[[str], str],
    fits: Callable[[str, str], bool],
    *,
    fold: bool = False,
) -> Drift:
    """The drift of an existing ``target`` (its columns) from ``source`` (PostgreSQL types).

    ``meta`` names the target's SCD columns (valid_from ...), which the source never has.
    With ``fold`` names match case-insensitively (Oracle, whose target names are upper case);
    otherwise exactly (PostgreSQL and CrateDB keep quoted names as written).
    """

    def key(name: str) -> str:
        return name.lower() if fold else name

    have = {key(n): t for n, t in target}
    names = {key(n) for n, _ in source}
    skip = {key(m) for m in meta}
    added, retyped = [], []
    for name, pg_type in source:
        want = expect(pg_type)
        got = have.get(key(name))
        if got is None:
            added.append((name, want))
        elif not fits(want, got):
            retyped.append((name, want, got))
    dropped = [(n, t) for n, t in target if key(n) not in names and key(n) not in skip]
    missing = tuple(m for m in meta if key(m) not in have)
    return Drift(tuple(added), tuple(dropped), tuple(retyped), missing)


def _more(items: Sequence[Column] | Sequence[tuple[str, str, str]]) -> str:
    rest = [i[0] for i in items[1:]]
    return f" (and {len(rest)} more: {', '.join(rest)})" if rest else ""


def decide(drift: Drift, table: str, evolution: Evolution) -> tuple[str | None, tuple[Column, ...]]:
    """(one-line refusal or None, columns to add) for ``drift`` of target ``table``.

    Missing SCD columns come first, then retyped, dropped and added columns (only added ones
    can evolve).
    """
    if drift.missing_meta:
        names = ", ".join(drift.missing_meta)
        return (f"target {table} lacks the SCD column(s) {names} that [scd] type 2 needs "
                "(a table made for type 1?); use another table, or add them", ())  # fmt: skip
    if drift.retyped:
        name, want, got = drift.retyped[0]
        (gb, gmods, _), (wb, wmods, _) = _split(got), _split(want)
        why = (" (character(n) drops a text value's trailing blanks)"
               if gb in _BLANK_PADDED and wb in _TEXT else
               " (varchar(n) cuts a longer element's trailing blanks: 'abc  ' becomes 'abc')"
               if gb in _TEXT and wb in _TEXT and _cuts_blanks(wmods, gmods) else "")  # fmt: skip
        return (f'column "{name}" of target {table} is {got}, but the source now gives '
                f"{want} values{why}{_more(drift.retyped)}; a run never retypes a column: "
                "change the target (or cast in the source query)", ())  # fmt: skip
    if drift.dropped:
        name, got = drift.dropped[0]
        return (f'target {table} has column "{name}" ({got}) that the source no longer '
                f"has{_more(drift.dropped)}; a run never drops a column: select it again "
                f"(e.g. NULL AS {name}) or drop it from the target", ())  # fmt: skip
    if drift.added and evolution != "add_columns":
        name, want = drift.added[0]
        return (f'the source has column "{name}" ({want}) that target {table} lacks'
                f'{_more(drift.added)}; add it there, or set [target] schema_evolution = '
                '"add_columns"', ())  # fmt: skip
    return None, drift.added


_PG_TSTZ = re.compile(r"timestamp(?:\(\d\))? with time zone")


def pg_scd_type_problem(target: Sequence[Column], valid_from: str, valid_to: str,
                        is_current: str, table: str) -> str | None:  # fmt: skip
    """Why a PostgreSQL type-2 ``target``'s own SCD columns cannot hold a run's values, or None.

    A run binds its as-of time (an instant) to ``valid_from`` / ``valid_to`` and a boolean to
    ``is_current``: a table made beforehand with ``timestamp`` (no time zone) or ``date``
    there failed the first chunk with a driver error.  Missing columns are ``decide``'s.
    """
    have = dict(target)
    for name in (valid_from, valid_to):
        got = have.get(name)
        if got is not None and not _PG_TSTZ.fullmatch(got):
            return (f'column "{name}" of target {table} is {got}; [scd] type 2 writes instants '
                    "there and needs timestamp with time zone: alter it (ALTER TABLE ... ALTER "
                    "COLUMN ... TYPE timestamptz USING ... AT TIME ZONE 'UTC', if it holds "
                    "UTC) or use another table")  # fmt: skip
    got = have.get(is_current)
    if got is not None and got != "boolean":
        return (f'column "{is_current}" of target {table} is {got}; [scd] type 2 needs boolean '
                "there: alter it or use another table")  # fmt: skip
    return None


def add_column_sql(dialect: str, table: str, name: str, type_name: str) -> Sql:
    """``ALTER TABLE`` adding a nullable column ``name`` of ``type_name`` (the target's own type).

    ``dialect`` is ``postgresql``, ``cratedb`` or ``oracle``; raises ``ValueError`` for
    another, or a malformed type.
    """
    kind = check_type(type_name)
    if dialect == "postgresql":
        t, c = quote(table), quote(name)
        return Sql(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} {kind}")
    if dialect == "cratedb":
        t, c = quote(table, "crate"), quote(name, "crate")
        return Sql(f"ALTER TABLE {t} ADD COLUMN {c} {kind}")
    if dialect == "oracle":
        t, c = quote(table, "oracle"), quote(name, "oracle")
        return Sql(f"ALTER TABLE {t} ADD ({c} {kind})")
    raise ValueError(f"no ALTER TABLE for dialect {dialect!r}")


PG_RELKINDS: dict[str, str] = {
    "v": "a view", "m": "a materialized view", "S": "a sequence", "f": "a foreign table",
    "c": "a composite type", "i": "an index", "I": "a partitioned index", "t": "a TOAST table",
}  # fmt: skip
"""``pg_class.relkind`` of the relations a PostgreSQL target may not be (tables: r, p)."""

PG_RELKIND_WHY: dict[str, str] = {
    "f": "a chunk's rows and its checkpoint commit in one transaction of the target database, "
    "and a foreign table's rows commit on its foreign server, outside it, so a chunk retried "
    "or resumed after a failure could load its rows twice or not at all (exactly-once cannot "
    "be kept); point [target] url at the foreign server's database and name the table there",
    "v": "a view holds no rows of its own to load; name the table it reads",
    "m": "a materialized view is filled by REFRESH MATERIALIZED VIEW, not by a load; load the "
    "table it reads, then refresh it",
}  # fmt: skip
"""Why a job cannot load each of some ``PG_RELKINDS`` and what to do instead; the others
(a sequence, an index, ...) hold no rows at all."""


def pg_not_a_table(kind: str) -> str | None:
    """Why a relation of ``pg_class.relkind`` ``kind`` cannot be a job's target; None: a table.

    One clause, ``'is a view, not a table: ...'``: what it is, why a job cannot load it (a
    foreign table: the chunk's commit and its checkpoint would not be one transaction) and
    what to name instead.
    """
    name = PG_RELKINDS.get(kind)
    if name is None:
        return None
    why = PG_RELKIND_WHY.get(kind, "it holds no rows a job can load; name a table")
    return f"is {name}, not a table: {why} (a job creates a missing table itself)"


def pg_column_types_sql(relation: str) -> str:
    """(name, type, relkind, attgenerated) of the columns of ``relation`` (a regclass), in order.

    The type is ``format_type``'s, a domain written as its base type (a domain over a domain
    too), and an array of a domain as the array of that base type (``posint[]`` is
    ``integer[]``): a value of a domain is its base type's (asyncpg decodes it so), a target in
    another database, a CrateDB or an Oracle one has no such domain, and a domain column on one
    side holds the other side's base type unchanged.  Each step resolves one domain (``n``);
    a column's last step is its type.
    """
    return ("WITH RECURSIVE d AS (SELECT attnum, attname, atttypid AS typ, "
            "atttypmod AS mod, c.relkind::text AS kind, attgenerated::text AS gen, "
            "0 AS step FROM pg_attribute "
            f"JOIN pg_class c ON c.oid = attrelid WHERE attrelid = {relation} "
            "AND attnum > 0 AND NOT attisdropped "
            "UNION ALL SELECT d.attnum, d.attname, n.typ, n.mod, d.kind, d.gen, d.step + 1 "
            "FROM d, "
            "LATERAL (SELECT t.typbasetype AS typ, t.typtypmod AS mod FROM pg_type t "
            "WHERE t.oid = d.typ AND t.typtype = 'd' "
            "UNION ALL SELECT b.typarray, e.typtypmod FROM pg_type t "
            "JOIN pg_type e ON e.oid = t.typelem JOIN pg_type b ON b.oid = e.typbasetype "
            "WHERE t.oid = d.typ AND t.typcategory = 'A' AND e.typtype = 'd' "
            "AND b.typarray <> 0) AS n) "
            "SELECT DISTINCT ON (d.attnum) d.attname, format_type(d.typ, d.mod), d.kind, d.gen "
            "FROM d "
            "ORDER BY d.attnum, d.step DESC")  # fmt: skip


def pg_partition_key_sql() -> Sql:
    """The partition key of a partitioned table (bind ``relation``, quoted): one row per column.

    Each row is the column's name, NULL for an expression (``PARTITION BY RANGE (lower(c))``);
    no rows: not a partitioned table.
    """
    return Sql("SELECT a.attname FROM pg_partitioned_table p "
               "CROSS JOIN LATERAL unnest(p.partattrs::int2[]) WITH ORDINALITY AS k(num, ord) "
               "LEFT JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = k.num "
               "AND k.num <> 0 WHERE p.partrelid = to_regclass($1) ORDER BY k.ord",
               ("relation",))  # fmt: skip


def pg_partition_key_problem(key: Sequence[str], partition_key: Sequence[str | None]) -> str | None:
    """Why a job keyed on ``key`` cannot merge into a table partitioned on ``partition_key``.

    ``partition_key``: ``pg_partition_key_sql``'s rows (None for an expression; empty: not
    partitioned).  A type-1 merge's ``ON CONFLICT`` and a type-2 run's one-current-version
    index need a unique index on the key, and a unique index of a partitioned table "must
    include all partitioning columns", an expression never (PostgreSQL docs, CREATE TABLE,
    PARTITION BY; ddl-partitioning limitations): the run failed at its first chunk, after it
    was recorded.  None when every partition key column is a key column.
    """
    if not partition_key or all(c is not None and c in key for c in partition_key):
        return None
    parts = ", ".join("an expression" if c is None else c for c in partition_key)
    cure = ("a table partitioned by an expression can have none: load into another table"
            if None in partition_key else "add the partition key to [source] key")  # fmt: skip
    return (f"the key ({', '.join(key)}) lacks the partition key ({parts}): a merge needs a "
            "unique index on the key, and a partitioned table's unique index must include every "
            f'partition key column; {cure}, or load with mode = "append"')  # fmt: skip


def pg_partitioned_refresh_problem(partition_key: Sequence[str | None]) -> str | None:
    """Why a full refresh cannot replace a table partitioned on ``partition_key``, or None.

    ``partition_key``: ``pg_partition_key_sql``'s rows (empty: not partitioned).  A full refresh
    loads a new table made ``CREATE TABLE new (LIKE target ...)`` (``core.refresh_pg.like_sql``)
    and swaps it in; ``LIKE`` copies the columns and what its ``INCLUDING`` options name, none
    of which is a ``PARTITION BY`` (PostgreSQL docs, CREATE TABLE, LIKE), so the table swapped
    in would be a plain one and the partitions would go with the old table.  Refused in
    preflight, before the run is recorded, so ``check`` says it too.  ``BLOCKERS_SQL``
    (``core.refresh_pg``) lists partitioning as well, and its refusal
    (``core.refresh_pg.blockers_problem``) is also asked in preflight and again by ``prepare``
    for a target changed since, naming the target; preflight asks this one first, so a
    partitioned target is refused with these words, which name its partition key.
    """
    if not partition_key:
        return None
    parts = ", ".join("an expression" if c is None else c for c in partition_key)
    return (f"a full refresh replaces it by a new table made LIKE it, which would not be "
            f"partitioned (by {parts}) nor keep its partitions; load it with mode = \"merge\" "
            'or "append", or empty it yourself first')  # fmt: skip


PG_GENERATED: dict[str, str] = {"s": "STORED", "v": "VIRTUAL"}
"""``pg_attribute.attgenerated`` of a generated column (``GENERATED ALWAYS AS (...) STORED``;
``VIRTUAL`` from PostgreSQL 18); ``''`` for every other column."""


def pg_generated_problem(columns: Sequence[tuple[str, str]]) -> str | None:
    """Why a PostgreSQL target with a generated column cannot be loaded, or None.

    ``columns``: (name, ``attgenerated``) pairs.  PostgreSQL computes such a column and
    refuses any value for it (``COPY``: "Generated columns cannot be used in COPY", ``INSERT``:
    SQLSTATE 428C9), and a job writes every column it loads: the run failed at its first chunk,
    after it was recorded (the report of dimitri/pgcopydb#496, ankane/pgsync#172).
    """
    for name, gen in columns:
        if gen in PG_GENERATED:
            return (f'column "{name}" is generated (GENERATED ALWAYS AS ... {PG_GENERATED[gen]}): '
                    "PostgreSQL computes it and refuses a value for it; load into a table where "
                    "it is a plain column")  # fmt: skip
    return None


_PG_BUILT_IN = frozenset({
    "smallint", "integer", "bigint", "numeric", "real", "double precision", "money", "boolean",
    "text", "character varying", "character", "bpchar", "\"char\"", "name", "bytea", "uuid",
    "json", "jsonb", "xml", "date", "time without time zone", "time with time zone", "interval",
    "timestamp without time zone", "timestamp with time zone", "inet", "cidr", "macaddr",
    "macaddr8", "bit", "bit varying", "oid", "tsvector", "tsquery", "point", "line", "lseg",
    "box", "path", "polygon", "circle", "int4range", "int8range", "numrange", "tsrange",
    "tstzrange", "daterange", "pg_lsn", "jsonpath",
})  # fmt: skip
"""``format_type``'s names (modifiers and ``[]`` taken off) of PostgreSQL's common built-in
types: every database has them, so a new target's column of one needs no question."""


def pg_types_to_check(columns: Sequence[Column]) -> tuple[str, ...]:
    """The distinct types of ``columns`` a PostgreSQL target may lack, in first-seen order.

    Those not built in (``_PG_BUILT_IN``): an enum, a composite, an extension's type, or an
    array of one, as ``format_type`` names it (``pg_user_types`` reads their definitions).
    """
    seen: dict[str, None] = {}
    for _, type_name in columns:
        t = type_name.strip()
        base = " ".join(_MODS.sub(" ", t[:-2] if t.endswith("[]") else t).split())
        if base.lower() not in _PG_BUILT_IN and base not in _PG_BUILT_IN:
            seen.setdefault(t, None)
    return tuple(seen)


def target_columns_sql(dialect: str) -> Sql:
    """The target table's columns in order, as (name, type) rows; no rows: no such table.

    Binds: PostgreSQL ``table`` (``schema.name``); CrateDB ``schema``, ``table`` (rows also
    give ``VARCHAR(n)``'s n, for ``crate_column_type``); Oracle
    ``owner``, ``table`` (upper case), and the rows are ``all_tab_columns`` fields for
    ``oracle_column_type``.  Raises ``ValueError`` for another dialect.
    """
    if dialect == "postgresql":  # each row also names the relation's kind (pg_class.relkind)
        return Sql(pg_column_types_sql("to_regclass($1)"), ("table",))
    if dialect == "cratedb":
        return Sql("SELECT column_name, data_type, character_maximum_length "
                   "FROM information_schema.columns "
                   "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                   ("schema", "table"))  # fmt: skip
    if dialect == "oracle":
        return Sql("SELECT column_name, data_type, data_precision, data_scale, char_length "
                   "FROM all_tab_columns WHERE owner = :1 AND table_name = :2 "
                   "ORDER BY column_id", ("owner", "table"))  # fmt: skip
    raise ValueError(f"no column listing for dialect {dialect!r}")


NEAR_TABLE_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE lower(c.relname) = lower($2) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND (CASE WHEN $1::text IS NULL THEN pg_table_is_visible(c.oid)
            ELSE lower(n.nspname) = lower($1) END)
ORDER BY n.nspname = $1 DESC, c.relname LIMIT 1
"""
"""``(schema, name)`` of a table whose name is ``$1.$2`` but for case (``$1`` NULL: on the
search path); no row when none is."""


def near_table_args(table: str) -> tuple[str | None, str]:
    """``NEAR_TABLE_SQL``'s arguments for a ``[source] table`` as typed (``name`` or ``s.name``)."""
    schema, _, name = table.rpartition(".")
    return schema or None, name


def near_table_hint(table: str, found: tuple[str, str] | None) -> str:
    """``'; a table nz exists (...)'`` when ``found`` is another table than ``table``, else "".

    ``found`` is ``NEAR_TABLE_SQL``'s row; the name is written as ``table`` is (with its schema
    only when ``table`` has one).  Job names are quoted as typed, so ``NZ`` is not ``nz``.
    """
    if found is None:
        return ""
    schema, name = found
    near = f"{schema}.{name}" if "." in table else name
    if near == table:
        return ""
    return f"; a table {near} exists (table names are matched exactly, case included)"


PG_MAX_COLUMNS = 1600
"""Columns a PostgreSQL table can have ("columns per table: 1,600", PostgreSQL docs,
Appendix K. PostgreSQL Limits); dropped columns count too."""


PG_DROPPED_COLUMNS_SQL = Sql(
    "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 "
    "AND attisdropped",
    ("table",),
)
"""How many dropped columns ``table`` (quoted, as for ``to_regclass``) still holds: each keeps
its attribute number, and a column added later takes a new one past them."""


def pg_column_count_problem(
    table: str, source_columns: int, scd_columns: int, dropped: int = 0
) -> str | None:
    """Why a PostgreSQL target cannot hold the job's columns (None when it can).

    ``source_columns`` are the source's, ``scd_columns`` those the target adds (type 2:
    valid_from, valid_to, is_current), ``dropped`` the existing target's dropped columns
    (``PG_DROPPED_COLUMNS_SQL``; pass them only when the run adds columns to it): PostgreSQL
    never reuses a dropped column's number, so they count toward the limit ("dropped columns
    also count", docs, Appendix K. PostgreSQL Limits).  PostgreSQL refuses the
    ``CREATE TABLE`` (or the ``ADD COLUMN``) with TooManyColumnsError only when the run is
    under way.
    """
    total = source_columns + scd_columns + dropped
    if total <= PG_MAX_COLUMNS:
        return None
    extra = f" + {scd_columns} SCD" if scd_columns else ""
    extra += f" + {dropped} dropped, which still count" if dropped else ""
    return (
        f"target {table} would have {total} columns ({source_columns} source{extra}): "
        f"PostgreSQL tables have at most {PG_MAX_COLUMNS} columns (docs, Appendix K. "
        "PostgreSQL Limits); select fewer columns with [source] query"
    )
