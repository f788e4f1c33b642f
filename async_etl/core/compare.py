"""When a column's value has changed: one rule for every column type, target and the model.

Theory of operation
-------------------
SCD change detection compares a staged source value with the target's value, NULL-safely.
A plain ``=`` / ``IS DISTINCT FROM`` is only right for types whose equality is identity:
``json`` and ``xml`` have no ``=`` at all, ``point`` and ``polygon`` neither, ``box`` and
``circle`` compare areas, ``path`` compares point counts, ``interval`` says
``'1 day' = '24 hours'``, ``citext`` ignores case; arrays and composites of such types inherit
the problem.  The rule:

* a type in ``EXACT_TYPES`` (and an array of one) is compared with its own ``=``,
  NULL-safely;
* text is compared byte for byte (``COLLATE "C"``), whatever the column's collation: under
  a nondeterministic one (``CREATE COLLATION ci (provider = icu, locale =
  'und-u-ks-level2', deterministic = false)``) ``'abc' = 'ABC'`` is true, yet the target
  would keep the old letters.  Under a deterministic collation ``=`` is already byte
  equality (such a collation calls strings equal only when they are the same byte
  sequence: PostgreSQL docs, Collation Support), so ``COLLATE "C"`` changes no result
  there.  The text form of a type that may carry a collation (``citext``, a domain or
  another user type) is compared the same way;
* unbounded ``bpchar``: ``=`` (and ``::text``) ignore trailing blanks, which the column
  keeps and shows, so it is compared as ``(value, octet_length(value))`` when the target's
  type is unbounded too (a ``character(n)`` target pads every value to n, so there the
  blanks tell nothing);
* ``real`` / ``double precision``: ``'-0' = '0'`` is true, yet they are two values that
  print differently, so a float is compared as ``(value, the text of a zero)``: its own
  ``=`` (cheap; ``NaN = NaN``) and, for a zero only, its sign;
* ``numeric``: ``1.0 = 1.00`` is true, yet the scale is kept and shown, so a numeric is
  compared as ``(value, scale(value))`` unless the target's type fixes the scale
  (``numeric(12,2)`` stores every value at scale 2, so the source's scale is not kept);
* every other type is compared by its text form (``value::text``), which every PostgreSQL
  type has: a ``json`` value is changed when its text is (whitespace and key order count:
  ``json`` keeps the text as written), a ``jsonb`` when its normalised text is (key order
  and whitespace do not count, a number's scale does: ``{"a": 1}`` and ``{"a": 1.0}`` are
  equal by ``=`` but differ), a ``point`` when a coordinate is, a composite when any field's
  text is, a float array when an element's text is.  Floats print exactly under the merge's
  ``extra_float_digits = 3``, every ``NaN`` as ``NaN``;
* values not equal to themselves (``NaN``) count as unchanged when both sides are ``NaN``,
  as PostgreSQL's ``=`` and Oracle's comparison already treat them.

Oracle stores ``json``, ``jsonb``, ``xml`` and arrays as ``CLOB`` (``oracle_lob``), which
neither ``=`` nor ``DECODE`` accepts: they are compared with ``DBMS_LOB.COMPARE``, i.e. by
text.  CrateDB targets are diffed in Python by ``same`` below on the values as CrateDB
returns them (``json`` as its text in a ``TEXT`` column, arrays as lists).  Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from async_etl.core.pg_casts import unbounded

__all__ = [
    "EXACT_TYPES",
    "base_type",
    "chunk_key_problem",
    "is_exact",
    "key_problem",
    "oracle_lob",
    "pg_compared",
    "same",
]

EXACT_TYPES = frozenset(
    {
        "smallint",
        "integer",
        "bigint",
        "numeric",
        "boolean",
        "text",
        "character varying",
        "character",
        '"char"',
        "name",
        "uuid",
        "bytea",
        "date",
        "time without time zone",
        "timestamp without time zone",
        "timestamp with time zone",
        "inet",
        "cidr",
        "macaddr",
        "macaddr8",
        "money",
        "bit",
        "bit varying",
        "oid",
    }
)
"""PostgreSQL types whose ``=`` is the identity of values (modulo NaN and numeric scale)."""

_FLOATS = frozenset({"real", "double precision"})

_BYTEWISE = ' COLLATE "C"'
"""What a text-typed comparison is written with: equal only when byte for byte equal."""

_COLLATED = frozenset({"text", "character varying", "character", "name"})
"""The ``EXACT_TYPES`` a column may hold under a nondeterministic collation."""

_UNKEYED = frozenset({"json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle"})
_RANGES = ("int4", "int8", "num", "ts", "tstz", "date")
_UNCHUNKED = frozenset(
    {"bit", "bit varying", "tsvector", "tsquery"}
    | {f"{r}range" for r in _RANGES}
    | {f"{r}multirange" for r in _RANGES}
)
_UNCOLLATED = frozenset(
    _UNKEYED
    | _FLOATS
    | {"jsonb", "numeric", "interval", "time with time zone", "tsvector", "tsquery"}
    | {f"{r}range" for r in _RANGES}
    | {f"{r}multirange" for r in _RANGES}
)
"""Built-in types compared by text that carry no collation: their text has the database's
default one, which is deterministic, so it is compared as it is."""
_MODS = re.compile(r"\(\s*\d+\s*(?:,\s*\d+\s*)?\)")
_LOBS = frozenset({"json", "jsonb", "xml"})


def base_type(pg_type: str) -> tuple[str, bool]:
    """``(name without modifiers, is an array)`` of a type as ``format_type`` writes it.

    ``'timestamp(3) with time zone'`` -> ``('timestamp with time zone', False)``,
    ``'numeric(12,2)[]'`` -> ``('numeric', True)``.
    """
    name = " ".join(_MODS.sub("", pg_type.strip().lower()).split())
    array = name.endswith("[]")
    while name.endswith("[]"):
        name = name[:-2].rstrip()
    return name, array


def is_exact(pg_type: str) -> bool:
    """True when the type's own ``=`` decides a change; unknown / empty types are exact.

    An empty type name means "not known" (a caller that never learnt the source's types) and
    keeps the plain comparison.
    """
    if not pg_type.strip():
        return True
    return base_type(pg_type)[0] in EXACT_TYPES


def pg_compared(ref: str, source_type: str, target_type: str) -> str:
    """How a PostgreSQL merge compares column reference ``ref`` (the staged or the target side).

    ``source_type`` is the source's type name, ``target_type`` an existing target's as its
    drift check read it (a domain written as its base type; "" when not known).  A type
    without a usable ``=`` is compared by text; an array goes through the target's array type
    without modifiers on both sides, since arrays of two types have no ``=``: a target
    ``posint[]`` against the staged ``integer[]`` (``operator does not exist: posint[] =
    integer[]``), a widened ``bigint[]`` against ``integer[]``.  The staged value fits the
    target's type (the drift check refuses the rest) and a domain's value is its base type's,
    so neither cast changes a value.  The type is ``core.pg_casts.unbounded``'s: a
    ``character(3)[]`` is cast to ``bpchar[]``, not to ``character[]`` (``character(1)[]``,
    which cuts each element to its first character, so a change past it went unseen).
    Text is compared under ``COLLATE "C"`` (byte for byte; a nondeterministic collation's
    ``=`` calls ``'abc'`` and ``'ABC'`` equal), an unbounded ``bpchar`` with its length in
    bytes too (its ``=`` ignores trailing blanks).  Returns SQL for one or more ``ROW``
    fields.
    """
    name, array = base_type(source_type)
    if name in _FLOATS and not array:
        return f"{ref}, CASE WHEN {ref} = 0 THEN {ref}::text END"
    if name == "numeric" and "(" not in (target_type or source_type):
        return f"{ref}::numeric[]::text" if array else f"{ref}, scale({ref})"
    if name == "bpchar" and not array and base_type(target_type or source_type)[0] == "bpchar":
        return f"{ref}{_BYTEWISE}, octet_length({ref})"
    if not is_exact(source_type):
        if name in _FLOATS and base_type(target_type)[1]:
            return f"{ref}::{unbounded(target_type)}::text"
        return f"{ref}::text{_BYTEWISE if name not in _UNCOLLATED else ''}"
    collate = _BYTEWISE if name in _COLLATED else ""
    if not base_type(target_type)[1]:
        return f"{ref}{collate}"
    return f"{ref}::{unbounded(target_type)}{collate}"


def key_problem(pg_type: str) -> str | None:
    """Why a column of this type cannot be a chunk or business key (None when it can).

    Keys are matched with ``=`` and chunked by ordering; ``json``, ``xml`` and the geometric
    types (and arrays of them) have neither.
    """
    if base_type(pg_type)[0] in _UNKEYED:
        return f"has type {pg_type}, which has no equality or ordering to match and chunk keys by"
    return None


def chunk_key_problem(pg_type: str) -> str | None:
    """Why a column of this type cannot be a chunk key (``[source] key``); None when it can.

    A chunk key also needs values the stored chunk plan can carry: ranges, bit strings and
    text-search types cannot (``core.chunks``); and ``key_problem``'s types.
    """
    if (why := key_problem(pg_type)) is not None:
        return why
    if base_type(pg_type)[0] in _UNCHUNKED:
        return f"has type {pg_type}, whose values cannot be stored as chunk bounds"
    return None


def oracle_lob(pg_type: str) -> bool:
    """True when an Oracle target stores the type as ``CLOB`` (json, jsonb, xml, arrays)."""
    name, array = base_type(pg_type)
    return array or name in _LOBS


def _nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, Decimal) and value.is_nan()


def same(a: Any, b: Any) -> bool:
    """The model's change rule: True when ``a`` and ``b`` are the same value.

    NULL-safe (None equals None only); NaN equals NaN; ``-0.0`` differs from ``0.0`` (as the
    PostgreSQL merge sees them); lists / tuples element by element and mappings key by key
    with the same rule (so ``[NaN] == [NaN]``); a boolean never equals a number
    (``{"a": true}`` differs from ``{"a": 1}``, as in JSON).
    """
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _nan(a) or _nan(b):
        return _nan(a) and _nan(b)
    if isinstance(a, float) and isinstance(b, float) and a == b == 0:
        return math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False
