"""Record schemas: columns, their generators, type mapping per dialect and the DDL/DML text.

A ``Schema`` is a frozen, picklable value: it crosses the process-pool boundary inside every
``WorkUnit``.  It is validated when built (every check lives in ``_check_column``), so code that
holds a ``Schema`` may trust its parameters.  ``parse_schema`` reads the TOML text of a schema
file (the caller reads the file: ``sources.synthetic.load_schema``) and turns every problem into
one ``ConfigError`` line naming the file and the column.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal, TypeAlias, TypeVar, cast, get_args

from async_etl.core import tomltext
from async_etl.core.crate_names import first_column_problem
from async_etl.errors import ConfigError

ColumnType: TypeAlias = Literal[
    "bigint", "int", "double", "text", "char", "bool", "timestamptz", "uuid", "json"
]
"""The column types a schema may use.  ``char`` is PostgreSQL's ``character(n)``, n being the
``constant`` generator's ``width``: the server pads the value, so the blanks are not sent."""

COLUMN_TYPES: Final[frozenset[str]] = frozenset(get_args(ColumnType))

T = TypeVar("T")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT4 = (-(2**31), 2**31 - 1)
_INT8 = (-(2**63), 2**63 - 1)
_MAX_TEXT = 10_000_000
_MAX_DAYS = (date(2025, 1, 1) - date(1, 1, 1)).days
"""Timestamps go back from the generators' fixed 2025-01-01 at most to year 1 (Python's min)."""

# generator -> the column types it can fill
GENERATOR_TYPES: Final[Mapping[str, frozenset[str]]] = {
    "sequence": frozenset({"bigint"}),
    "uuid": frozenset({"uuid", "text"}),
    "int": frozenset({"int", "bigint"}),
    "uniform": frozenset({"double"}),
    "choice": frozenset({"text", "int", "bigint", "double"}),
    "text": frozenset({"text"}),
    "name": frozenset({"text"}),
    "city": frozenset({"text"}),
    "email": frozenset({"text"}),
    "timestamp": frozenset({"timestamptz"}),
    "bool": frozenset({"bool"}),
    "json": frozenset({"json"}),
    "constant": frozenset({"text", "char"}),
}

# generator -> the parameters it accepts (besides ``nullable``, which all but sequence accept)
GENERATOR_PARAMS: Final[Mapping[str, frozenset[str]]] = {
    "sequence": frozenset(),
    "uuid": frozenset(),
    "int": frozenset({"min", "max"}),
    "uniform": frozenset({"min", "max", "decimals"}),
    "choice": frozenset({"values"}),
    "text": frozenset({"min_len", "max_len"}),
    "name": frozenset(),
    "city": frozenset(),
    "email": frozenset(),
    "timestamp": frozenset({"days"}),
    "bool": frozenset({"p"}),
    "json": frozenset(),
    "constant": frozenset({"value", "width"}),
}

_PG_TYPES: Final[Mapping[str, str]] = {
    "bigint": "bigint",
    "int": "integer",
    "double": "double precision",
    "text": "text",
    "char": "character",
    "bool": "boolean",
    "timestamptz": "timestamptz",
    "uuid": "uuid",
    "json": "jsonb",
}

_CRATE_TYPES: Final[Mapping[str, str]] = {
    "bigint": "BIGINT",
    "int": "INTEGER",
    "double": "DOUBLE PRECISION",
    "text": "TEXT",
    "char": "TEXT",
    "bool": "BOOLEAN",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
    "uuid": "TEXT",
    "json": "OBJECT(DYNAMIC)",
}


