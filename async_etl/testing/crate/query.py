"""Expression evaluation, ``WHERE`` filters and ``SELECT`` over a ``Relation``.

Pure.  Expressions are compiled once per request into small getter closures over a row list,
so a scan does no per-row dispatch on the tree.  Right-hand operands of a comparison are cast
with the left column's type (``ts >= '2024-01-01'`` compares epoch milliseconds); a value that
cannot be cast is an analysis error (400 / 4000).  NULL compares false, as in SQL.
"""

from __future__ import annotations

import operator
import re
from array import array
from collections.abc import Callable, Iterable
from typing import Any

from async_etl.testing.crate import protocol
from async_etl.testing.crate.coltypes import TEXT, Caster, CastError, ColumnType, infer_type_id
from async_etl.testing.crate.sqlast import (
    Column,
    Cond,
    Excluded,
    Expr,
    Func,
    Literal,
    Param,
    Select,
    Star,
    label_of,
)
from async_etl.testing.crate.systables import Relation

Getter = Callable[[list[Any]], Any]
Predicate = Callable[[list[Any]], bool]
_AGGREGATES = frozenset({"count", "min", "max", "sum", "avg"})
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def bind(expr: Expr, args: list[Any]) -> Any:
    """The value of a constant expression (literal or placeholder)."""
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Param):
        if expr.index >= len(args):
            raise protocol.parse_error(
                f"The query contains a parameter placeholder ${expr.index + 1}, "
                f"but there are only {len(args)} parameter values"
            )
        return args[expr.index]
    raise protocol.parse_error(f"expected a value, got {label_of(expr)}")


def cast_or_fail(caster: Caster, value: Any) -> Any:
    """Cast one value; raises ``CrateError`` 400 / 4000 when it cannot be cast."""
    try:
        return caster(value)
    except CastError as exc:
        raise protocol.analysis_error(str(exc)) from None


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def getter(expr: Expr, rel: Relation, args: list[Any], fqn: str) -> Getter:
    """Compile ``expr`` into a function of a row of ``rel``."""
    if isinstance(expr, Column):
        try:
            idx = rel.columns.index(expr.name)
        except ValueError:
            raise protocol.column_unknown(expr.label, fqn) from None
        if not expr.path:
            return operator.itemgetter(idx)
        path = expr.path

        def walk(row: list[Any]) -> Any:
            value = row[idx]
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            return value

        return walk
    if isinstance(expr, Func) and expr.name == "cast" and len(expr.args) == 1:
        inner = getter(expr.args[0], rel, args, fqn)
        caster = _text if expr.type_name == "text" else ColumnType(expr.type_name).caster()
        return lambda row: cast_or_fail(caster, inner(row))
    if isinstance(expr, Excluded | Star | Func):
        raise protocol.parse_error(f"unsupported expression {label_of(expr)}")
    value = bind(expr, args)
    return lambda row: value


def _like(pattern: Any) -> re.Pattern[str]:
    text = "".join(
        ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in str(pattern)
    )
    return re.compile(text, re.DOTALL)


def predicate(conds: tuple[Cond, ...], rel: Relation, args: list[Any], fqn: str) -> Predicate:
    """Compile an ``AND`` of conditions into one row predicate."""
    tests: list[Predicate] = [_condition(c, rel, args, fqn) for c in conds]
    if not tests:
        return lambda row: True
    if len(tests) == 1:
        return tests[0]
    return lambda row: all(t(row) for t in tests)


def _condition(cond: Cond, rel: Relation, args: list[Any], fqn: str) -> Predicate:
    left = getter(cond.left, rel, args, fqn)
    caster: Caster = _text
    if isinstance(cond.left, Column) and not cond.left.path:
        caster = rel.types[rel.columns.index(cond.left.name)].caster()
    if cond.op == "is null":
        return lambda row: left(row) is None
    if cond.op == "is not null":
        return lambda row: left(row) is not None
    if cond.op.endswith("like"):
        regex = _like(bind(cond.right[0], args))
        negate = cond.op.startswith("not")
        return lambda row: (
            (v := left(row)) is not None
            and (regex.fullmatch(str(v)) is None if negate else regex.fullmatch(str(v)) is not None)
        )
    if cond.op.endswith("in"):
        values = {cast_or_fail(caster, bind(e, args)) for e in cond.right}
        negate = cond.op.startswith("not")
        return lambda row: (v := left(row)) is not None and ((v in values) != negate)
    compare = _COMPARE[cond.op]
    if isinstance(cond.right[0], Column):
        right = getter(cond.right[0], rel, args, fqn)
        return lambda row: _safe(compare, left(row), right(row))
    value = cast_or_fail(caster, bind(cond.right[0], args))
    return lambda row: _safe(compare, left(row), value)


_INT8 = (-(2**63), 2**63 - 1)


