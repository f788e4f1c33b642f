"""INSERT / UPDATE / DELETE plans for the stand-in: analyse once per request, apply per item.

Two phases, as in CrateDB.  ``analyse`` binds and casts every item's values (or, for UPDATE /
DELETE, compiles the filter); any failure there is an analysis error that fails the whole
request before anything is written.  ``apply`` then runs one item and returns
``(rowcount, error)`` where ``error`` is a per-item runtime failure ``(code, message)``
(duplicate key, NOT NULL, CHECK) that the caller reports as ``rowcount: -2``.  Each row write is
atomic; in a multi-row ``VALUES`` item the rows that did not fail stay written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from async_etl.testing.crate import protocol
from async_etl.testing.crate.coltypes import Caster, CastError
from async_etl.testing.crate.query import bind, cast_or_fail, predicate
from async_etl.testing.crate.sqlast import Column, Cond, Excluded, Expr, Insert, Param, Update
from async_etl.testing.crate.store import Key, Table
from async_etl.testing.crate.systables import Relation

ItemError: TypeAlias = tuple[int, str]
Assign: TypeAlias = Callable[[list[Any], list[Any] | None, list[Any]], Any]
"""``(current_row, excluded_row, args) -> new value`` for one ``SET`` target."""


def _relation(table: Table) -> Relation:
    return Relation(tuple(c.name for c in table.columns), tuple(c.type for c in table.columns), [])


def _position(table: Table, name: str) -> int:
    pos = table.index.get(name)
    if pos is None:
        raise protocol.column_unknown(name, table.fqn)
    return pos


def null_violation(table: Table, row: list[Any]) -> ItemError | None:
    """The per-item error for a NULL primary key or NOT NULL column, if any."""
    if all(row[pos] is not None for pos in table.required):
        return None
    for pos in table.pk:
        if row[pos] is None:
            name = table.columns[pos].name
            return 4003, protocol.validation_error(
                name, "Primary key value must not be NULL"
            ).message
    for pos, col in enumerate(table.columns):
        if col.not_null and row[pos] is None:
            error = protocol.validation_error(col.name, f"Cannot insert null into '{col.name}'")
            return error.code, error.message
    return None


def _check_tests(
    table: Table,
) -> list[tuple[str, Callable[[list[Any]], bool], tuple[int, ...]]]:
    if table.check_tests is None:
        tests = []
        for n, check in enumerate(table.checks, 1):
            reads = tuple(
                dict.fromkeys(
                    _position(table, e.name)
                    for cond in check.conds
                    for e in (cond.left, *cond.right)
                    if isinstance(e, Column)
                )
            )
            suffix = f"{check.column}_check" if check.column else f"check_{n}"
            name = check.name or f"{table.name}_{suffix}"
            tests.append((name, predicate(check.conds, _relation(table), [], table.fqn), reads))
        table.check_tests = tests
    return table.check_tests


def check_violation(table: Table, row: list[Any]) -> ItemError | None:
    """The per-item error for a failed CHECK constraint, if any.

    As in SQL, a check whose columns hold NULL passes.  CrateDB answers
    ``Failed CONSTRAINT <name> CHECK (...) for values: [...]``; the stand-in names the
    constraint and the values (code 4000, as CrateDB reports an ``IllegalArgumentException``).
    """
    if not table.checks:
        return None
    for name, test, reads in _check_tests(table):
        if any(row[pos] is None for pos in reads) or test(row):
            continue
        values = ", ".join(repr(v) for v in row)
        return 4000, f"IllegalArgumentException[Failed CONSTRAINT {name} for values: [{values}]]"
    return None


def compile_assignments(
    table: Table, pairs: tuple[tuple[str, Expr], ...]
) -> list[tuple[int, Assign]]:
    """``SET`` targets as ``(position, value function)``; refuses primary-key columns."""
    out: list[tuple[int, Assign]] = []
    for name, expr in pairs:
        pos = _position(table, name)
        if pos in table.pk:
            raise protocol.validation_error(name, "Updating a primary key is not supported")
        out.append((pos, _assigner(table, pos, expr)))
    return out


def _assigner(table: Table, pos: int, expr: Expr) -> Assign:
    if isinstance(expr, Excluded | Column):
        if isinstance(expr, Column) and expr.path:
            raise protocol.parse_error(f"unsupported SET value {expr.label}")
        src = _position(table, expr.name)
        from_excluded = isinstance(expr, Excluded)

        def copy(cur: list[Any], exc: list[Any] | None, args: list[Any]) -> Any:
            row = exc if from_excluded else cur
            return row[src] if row is not None else None

        return copy
    caster = table.casters[pos]

    def constant(cur: list[Any], exc: list[Any] | None, args: list[Any]) -> Any:
        return cast_or_fail(caster, bind(expr, args))

    return constant


def check_assignments(table: Table, assigns: list[tuple[int, Assign]], args: list[Any]) -> None:
    """Cast the constant ``SET`` values of one item now, so a bad value fails the request."""
    blank = [None] * len(table.columns)
    for _, value in assigns:
        value(blank, blank, args)


def _assign(
    row: list[Any], assigns: list[tuple[int, Assign]], exc: Any, args: list[Any]
) -> list[Any]:
    new = row.copy()
    for pos, value in assigns:
        new[pos] = value(row, exc, args)
    return new


@dataclass(slots=True)
class InsertPlan:
    """A resolved ``INSERT``: target positions, casters, defaults and conflict handling."""

    table: Table
    stmt: Insert
    positions: list[int]
    template: list[Any]
    fast: bool
    on_update: list[tuple[int, Assign]] | None
    casters: list[Caster]

    @classmethod
    def build(cls, table: Table, stmt: Insert) -> InsertPlan:
        """Resolve ``stmt`` against ``table``; raises ``CrateError`` on analysis errors."""
        names = stmt.columns or tuple(c.name for c in table.columns)
        positions = [_position(table, n) for n in names]
        for exprs in stmt.rows:
            if len(exprs) != len(positions):
                raise protocol.parse_error(
                    f"INSERT has {len(positions)} target columns but {len(exprs)} values"
                )
        width = len(positions)
        fast = len(stmt.rows) == 1 and stmt.rows[0] == tuple(Param(i) for i in range(width))
        on_update = None
        oc = stmt.on_conflict
        if oc is not None:
            if oc.target and tuple(oc.target) != table.pk_names:
                raise protocol.parse_error(
                    f"Conflict target ({', '.join(oc.target)}) did not match the primary key "
                    f"columns ({', '.join(table.pk_names)})"
                )
            if oc.assignments:
                on_update = compile_assignments(table, oc.assignments)
        template = [c.default for c in table.columns]
        casters = [table.casters[p] for p in positions]
        return cls(table, stmt, positions, template, fast, on_update, casters)

    def analyse(self, args: list[Any]) -> list[list[Any]]:
        """Bind and cast one item's rows; raises ``CrateError`` 400 / 4000 when a value fails."""
        casters = self.casters
        rows: list[list[Any]] = []
        try:
            for exprs in self.stmt.rows:
                values = args if self.fast else [bind(e, args) for e in exprs]
                row = self.template.copy()
                for pos, cast, value in zip(self.positions, casters, values, strict=False):
                    row[pos] = cast(value)
                rows.append(row)
            if self.on_update is not None:
                check_assignments(self.table, self.on_update, args)
        except CastError as exc:
            raise protocol.analysis_error(str(exc)) from None
        return rows

    def apply(self, rows: list[list[Any]], args: list[Any]) -> tuple[int, ItemError | None]:
        """Write one item's rows: ``(rows affected, first per-row error or None)``."""
        table, count, error = self.table, 0, None
        for row in rows:
            bad = null_violation(table, row) or check_violation(table, row)
            if bad is not None:
                error = error or bad
                continue
            key = table.key_of(row)
            existing = table.get(key) if table.pk else None
            if existing is None:
                table.put(key, row)
                count += 1
            elif self.stmt.on_conflict is None:
                error = error or (4091, protocol.DUPLICATE_KEY_MESSAGE)
            elif self.on_update is not None:
                table.put(key, _assign(existing, self.on_update, row, args))
                count += 1
        return count, error