def quote_ident(name: str) -> str:
    """Validate ``[schema.]name`` and double-quote each part.

    Raises ``ConfigError`` naming the identifier when a part is not ``[A-Za-z_][A-Za-z0-9_]*``.
    """
    parts = name.split(".")
    if len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
        raise ConfigError(
            f"invalid identifier {name!r}: use [schema.]name with letters, digits and _"
        )
    return ".".join(f'"{p}"' for p in parts)


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, SQL type, generator and the generator's parameters."""

    name: str
    type: ColumnType
    gen: str
    params: tuple[tuple[str, object], ...] = ()

    def param(self, name: str, default: T) -> T:
        """The parameter ``name``, or ``default`` when the column does not set it."""
        for key, value in self.params:
            if key == name:
                return cast(T, value)
        return default

    @property
    def null_fraction(self) -> float:
        """The share of rows that are NULL (the ``nullable`` parameter, 0 by default)."""
        return float(self.param("nullable", 0.0))


@dataclass(frozen=True, slots=True)
class Schema:
    """An ordered set of columns; the first is always ``id bigint`` filled by ``sequence``.

    Raises ``ConfigError`` on construction when a column or the column set is invalid.
    """

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        if not self.columns:
            raise ConfigError(
                "schema has no columns: an 'id' column with gen 'sequence' is required"
            )
        seen: set[str] = set()
        for index, col in enumerate(self.columns):
            if col.name.lower() in seen:
                raise ConfigError(f"column {col.name!r}: duplicate column name")
            seen.add(col.name.lower())
            _check_column(col, first=index == 0)

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in order."""
        return tuple(col.name for col in self.columns)

    def pg_type(self, col: Column) -> str:
        """The PostgreSQL type of ``col`` (json -> jsonb, char -> character(width), ...)."""
        if col.type == "char":
            return f"character({int(col.param('width', 1))})"
        return _PG_TYPES[col.type]

    def crate_type(self, col: Column) -> str:
        """The CrateDB type of ``col`` (uuid -> TEXT, char -> TEXT, json -> OBJECT(DYNAMIC), ...).

        A ``char`` column's values reach CrateDB blank-padded (``constant_text``), as stored by
        PostgreSQL's ``character(n)``.
        """
        return _CRATE_TYPES[col.type]

    def pg_create_table(self, table: str, *, unlogged: bool) -> str:
        """``CREATE [UNLOGGED] TABLE IF NOT EXISTS``; no key and no index, for load speed.

        Raises ``ConfigError`` when ``table`` is not a valid ``[schema.]name``.
        """
        cols = ", ".join(
            f"{quote_ident(c.name)} {self.pg_type(c)}" + (" NOT NULL" if i == 0 else "")
            for i, c in enumerate(self.columns)
        )
        kind = "UNLOGGED TABLE" if unlogged else "TABLE"
        return f"CREATE {kind} IF NOT EXISTS {quote_ident(table)} ({cols})"

    def pg_create_index(self, table: str) -> str:
        """A BRIN index on ``id`` for a table ``pg_create_table`` makes, named ``<name>_id_brin``.

        ``CREATE INDEX IF NOT EXISTS``, so a second run of it adds no second index.  BRIN keeps
        one summary per block range, cheap to maintain for ascending ids, and lets the
        end-of-run count by id range skip what earlier runs left.  Raises ``ConfigError``
        when ``table`` is not a valid ``[schema.]name``.
        """
        key = self.columns[0].name
        name = quote_ident(f"{table.rpartition('.')[2]}_{key}_brin")
        on = f"{quote_ident(table)} USING brin ({quote_ident(key)})"
        return f"CREATE INDEX IF NOT EXISTS {name} ON {on}"

    def crate_create_table(self, table: str) -> str:
        """``CREATE TABLE IF NOT EXISTS`` with ``id`` as the primary key, 4 shards, 0 replicas.

        Raises ``ConfigError`` when ``table`` is not a valid ``[schema.]name``, or a column's
        name is one CrateDB refuses (``core.crate_names``: one starting with ``_``).
        """
        if (problem := first_column_problem(self.names)) is not None:
            raise ConfigError(f"schema: {problem}; rename it")
        cols = ", ".join(
            f"{quote_ident(c.name)} {self.crate_type(c)}" + (" PRIMARY KEY" if i == 0 else "")
            for i, c in enumerate(self.columns)
        )
        return (
            f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} ({cols}) "
            "CLUSTERED INTO 4 SHARDS WITH (number_of_replicas = 0)"
        )

    def max_row_bytes(self) -> int:
        """An upper bound of one row's encoded size (text at max_len, others at a fixed bound).

        Used to refuse a batch size that could not fit in memory before anything is generated.
        """
        total = 0
        for col in self.columns:
            if col.gen == "text":
                total += 4 * int(col.param("max_len", 40)) + 8  # UTF-8 and JSON escaping slack
            elif col.gen == "constant":
                total += len(json.dumps(constant_text(col)).encode()) + 8  # as escaped as it gets
            elif col.type in ("text", "json"):
                total += 512
            else:
                total += 48
        return total

    def crate_insert(self, table: str) -> str:
        """``INSERT INTO t ("c1", ...) VALUES (?, ...)`` for a ``bulk_args`` request.

        Raises ``ConfigError`` when ``table`` is not a valid ``[schema.]name``.
        """
        cols = ", ".join(quote_ident(c.name) for c in self.columns)
        marks = ", ".join("?" for _ in self.columns)
        return f"INSERT INTO {quote_ident(table)} ({cols}) VALUES ({marks})"


_PG_SAME: Final[Mapping[str, frozenset[str]]] = {
    "timestamptz": frozenset({"timestamptz", "timestamp with time zone"}),
    "text": frozenset({"text", "character varying"}),
}

TableColumn: TypeAlias = tuple[str, str, bool, bool]
"""An existing table's column: name, type as ``format_type`` shows it, NOT NULL, has a default."""


