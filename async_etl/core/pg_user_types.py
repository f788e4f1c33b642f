"""User-defined PostgreSQL types (enum, composite, domain) of a source against a target's.

Theory of operation
-------------------
A PostgreSQL target in another database must have each user-defined type a column it creates
uses (``drift.pg_types_to_check`` picks them), and have it *alike*: the target's rows are
written with binary COPY, which sends an enum value by its label and a composite value as
its fields by position, each tagged with its type.  ``user_types_sql`` reads, for the asked
type names and every user type they reach (an array's element, a domain's base type, a
composite's field types), one ``UserType`` row each, in one round trip per side; a name the
database does not know comes back with ``kind`` None.  ``user_type_problem`` compares them:

* **enum**: values are stored by label, so the target holding every source label (more, or
  in another order, is fine) stores each value exactly.  Order matters only where the target
  compares values: a chunk key's ranges (``[source] key``) are cut in the source's label
  order and applied in the target, so an enum key column also needs the source's labels in
  the same relative order there.
* **composite**: binary COPY of a record is positional and checks each field's type, so the
  fields' names and types (``format_type``, modifiers included) must be equal, in order;
  a field of a user type is compared in turn.
* **domain**: the same base type, and no constraint (``CHECK``, ``NOT NULL``) in the target
  the source's domain lacks: then each source value passes the target's checks.
* other kinds (an extension's base type, a range): their name is all that is compared.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from async_etl.core.scd_sql_common import Sql

__all__ = ["UserType", "user_type_problem", "user_types_from_rows", "user_types_sql"]

_KINDS = {"e": "an enum", "c": "a composite", "d": "a domain", "b": "a base type",
          "r": "a range", "m": "a multirange"}  # fmt: skip
"""``pg_type.typtype`` in words."""

_FIELD = re.compile(r'^(?:"(?:[^"]|"")*"|\S+) ')
"""A composite field's ``quote_ident`` name and the space after it."""


@dataclass(frozen=True, slots=True)
class UserType:
    """A user type's definition as ``user_types_sql`` reads it.

    ``kind``: ``pg_type.typtype`` (``e`` enum, ``c`` composite, ``d`` domain, ...), None for
    a name the database does not have.  ``items``: an enum's labels in sort order; a
    composite's fields as ``name type`` (``quote_ident``, ``format_type``) in order; a
    domain's base type, then ``NOT NULL`` if declared, then its constraints' definitions
    sorted; empty otherwise.
    """

    name: str
    kind: str | None
    items: tuple[str, ...] = ()


def user_types_sql() -> Sql:
    """(name, kind, items) of ``$1`` (type names) and every user type they reach.

    One row per asked name the database lacks (kind NULL), and one per user type reached
    from the others (through array elements, domain base types, composite field types), named
    by ``format_type``; built-in types (schema ``pg_catalog``) and arrays are walked, not
    listed.  See ``UserType`` for the items.
    """
    return Sql(
        "WITH RECURSIVE asked AS (SELECT n, to_regtype(n) AS oid FROM unnest($1::text[]) AS n), "
        "walk(oid) AS (SELECT oid::oid FROM asked WHERE oid IS NOT NULL "
        "UNION SELECT x.dep FROM walk w JOIN pg_type t ON t.oid = w.oid, "
        "LATERAL (SELECT t.typelem AS dep WHERE t.typcategory = 'A' AND t.typelem <> 0 "
        "UNION ALL SELECT t.typbasetype WHERE t.typtype = 'd' "
        "UNION ALL SELECT a.atttypid FROM pg_attribute a WHERE t.typtype = 'c' "
        "AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) AS x) "
        "SELECT n, NULL::text, NULL::text[] FROM asked WHERE oid IS NULL "
        "UNION ALL SELECT format_type(t.oid, NULL), t.typtype::text, CASE t.typtype "
        "WHEN 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_enum e "
        "WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) "
        "WHEN 'c' THEN ARRAY(SELECT quote_ident(a.attname) || ' ' "
        "|| format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum) "
        "WHEN 'd' THEN ARRAY[format_type(t.typbasetype, t.typtypmod)] "
        "|| CASE WHEN t.typnotnull THEN ARRAY['NOT NULL'] ELSE '{}'::text[] END "
        "|| ARRAY(SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "WHERE c.contypid = t.oid ORDER BY 1) "
        "ELSE '{}'::text[] END "
        "FROM walk w JOIN pg_type t ON t.oid = w.oid JOIN pg_namespace s ON s.oid = t.typnamespace "
        "WHERE s.nspname <> 'pg_catalog' AND NOT (t.typcategory = 'A' AND t.typelem <> 0)",
        ("types",),
    )  # fmt: skip