def pk_lookup(table: Table, where: tuple[Cond, ...], args: list[Any]) -> Key | None:
    """The primary key when ``where`` pins every PK column with ``=``; else None."""
    if not table.pk:
        return None
    pinned: dict[str, Expr] = {}
    for cond in where:
        left, right = cond.left, cond.right
        if (
            cond.op == "="
            and isinstance(left, Column)
            and not left.path
            and not isinstance(right[0], Column | Excluded)
        ):
            pinned.setdefault(left.name, right[0])
    if not all(name in pinned for name in table.pk_names):
        return None
    return tuple(
        cast_or_fail(table.casters[table.index[n]], bind(pinned[n], args)) for n in table.pk_names
    )


def matching_keys(table: Table, where: tuple[Cond, ...], args: list[Any]) -> list[Key]:
    """Keys of the rows ``where`` selects: by exact PK at once, otherwise refreshed rows only."""
    test = predicate(where, _relation(table), args, table.fqn)
    key = pk_lookup(table, where, args)
    if key is not None:
        row = table.get(key)
        return [key] if row is not None and test(row) else []
    return [k for k, row in table.visible_rows() if test(row)]


@dataclass(slots=True)
class UpdatePlan:
    """A resolved ``UPDATE``."""

    table: Table
    stmt: Update
    assigns: list[tuple[int, Assign]]

    @classmethod
    def build(cls, table: Table, stmt: Update) -> UpdatePlan:
        """Resolve ``stmt``; raises ``CrateError`` for unknown columns or a PK target."""
        predicate(stmt.where, _relation(table), [None] * stmt.param_count, table.fqn)
        return cls(table, stmt, compile_assignments(table, stmt.assignments))

    def analyse(self, args: list[Any]) -> None:
        """Check one item's values; raises ``CrateError`` 400 / 4000 when one cannot be cast."""
        check_assignments(self.table, self.assigns, args)
        predicate(self.stmt.where, _relation(self.table), args, self.table.fqn)

    def apply(self, args: list[Any]) -> tuple[int, ItemError | None]:
        """Update the matching rows for one item."""
        count, error = 0, None
        for key in matching_keys(self.table, self.stmt.where, args):
            current = self.table.get(key)
            if current is None:
                continue
            new = _assign(current, self.assigns, None, args)
            bad = null_violation(self.table, new) or check_violation(self.table, new)
            if bad is not None:
                error = error or bad
                continue
            self.table.put(key, new)
            count += 1
        return count, error


def delete_rows(table: Table, where: tuple[Cond, ...], args: list[Any]) -> int:
    """Delete the rows ``where`` selects; the number deleted."""
    return sum(1 for key in matching_keys(table, where, args) if table.delete(key))
