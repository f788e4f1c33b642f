"""The statement tree the stand-in's SQL parser produces: frozen, hashable, I/O-free.

Expressions are ``Param`` (a placeholder, 0-based), ``Literal``, ``Column`` (with an optional
subscript path, ``version['number']``), ``Excluded`` (``excluded.c`` in an upsert), ``Func``
(``count(*)``, ``min(x)``, ``cast(x as t)``) and ``Star``.  A ``WHERE`` clause is a tuple of
``Cond`` joined by ``AND``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

from async_etl.testing.crate.coltypes import ColumnType


@dataclass(frozen=True, slots=True)
class Param:
    """A placeholder: ``?`` or ``$n``; ``index`` is 0-based."""

    index: int


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: string, number, boolean or NULL."""

    value: Any


@dataclass(frozen=True, slots=True)
class Column:
    """A column reference, with an optional object subscript path."""

    name: str
    path: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The output column name CrateDB would print (``version['number']``)."""
        return self.name + "".join(f"['{p}']" for p in self.path)


@dataclass(frozen=True, slots=True)
class Excluded:
    """``excluded.<name>`` inside ``ON CONFLICT ... DO UPDATE SET``."""

    name: str


@dataclass(frozen=True, slots=True)
class Star:
    """``*`` in a select list or in ``count(*)``."""


@dataclass(frozen=True, slots=True)
class Func:
    """A function call; ``cast`` keeps its target type name in ``type_name``."""

    name: str
    args: tuple[Expr, ...]
    type_name: str = ""

    @property
    def label(self) -> str:
        """The output column name (``count(*)``, ``min(version['number'])``)."""
        inner = ", ".join(label_of(a) for a in self.args)
        return f"{self.name}({inner})"


Expr: TypeAlias = Param | Literal | Column | Excluded | Star | Func


def label_of(expr: Expr) -> str:
    """The output column name of an expression."""
    if isinstance(expr, Column | Func):
        return expr.label
    if isinstance(expr, Star):
        return "*"
    if isinstance(expr, Literal):
        return "NULL" if expr.value is None else repr(expr.value)
    if isinstance(expr, Param):
        return f"${expr.index + 1}"
    return f"excluded.{expr.name}"


@dataclass(frozen=True, slots=True)
class Cond:
    """``left op right``; ``op`` is a comparison, ``is null``, ``in``, ``like`` or a negation."""

    left: Expr
    op: str
    right: tuple[Expr, ...] = ()


@dataclass(frozen=True, slots=True)
class TableName:
    """A relation name; ``schema`` is None when the statement did not qualify it."""

    schema: str | None
    name: str


@dataclass(frozen=True, slots=True)
class ColumnDef:
    """One column of ``CREATE TABLE``."""

    name: str
    type: ColumnType
    not_null: bool = False
    default: Any = None


@dataclass(frozen=True, slots=True)
class Check:
    """A ``[CONSTRAINT name] CHECK (cond AND ...)``; ``name`` is empty when none was given."""

    name: str
    conds: tuple[Cond, ...]
    column: str = ""


@dataclass(frozen=True, slots=True)
class CreateTable:
    """``CREATE TABLE [IF NOT EXISTS] ...``."""

    table: TableName
    columns: tuple[ColumnDef, ...]
    primary_key: tuple[str, ...]
    if_not_exists: bool = False
    shards: int | None = None
    settings: tuple[tuple[str, Any], ...] = ()
    param_count: int = 0
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True, slots=True)
class DropTable:
    """``DROP TABLE [IF EXISTS] t``."""

    table: TableName
    if_exists: bool = False
    param_count: int = 0


@dataclass(frozen=True, slots=True)
class AlterTable:
    """``ALTER TABLE t SET (k = v, ...)`` (and ``RESET``), or ``ADD [COLUMN] c type``."""

    table: TableName
    settings: tuple[tuple[str, Any], ...]
    add: tuple[ColumnDef, ...] = ()
    param_count: int = 0


@dataclass(frozen=True, slots=True)
class SwapTable:
    """``ALTER CLUSTER SWAP TABLE source TO target [WITH (drop_source = true)]``."""

    source: TableName
    target: TableName
    drop_source: bool = False
    param_count: int = 0


@dataclass(frozen=True, slots=True)
class OnConflict:
    """``ON CONFLICT [(cols)] DO NOTHING`` (no assignments) or ``DO UPDATE SET ...``."""

    target: tuple[str, ...]
    assignments: tuple[tuple[str, Expr], ...] = ()


@dataclass(frozen=True, slots=True)
class Insert:
    """``INSERT INTO t [(cols)] VALUES (...)[, (...)] [ON CONFLICT ...]``."""

    table: TableName
    columns: tuple[str, ...]
    rows: tuple[tuple[Expr, ...], ...]
    on_conflict: OnConflict | None = None
    param_count: int = 0


@dataclass(frozen=True, slots=True)
class Update:
    """``UPDATE t SET c = e, ... [WHERE ...]``."""

    table: TableName
    assignments: tuple[tuple[str, Expr], ...]
    where: tuple[Cond, ...] = ()
    param_count: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """``DELETE FROM t [WHERE ...]``."""

    table: TableName
    where: tuple[Cond, ...] = ()
    param_count: int = 0


@dataclass(frozen=True, slots=True)
class SelectItem:
    """One output column: an expression and its optional alias."""

    expr: Expr
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class Select:
    """``SELECT items [FROM t] [WHERE] [ORDER BY] [LIMIT]`` (no joins, no grouping)."""

    items: tuple[SelectItem, ...]
    table: TableName | None = None
    where: tuple[Cond, ...] = ()
    order_by: tuple[tuple[Expr, bool], ...] = field(default=())
    limit: Expr | None = None
    param_count: int = 0


@dataclass(frozen=True, slots=True)
class Refresh:
    """``REFRESH TABLE t[, u]``."""

    tables: tuple[TableName, ...]
    param_count: int = 0


@dataclass(frozen=True, slots=True)
class ShowCreate:
    """``SHOW CREATE TABLE t``."""

    table: TableName
    param_count: int = 0


@dataclass(frozen=True, slots=True)
class Noop:
    """``BEGIN``, ``COMMIT``, ``START TRANSACTION``, ``SET ...``: accepted and ignored."""

    kind: str
    param_count: int = 0


Statement: TypeAlias = (
    CreateTable
    | DropTable
    | AlterTable
    | SwapTable
    | Insert
    | Update
    | Delete
    | Select
    | Refresh
    | ShowCreate
    | Noop
)
WRITES = (Insert, Update, Delete)
"""Statement kinds allowed with ``bulk_args``."""