def _element(type_name: str) -> str:
    """``type_name`` without its array brackets (``mood[]`` -> ``mood``)."""
    t = type_name.strip()
    while t.endswith("[]"):
        t = t[:-2].rstrip()
    return t


def _kind(kind: str | None) -> str:
    return _KINDS.get(kind or "", f"a type of kind {kind!r}")


def _difference(
    name: str,
    source: Mapping[str, UserType],
    target: Mapping[str, UserType],
    ordered: bool,
    seen: frozenset[str] = frozenset(),
) -> str | None:
    """How the target's ``name`` differs from the source's, or None (see the module doc)."""
    t, s = target.get(name), source.get(name)
    if t is None or t.kind is None:
        return f"{name}, which the target database does not have"
    if s is None or s.kind is None or name in seen:  # nothing known of the source's: its name
        return None
    if s.kind != t.kind:
        return f"{name}: {_kind(s.kind)} in the source, {_kind(t.kind)} in the target"
    if s.kind == "e":
        lacking = [label for label in s.items if label not in t.items]
        if lacking:
            return f"enum {name} in the target lacks label {lacking[0]!r}"
        if ordered and [label for label in t.items if label in s.items] != list(s.items):
            return (f"enum {name} orders its labels ({', '.join(s.items)}) otherwise in "
                    "the target, and a key column's chunk ranges are cut in the source's "
                    "order")  # fmt: skip
        return None
    if s.kind == "c":
        if s.items != t.items:
            return (f"composite {name} is ({', '.join(t.items)}) in the target, "
                    f"({', '.join(s.items)}) in the source: a record is copied field by "
                    "field, so the fields' names and types must be equal, in order")  # fmt: skip
        fields = [_element(_FIELD.sub("", item, count=1)) for item in s.items]
    elif s.kind == "d":
        extra = [c for c in t.items[1:] if c not in s.items[1:]]
        if t.items[:1] != s.items[:1]:
            return (f"domain {name} is over {t.items[0]} in the target, "
                    f"{s.items[0]} in the source")  # fmt: skip
        if extra:
            return f"domain {name} in the target has {extra[0]}, which the source's lacks"
        fields = [_element(s.items[0])]
    else:
        return None
    for field in fields:
        if field in source and (why := _difference(field, source, target, ordered,
                                                   seen | {name})) is not None:  # fmt: skip
            return why
    return None


def user_type_problem(
    columns: Sequence[tuple[str, str]],
    source: Mapping[str, UserType],
    target: Mapping[str, UserType],
    ordered: Collection[str] = (),
) -> str | None:
    """Why a column of ``columns`` cannot be made in the target with its user type, or None.

    ``columns``: (name, source type) of the columns the target must create, of types
    ``drift.pg_types_to_check`` picked.  ``source`` / ``target``: ``UserType`` by name as
    ``user_types_sql`` read them on each side (``source`` may be empty: only presence is
    then checked).  ``ordered``: columns whose values the target compares by order (the chunk
    key), where an enum must also keep the source's label order.  One clause, e.g.
    ``'column m has type mood: enum mood in the target lacks label 'c''``.
    """
    for column, type_name in columns:
        t = type_name.strip()
        why = _difference(_element(t), source, target, column in ordered)
        if why is not None:
            if why.endswith("which the target database does not have"):
                return f"column {column} has type {t}, which the target database does not have"
            return f"column {column} has type {t}: {why}"
    return None


def user_types_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, UserType]:
    """``UserType`` by name from ``user_types_sql``'s (name, kind, items) rows."""
    return {str(r[0]): UserType(str(r[0]), None if r[1] is None else str(r[1]),
                                tuple(str(i) for i in r[2] or ()))
            for r in rows}  # fmt: skip
