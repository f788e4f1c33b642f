"""SCD type 1 / type 2: the pure reference model that decides what a chunk changes.

Theory of operation
-------------------
A chunk is a key range.  ``diff`` takes the target rows of that range, the source rows of the
same range, the resolved ``ScdColumns`` and the run's as-of time ``T``, and returns an
``ScdPlan``: a list of actions, each addressed by the row's deterministic primary key
(business key, plus ``valid_from`` for type 2).  ``apply_plan`` applies a plan to an in-memory
target with the semantics CrateDB gives the rendered statements (insert = ON CONFLICT DO
NOTHING, update / expire / delete by exact primary key), so every action is idempotent and no
two actions of one plan touch the same primary key.

Type 2, per business key ``k`` (current version ``c``, source row ``s``), comparisons by
``compare.same`` (NULL = NULL and NaN = NaN are no change, NULL vs a value is a change; lists
and mappings element by element), composite keys column by column:

==========================================  =================================================
situation                                   action
==========================================  =================================================
``s``, no ``c``                             insert version ``s`` from T (valid_to NULL, current)
tracked changed, ``c.valid_from < T``       expire ``c`` at T, insert version ``s`` from T
tracked changed, ``c.valid_from = T``       update ``c`` in place (it was written by this run)
only overwrite columns changed              update ``c``'s compared columns in place
no ``s``, deletes = "expire", ``c`` < T     expire ``c`` at T
no ``s``, deletes = "expire", ``c`` = T     delete ``c`` (the version only this run wrote)
``c.valid_from > T``                        ``ConfigError``: T may not rewrite history
==========================================  =================================================

Type 1: a new key is inserted, a key whose tracked columns changed is upserted, an absent key
is deleted when deletes = "delete"; nothing else is written (no dead rows).

Plan order is: in-place updates, expiries, deletes, inserts.  Expiring before inserting means
a crash after any prefix leaves at most one current row per key, so re-reading the target and
diffing again (CrateDB), or replaying the whole plan, converges to the same state.  The set-based
SQL in ``scd_sql_pg`` / ``scd_sql_oracle`` implements the same table and is tested against this
module on a real database.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from async_etl.core.compare import same
from async_etl.core.specs import ScdColumns
from async_etl.errors import ConfigError, DataError

Row: TypeAlias = dict[str, Any]
Key: TypeAlias = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class InsertVersion:
    """Insert ``row`` (a full target row) unless its primary key exists (type 2)."""

    row: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ExpireVersion:
    """Set ``valid_to = at`` and ``is_current = false`` on version ``(key, valid_from)``."""

    key: Key
    valid_from: Any
    at: Any


@dataclass(frozen=True, slots=True)
class UpdateVersion:
    """Overwrite ``values`` in place on version ``(key, valid_from)`` (type 2)."""

    key: Key
    valid_from: Any
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeleteVersion:
    """Delete version ``(key, valid_from)`` (type 2: a version written at T, key now gone)."""

    key: Key
    valid_from: Any


@dataclass(frozen=True, slots=True)
class Upsert:
    """Insert ``row``, or overwrite its compared columns when ``key`` exists (type 1)."""

    key: Key
    row: Mapping[str, Any]
    new: bool


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the row with business key ``key`` (type 1, deletes = "delete")."""

    key: Key


Action: TypeAlias = InsertVersion | ExpireVersion | UpdateVersion | DeleteVersion | Upsert | Delete


@dataclass(frozen=True, slots=True)
class ScdPlan:
    """The actions for one chunk at as-of ``as_of``, in the order they must run."""

    cols: ScdColumns
    as_of: Any
    actions: tuple[Action, ...]

    def counts(self, skip: Collection[int] = ()) -> dict[str, int]:
        """Rows this plan inserts / updates / expires / deletes (for the run's counters).

        ``skip``: indexes of actions the target refused (rejected rows), left out.
        """
        out = {"inserted": 0, "updated": 0, "expired": 0, "deleted": 0}
        for i, a in enumerate(self.actions):
            if i in skip:
                continue
            if isinstance(a, InsertVersion) or (isinstance(a, Upsert) and a.new):
                out["inserted"] += 1
            elif isinstance(a, UpdateVersion | Upsert):
                out["updated"] += 1
            elif isinstance(a, ExpireVersion):
                out["expired"] += 1
            else:
                out["deleted"] += 1
        return out


def key_of(row: Mapping[str, Any], cols: ScdColumns) -> Key:
    """The business key of ``row``; ``DataError`` when a part of it is NULL."""
    key = tuple(row[c] for c in cols.business_key)
    if any(v is None for v in key):
        raise DataError(f"business key {dict(zip(cols.business_key, key, strict=True))} has NULL")
    return key


def pk_of(row: Mapping[str, Any], cols: ScdColumns) -> Key:
    """The deterministic primary key of a target row."""
    return tuple(row[c] for c in cols.pk)


def _by_key(rows: Iterable[Mapping[str, Any]], cols: ScdColumns, what: str) -> dict[Key, Row]:
    out: dict[Key, Row] = {}
    for row in rows:
        key = key_of(row, cols)
        if key in out:
            raise DataError(f"{what}: business key {key!r} appears twice")
        out[key] = dict(row)
    return out