def pg_shape_problems(schema: Schema, found: Sequence[TableColumn]) -> list[str]:
    """Why an existing PostgreSQL table cannot take ``schema``'s rows (empty: it can).

    Each schema column must be there with its very type (the binary COPY sends that type's
    wire form: a ``varchar(3)`` or an ``integer`` refuses every row), and a column the records
    do not fill must allow NULL or have a default.
    """
    have = {name: (typ, not_null, default) for name, typ, not_null, default in found}
    out: list[str] = []
    for col in schema.columns:
        want = schema.pg_type(col)
        if col.name not in have:
            out.append(f"no column {col.name} ({want})")
        elif have[col.name][0] not in _PG_SAME.get(want, frozenset({want})):
            out.append(f"column {col.name} is {have[col.name][0]}, the records' is {want}")
    names = set(schema.names)
    for name, (typ, not_null, default) in have.items():
        if name not in names and not_null and not default:
            out.append(f"column {name} ({typ}) is NOT NULL without a default, and not written")
    return out


def crate_shape_problems(schema: Schema, found: Sequence[tuple[str, str]]) -> list[str]:
    """Why an existing CrateDB table cannot take ``schema``'s rows: missing or retyped columns.

    ``found``: (column name, ``information_schema.columns.data_type``), types compared
    case-blind (``object`` for any object type).
    """
    have = {name: typ.lower() for name, typ in found}
    out: list[str] = []
    for col in schema.columns:
        want = schema.crate_type(col).lower()
        got = have.get(col.name)
        if got is None:
            out.append(f"no column {col.name} ({want})")
        elif got != want and not (want.startswith("object") and got.startswith("object")):
            out.append(f"column {col.name} is {got}, the records' is {want}")
    return out


def constant_text(col: Column) -> str:
    """A ``constant`` column's value, blank-padded to ``width`` characters (as ``char(n)``)."""
    return str(col.param("value", "")).ljust(int(col.param("width", 0)))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(cast(float, value))