def count_keys(
    conds: tuple[Cond, ...], rel: Relation, args: list[Any], keys: array[int], pos: int
) -> int | None:
    """How many integer ``keys`` (column ``pos`` of ``rel``) pass every condition, or None.

    The vectorised twin of ``predicate`` for counting mode's reconcile counts
    (``count(*) WHERE id >= ? AND id < ?`` over a million kept keys): it answers only when
    every condition compares that column with a constant that casts to a 64-bit integer, and
    then exactly as ``predicate`` would row by row; anything else is None (use ``predicate``).
    Raises ``CrateError`` when a constant cannot be cast, as ``predicate`` does.
    """
    import numpy as np  # only counting mode's counts need it

    name = rel.columns[pos]
    caster = rel.types[pos].caster()
    values = np.frombuffer(keys, dtype=np.int64)
    passing = np.ones(len(values), dtype=bool)
    for cond in conds:
        left, right = cond.left, cond.right
        if not isinstance(left, Column) or left.path or left.name != name:
            return None
        if cond.op not in _COMPARE or len(right) != 1 or isinstance(right[0], Column):
            return None
        value = cast_or_fail(caster, bind(right[0], args))
        if type(value) is not int or not _INT8[0] <= value <= _INT8[1]:
            return None
        passing &= _COMPARE[cond.op](values, value)
    return int(np.count_nonzero(passing))


def _safe(compare: Callable[[Any, Any], bool], a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    try:
        return compare(a, b)
    except TypeError:
        return False


def _aggregate(func: Func, rows: list[list[Any]], rel: Relation, args: list[Any], fqn: str) -> Any:
    if func.name == "count" and (not func.args or isinstance(func.args[0], Star)):
        return len(rows)
    if len(func.args) != 1:
        raise protocol.parse_error(f"unsupported call {func.label}")
    get = getter(func.args[0], rel, args, fqn)
    values = [v for v in map(get, rows) if v is not None]
    if func.name == "count":
        return len(values)
    if not values:
        return None
    if func.name == "min":
        return min(values)
    if func.name == "max":
        return max(values)
    total = sum(values)
    return total if func.name == "sum" else total / len(values)


def _sort(rows: list[list[Any]], keys: list[tuple[Getter, bool]]) -> None:
    # Stable sorts, last key first; NULLS LAST for ASC and NULLS FIRST for DESC, as in CrateDB.
    for get, desc in reversed(keys):
        rows.sort(key=_null_aware(get), reverse=desc)


def _null_aware(get: Getter) -> Callable[[list[Any]], tuple[bool, Any]]:
    def key(row: list[Any]) -> tuple[bool, Any]:
        value = get(row)
        return value is None, value

    return key


def run_select(
    stmt: Select, rel: Relation, args: list[Any], fqn: str
) -> tuple[list[str], list[Any], list[list[Any]]]:
    """Evaluate ``stmt`` over ``rel``: ``(cols, col_types, rows)``."""
    rows: Iterable[list[Any]] = rel.rows
    if stmt.where:
        rows = filter(predicate(stmt.where, rel, args, fqn), rows)
    matched = list(rows)
    cols: list[str] = []
    exprs: list[Expr] = []
    for item in stmt.items:
        if isinstance(item.expr, Star):
            cols.extend(rel.columns)
            exprs.extend(Column(c) for c in rel.columns)
        else:
            cols.append(item.alias or label_of(item.expr))
            exprs.append(item.expr)
    is_agg = [isinstance(e, Func) and e.name in _AGGREGATES for e in exprs]
    if any(is_agg):
        if not all(is_agg):
            raise protocol.parse_error("plain columns next to aggregates need GROUP BY")
        out = [[_aggregate(e, matched, rel, args, fqn) for e in exprs if isinstance(e, Func)]]
        return cols, [infer_type_id(v) if v is not None else 10 for v in out[0]], out
    getters = [getter(e, rel, args, fqn) for e in exprs]
    if stmt.order_by:
        keys: list[tuple[Getter, bool]] = []
        for expr, desc in stmt.order_by:
            if isinstance(expr, Column) and expr.name in cols and expr.name not in rel.columns:
                keys.append((getters[cols.index(expr.name)], desc))
            elif isinstance(expr, Literal) and isinstance(expr.value, int):
                keys.append((getters[expr.value - 1], desc))
            else:
                keys.append((getter(expr, rel, args, fqn), desc))
        _sort(matched, keys)
    if stmt.limit is not None:
        limit = bind(stmt.limit, args)
        if not isinstance(limit, int) or limit < 0:
            raise protocol.parse_error(f"invalid LIMIT {limit!r}")
        matched = matched[:limit]
    out_rows = [[g(r) for g in getters] for r in matched]
    return cols, [_type_id(e, rel, out_rows, i) for i, e in enumerate(exprs)], out_rows


def _type_id(expr: Expr, rel: Relation, rows: list[list[Any]], pos: int) -> Any:
    if isinstance(expr, Column) and not expr.path:
        return rel.types[rel.columns.index(expr.name)].type_id
    if isinstance(expr, Func) and expr.name == "cast":
        return ColumnType(expr.type_name).type_id
    for row in rows:
        if row[pos] is not None:
            return infer_type_id(row[pos])
    return TEXT.type_id