def diff(
    cols: ScdColumns,
    target_rows: Iterable[Mapping[str, Any]],
    source_rows: Iterable[Mapping[str, Any]],
    as_of: Any,
) -> ScdPlan:
    """The plan that brings the chunk's target rows in line with its source rows at ``as_of``.

    For type 2, ``target_rows`` may hold every version or only current ones.  Raises
    ``DataError`` on a NULL or duplicated business key (or two current versions of one key)
    and ``ConfigError`` when a current version starts after ``as_of``.
    """
    source = {
        k: {c: r[c] for c in cols.data} for k, r in _by_key(source_rows, cols, "source").items()
    }
    if cols.type == 1:
        return ScdPlan(cols, as_of, tuple(_diff_type1(cols, target_rows, source)))
    current = _by_key((r for r in target_rows if r[cols.is_current]), cols, "target current")
    updates: list[Action] = []
    expires: list[Action] = []
    deletes: list[Action] = []
    inserts: list[Action] = []
    new_row = {cols.valid_from: as_of, cols.valid_to: None, cols.is_current: True}
    for key, cur in current.items():
        start = cur[cols.valid_from]
        if start > as_of:
            raise ConfigError(
                f"as-of {as_of} is before the current version of key {key!r} "
                f"(valid_from {start}); a run may not rewrite history"
            )
        src = source.get(key)
        if src is None:
            if cols.deletes == "expire":
                if start == as_of:
                    deletes.append(DeleteVersion(key, start))
                else:
                    expires.append(ExpireVersion(key, start, as_of))
            continue
        tracked = any(not same(cur[c], src[c]) for c in cols.tracked)
        if tracked and start < as_of:
            expires.append(ExpireVersion(key, start, as_of))
            inserts.append(InsertVersion({**src, **new_row}))
        elif any(not same(cur[c], src[c]) for c in cols.compared):
            updates.append(UpdateVersion(key, start, {c: src[c] for c in cols.compared}))
    for key, src in source.items():
        if key not in current:
            inserts.append(InsertVersion({**src, **new_row}))
    return ScdPlan(cols, as_of, (*updates, *expires, *deletes, *inserts))


def _diff_type1(
    cols: ScdColumns, target_rows: Iterable[Mapping[str, Any]], source: dict[Key, Row]
) -> list[Action]:
    target = _by_key(target_rows, cols, "target")
    deletes: list[Action] = []
    upserts: list[Action] = []
    if cols.deletes == "delete":
        deletes = [Delete(k) for k in target if k not in source]
    for key, src in source.items():
        cur = target.get(key)
        if cur is None:
            upserts.append(Upsert(key, src, new=True))
        elif any(not same(cur[c], src[c]) for c in cols.compared):
            upserts.append(Upsert(key, src, new=False))
    return deletes + upserts


def apply_plan(target_rows: Iterable[Mapping[str, Any]], plan: ScdPlan) -> list[Row]:
    """Apply ``plan`` to an in-memory target; returns the new rows sorted by primary key.

    Every action is idempotent (insert does nothing on an existing primary key; the others
    address one primary key), so applying a plan twice, or a prefix and then all of it, gives
    the same rows as applying it once.
    """
    cols = plan.cols
    rows: dict[Key, Row] = {pk_of(r, cols): dict(r) for r in target_rows}
    for a in plan.actions:
        if isinstance(a, InsertVersion):
            rows.setdefault(pk_of(a.row, cols), dict(a.row))
        elif isinstance(a, ExpireVersion):
            if (row := rows.get((*a.key, a.valid_from))) is not None:
                row.update({cols.valid_to: a.at, cols.is_current: False})
        elif isinstance(a, UpdateVersion):
            if (row := rows.get((*a.key, a.valid_from))) is not None:
                row.update(a.values)
        elif isinstance(a, DeleteVersion):
            rows.pop((*a.key, a.valid_from), None)
        elif isinstance(a, Upsert):
            if (row := rows.get(a.key)) is None:
                rows[a.key] = dict(a.row)
            else:
                row.update({c: a.row[c] for c in cols.compared})
        else:
            rows.pop(a.key, None)
    return [rows[k] for k in sorted(rows)]


def history_problems(
    rows: Iterable[Mapping[str, Any]], cols: ScdColumns, *, contiguous: bool = False
) -> list[str]:
    """Broken type-2 invariants in ``rows`` (empty when sound).

    Checked: no primary key twice; at most one current row per key, and it is the latest and
    open; versions do not overlap (with ``contiguous``, which holds when deletes = "ignore",
    an expired version's valid_to must equal its successor's valid_from; a key that was absent
    and came back leaves a gap otherwise).
    """
    versions: dict[Key, list[Mapping[str, Any]]] = {}
    problems: list[str] = []
    seen: set[Key] = set()
    for row in rows:
        pk = pk_of(row, cols)
        if pk in seen:
            problems.append(f"primary key {pk!r} twice")
        seen.add(pk)
        versions.setdefault(key_of(row, cols), []).append(row)
    for key, vs in versions.items():
        vs = sorted(vs, key=lambda r: r[cols.valid_from])
        if sum(1 for v in vs if v[cols.is_current]) > 1:
            problems.append(f"key {key!r} has more than one current version")
        for older, newer in itertools.pairwise(vs):
            end, start = older[cols.valid_to], newer[cols.valid_from]
            if (
                older[cols.is_current]
                or end is None
                or (end != start if contiguous else end > start)
            ):
                problems.append(f"key {key!r}: version {older[cols.valid_from]} does not end "
                                f"where {newer[cols.valid_from]} starts")  # fmt: skip
        last = vs[-1]
        if last[cols.is_current] != (last[cols.valid_to] is None):
            problems.append(f"key {key!r}: current flag and valid_to disagree")
        if last[cols.valid_to] is not None and last[cols.valid_to] < last[cols.valid_from]:
            problems.append(f"key {key!r}: version ends before it starts")
    return problems