def _check_column(col: Column, *, first: bool) -> None:
    """Raise ``ConfigError`` ("column 'x': what is wrong") when ``col`` is invalid."""

    def bad(what: str) -> ConfigError:
        return ConfigError(f"column {col.name!r}: {what}")

    if not _IDENT.match(col.name):
        raise bad("invalid name: use letters, digits and _ (not starting with a digit)")
    if col.type not in COLUMN_TYPES:
        raise bad(f"unknown type {col.type!r} (one of {', '.join(sorted(COLUMN_TYPES))})")
    if col.gen not in GENERATOR_TYPES:
        raise bad(f"unknown generator {col.gen!r} (one of {', '.join(sorted(GENERATOR_TYPES))})")
    if col.type not in GENERATOR_TYPES[col.gen]:
        allowed = ", ".join(sorted(GENERATOR_TYPES[col.gen]))
        raise bad(f"generator {col.gen!r} cannot fill type {col.type!r} (only {allowed})")
    if first != (col.gen == "sequence") or (first and col.name != "id"):
        raise bad("the first column must be 'id' with gen 'sequence', and only it")
    allowed_params = GENERATOR_PARAMS[col.gen] | ({"nullable"} if col.gen != "sequence" else set())
    for key, _ in col.params:
        if key not in allowed_params:
            ok = ", ".join(sorted(allowed_params)) or "none"
            raise bad(f"unknown parameter {key!r} for generator {col.gen!r} (accepted: {ok})")
    _check_params(col, bad)


def _check_params(col: Column, mk: Callable[[str], ConfigError]) -> None:
    """Check the values of the parameters of ``col``; ``mk(msg)`` builds the error."""
    p = dict(col.params)
    for key in ("nullable", "p"):
        if key in p and not (_is_number(p[key]) and 0.0 <= cast(float, p[key]) <= 1.0):
            raise mk(f"{key} must be a number between 0 and 1, got {p[key]!r}")
    if col.gen == "int":
        lo, hi = p.get("min", 0), p.get("max", 1000)
        if not (_is_int(lo) and _is_int(hi)):
            raise mk(f"min and max must be integers, got {lo!r} and {hi!r}")
        limits = _INT4 if col.type == "int" else _INT8
        if not limits[0] <= cast(int, lo) <= cast(int, hi) <= limits[1]:
            raise mk(f"need {limits[0]} <= min <= max <= {limits[1]}, got min={lo} max={hi}")
    elif col.gen == "uniform":
        lo, hi, dec = p.get("min", 0.0), p.get("max", 10000.0), p.get("decimals", 2)
        if not (_is_number(lo) and _is_number(hi)):
            raise mk(f"min and max must be numbers, got {lo!r} and {hi!r}")
        if not math.isfinite(cast(float, hi) - cast(float, lo)):  # numpy's uniform overflows
            raise mk(f"max - min must be a finite number, got min={lo} max={hi}")
        if cast(float, lo) > cast(float, hi):
            raise mk(f"min > max ({lo} > {hi})")
        if not (_is_int(dec) and 0 <= cast(int, dec) <= 15):
            raise mk(f"decimals must be an integer from 0 to 15, got {dec!r}")
    elif col.gen == "choice":
        _check_choice(col, p.get("values"), mk)
    elif col.gen == "text":
        lo, hi = p.get("min_len", 5), p.get("max_len", 40)
        if not (_is_int(lo) and _is_int(hi) and cast(int, lo) >= 0):
            raise mk(f"min_len and max_len must be integers >= 0, got {lo!r} and {hi!r}")
        if cast(int, lo) > cast(int, hi):
            raise mk(f"min_len > max_len ({lo} > {hi})")
        if cast(int, hi) > _MAX_TEXT:
            raise mk(f"max_len must be at most {_MAX_TEXT}, got {hi}")
    elif col.gen == "constant":
        value, width = p.get("value", ""), p.get("width", 0)
        if not (isinstance(value, str) and "\x00" not in value):
            raise mk(f"value must be a string without NUL characters, got {value!r}")
        if not (_is_int(width) and 0 <= cast(int, width) <= _MAX_TEXT):
            raise mk(f"width must be an integer from 0 to {_MAX_TEXT}, got {width!r}")
        if len(value) > _MAX_TEXT:
            raise mk(f"value must be at most {_MAX_TEXT} characters, got {len(value)}")
        if col.type == "char" and cast(int, width) < max(1, len(value)):
            raise mk(
                f"a char column is character(width): width must be at least 1 and at least "
                f"the value's {len(value)} characters, got {width}"
            )
    elif col.gen == "timestamp":
        days = p.get("days", 365)
        if not (_is_number(days) and 0 < cast(float, days) <= _MAX_DAYS):
            raise mk(f"days must be a number above 0 and at most {_MAX_DAYS}, got {days!r}")


def _check_choice(col: Column, values: object, mk: Callable[[str], ConfigError]) -> None:
    if not isinstance(values, tuple | list):
        raise mk("choice needs values = [ ... ]")
    if not values:
        raise mk("choice values must not be empty")
    if col.type == "text":
        ok = all(isinstance(v, str) and "\x00" not in v for v in values)
    elif col.type == "double":
        ok = all(_is_number(v) for v in values)
    else:
        limits = _INT4 if col.type == "int" else _INT8
        ok = all(_is_int(v) and limits[0] <= v <= limits[1] for v in values)
    if not ok:
        raise mk(f"choice values must all be valid {col.type} values")


def _freeze(value: object) -> object:
    """Lists from TOML become tuples so a Column stays hashable."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def column(name: str, type_: ColumnType, gen: str, **params: object) -> Column:
    """Build a ``Column`` with keyword parameters (sorted, lists frozen to tuples)."""
    return Column(name, type_, gen, tuple(sorted((k, _freeze(v)) for k, v in params.items())))


def default_schema(payload_bytes: int = 0) -> Schema:
    """The bench schema: id, uid, name, city, amount, quantity, status, created_at, attrs, active.

    With ``payload_bytes > 0`` a ``payload`` text column of that many ASCII letters is added.
    Raises ``ConfigError`` when ``payload_bytes`` is negative or too large.
    """
    if payload_bytes < 0 or payload_bytes > _MAX_TEXT:
        raise ConfigError(f"payload bytes must be between 0 and {_MAX_TEXT}, got {payload_bytes}")
    cols = [
        column("id", "bigint", "sequence"),
        column("uid", "uuid", "uuid"),
        column("name", "text", "name"),
        column("city", "text", "city"),
        column("amount", "double", "uniform", min=0, max=10000, decimals=2),
        column("quantity", "int", "int", min=1, max=100),
        column(
            "status", "text", "choice", values=["new", "paid", "shipped", "cancelled", "returned"]
        ),
        column("created_at", "timestamptz", "timestamp", days=365),
        column("attrs", "json", "json"),
        column("active", "bool", "bool", p=0.8),
    ]
    if payload_bytes:
        cols.append(column("payload", "text", "text", min_len=payload_bytes, max_len=payload_bytes))
    return Schema(tuple(cols))


def parse_schema(text: str, where: str) -> Schema:
    """A schema from the TOML ``text`` of a file with a ``[columns]`` table (see the README).

    Raises ``ConfigError`` (one line starting with ``where``, naming the column) on any problem.
    """
    try:
        doc = tomltext.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from exc
    table = doc.get("columns")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{where}: missing or empty [columns] table")
    unknown = sorted(set(doc) - {"columns"})
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key {unknown[0]!r} (only [columns])")
    cols: list[Column] = []
    for name, spec in table.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: column {name!r}: expected {{ type = ..., gen = ... }}")
        spec = dict(spec)
        type_, gen = spec.pop("type", None), spec.pop("gen", None)
        if not isinstance(type_, str) or not isinstance(gen, str):
            raise ConfigError(f"{where}: column {name!r}: 'type' and 'gen' are required strings")
        cols.append(column(name, cast(ColumnType, type_), gen, **spec))
    if not any(c.gen == "sequence" for c in cols):
        raise ConfigError(
            f'{where}: missing the id column: id = {{ type = "bigint", gen = "sequence" }}'
        )
    try:
        return Schema(tuple(cols))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc
