"""What a binary COPY from one PostgreSQL database into another must cast, and to what (pure).

Theory of operation
-------------------
A chunk read from a PostgreSQL source in another database travels as binary ``COPY`` out of
the source piped unchanged into binary ``COPY`` in (``jobs.pg_pipe``).  Each field is the
source type's ``send`` output, read by the target column's ``receive`` function, so it only
works when both are the same type: an ``integer`` field read as ``bigint`` is four bytes
short ("insufficient data left in message"), and an ``integer[]`` read as ``bigint[]`` names
its element type ("binary data has array element type 23 (integer) instead of expected 20
(bigint)").  The schema-drift check (``core.drift.sql_fits``) accepts such pairs as
widenings, since an ``INSERT ... SELECT`` converts them (an assignment cast), so the binary
path must too.

``copy_casts`` therefore names, per column, the type the source's SELECT casts the value to
before it is sent: the target's type written without modifiers (``unbounded``) whenever its
base type differs from the source's (modifiers alone do not change the binary format; the
target's ``receive`` applies its own: a ``numeric(5,2)`` or ``varchar(5)`` refuses what does
not fit, as an assignment would).  A cast to the type without modifiers never changes a
value: integers widen, ``real`` widens to ``double precision`` exactly, any integer is a
``numeric``, and a ``character(n)`` becomes text as an assignment makes it (its trailing
blanks are not part of its value).  A narrowing pair the drift check lets through (a
``bigint`` into an ``integer``) fails the cast on a value out of range, where the target
would have refused it.  Equal base types are sent as they are (the fast path); so is every
column of a target not known (no such table yet: it is made from the source's types).

``unbounded`` is also what an SCD comparison casts arrays to (``core.compare.pg_compared``):
``character`` and ``bit`` without a length are ``character(1)`` and ``bit(1)``, and a cast to
those cuts every element to its first character or bit, so their unbounded forms are
``bpchar`` and ``bit varying``.

``length_guards`` and ``cast_select``'s guards keep a ``character varying(n)`` target from
changing a value: PostgreSQL's assignment to it refuses a longer value "unless the excess
characters are all spaces, in which case the string will be truncated" (PostgreSQL docs,
Character Types), so ``'abc  '`` would be stored as ``'abc'`` (and a type-2 run would see a
change at every run).  The drift check accepts text into any ``varchar(n)`` (a value that fits
is common), so the check is per row: a guarded column reads ``CASE WHEN char_length(c) > n
THEN c || '~' ELSE c END``, a value longer than ``n`` whose last character is no
blank (and, the mark taken off, the value itself: ``unguard``, for a rejected row's key),
which the target refuses as too long ("value too long for type character varying(n)",
SQLSTATE 22001) like any other: the chunk fails (``on_bad_row = "fail"``) or the row is
rejected with that reason (``"reject"``), never stored changed.  A value that fits is read as
it is; only columns whose source type is longer than ``n`` (text, or ``varchar(m)``, m > n)
are guarded, so a widening costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from async_etl.core.drift import ACROSS
from async_etl.core.scd_sql_common import check_type, quote

__all__ = [
    "cast_select",
    "copy_casts",
    "guard_rows",
    "guarded_columns",
    "length_guards",
    "too_long_line",
    "unbounded",
    "unguard",
]

_MODS = re.compile(r"\(\s*\d+\s*(?:,\s*-?\d+\s*)?\)")
_ALIAS = {"int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint",
          "float8": "double precision", "float4": "real", "decimal": "numeric",
          "varchar": "character varying", "char": "character", "bpchar": "character",
          "bool": "boolean", "timestamptz": "timestamp with time zone",
          "varbit": "bit varying"}  # fmt: skip
_LENGTHLESS = {"character": "bpchar", "bit": "bit varying"}
"""Types whose name without a length means length 1: the name that means no limit."""


def _parts(type_name: str) -> tuple[str, int]:
    """(base name without modifiers, array dimensions written) of a ``format_type`` name."""
    name = " ".join(_MODS.sub("", type_name.strip().lower()).split())
    dims = 0
    while name.endswith("[]"):
        name, dims = name[:-2].rstrip(), dims + 1
    return _ALIAS.get(name, name), dims


def unbounded(type_name: str) -> str:
    """``type_name`` without its modifiers, as a type that holds every value of it.

    ``numeric(12,2)[]`` -> ``numeric[]``, ``character varying(5)`` -> ``character varying``,
    ``character(3)[]`` -> ``bpchar[]`` (``character`` alone is ``character(1)``),
    ``bit(4)`` -> ``bit varying``.  Any array is written with one ``[]`` (PostgreSQL ignores
    the number of them).
    """
    name, dims = _parts(type_name)
    return _LENGTHLESS.get(name, name) + ("[]" if dims else "")


def _pairs(types: Sequence[str], target_types: Sequence[str]) -> list[tuple[str, str]]:
    """(source type, target type) per column; none when ``target_types`` is empty.

    Raises ``ValueError`` when the lengths differ.
    """
    if target_types and len(types) != len(target_types):
        raise ValueError(f"{len(types)} source types against {len(target_types)} target types")
    return list(zip(types, target_types, strict=True)) if target_types else []


def copy_casts(types: Sequence[str], target_types: Sequence[str]) -> tuple[str | None, ...]:
    """Per column, the type a source value is cast to for a binary COPY (None: sent as is).

    ``types``: the source's column types, ``target_types``: the existing target's, both as
    the drift check reads them (``format_type``, a domain as its base type; "" where not
    known, or ``()``).  A cast is the target's type through ``unbounded``, for a column whose
    base type differs from the source's, a pair of ``drift.ACROSS`` (the pairs the drift
    check fits across types; see the module docstring); any other pair it accepts is one type.
    ``()`` when no column needs one.  Raises ``ValueError`` when the lengths differ.
    """
    casts: list[str | None] = []
    for source, target in _pairs(types, target_types):
        (sb, sdims), (tb, tdims) = _parts(source), _parts(target)
        differs = sb != tb and bool(sdims) == bool(tdims) and (sb, tb) in ACROSS
        casts.append(unbounded(target) if differs else None)
    return tuple(casts) if any(casts) else ()


_VARYING_LENGTH = re.compile(r"character varying\(\s*(\d+)\s*\)")
_TEXTS = frozenset({"text", "character varying"})


def _varying_length(type_name: str) -> int | None:
    """The ``n`` of ``character varying(n)`` (None: another type, or no length)."""
    found = _VARYING_LENGTH.fullmatch(" ".join(type_name.lower().split()))
    return int(found.group(1)) if found else None


def length_guards(types: Sequence[str], target_types: Sequence[str]) -> tuple[int | None, ...]:
    """Per column, the ``n`` of a ``varchar(n)`` target that could cut a source value, or None.

    See the module docstring.  ``types`` / ``target_types`` as for ``copy_casts``.  A column
    is guarded when the target is ``character varying(n)`` (not an array) and the source is
    ``text`` or ``character varying`` without a length or with one above ``n``.  ``()`` when
    no column is.  Raises ``ValueError`` when the lengths differ.
    """
    guards: list[int | None] = []
    for source, target in _pairs(types, target_types):
        n, (sb, sdims), m = _varying_length(target), _parts(source), _varying_length(source)
        wider = n is not None and sb in _TEXTS and not sdims and (m is None or m > n)
        guards.append(n if wider else None)
    return tuple(guards) if any(g is not None for g in guards) else ()


def cast_select(
    names: Sequence[str],
    casts: Sequence[str | None],
    alias: str = "q",
    guards: Sequence[int | None] = (),
) -> str:
    """The select list reading ``names`` of ``alias``, ``casts`` and ``guards`` applied.

    ``casts`` are ``copy_casts``', ``guards`` ``length_guards``'.  ``*`` when there is
    neither: ``alias."a", alias."b"::bigint[] AS "b"`` otherwise, in the order of ``names``;
    a guarded column ``CASE WHEN char_length(alias."c") > n THEN alias."c" || '~'
    ELSE alias."c" END AS "c"`` (``unguard`` takes the mark off again).  Raises ``ValueError`` for a
    malformed type or when the lengths differ.
    """
    if not casts and not guards:
        return "*"
    casts = casts or (None,) * len(names)
    guards = guards or (None,) * len(names)
    if not len(names) == len(casts) == len(guards):
        raise ValueError(f"{len(names)} columns against {len(casts)} casts, {len(guards)} guards")
    out = []
    for name, cast, guard in zip(names, casts, guards, strict=True):
        ref = f"{alias}.{quote(name)}"
        if cast is not None:
            ref = f"{ref}::{check_type(cast)}"
        if guard is not None:
            cut = f"{ref} || '~'"
            ref = f"CASE WHEN char_length({ref}) > {int(guard)} THEN {cut} ELSE {ref} END"
        out.append(ref if ref == f"{alias}.{quote(name)}" else f"{ref} AS {quote(name)}")
    return ", ".join(out)


def guarded_columns(
    names: Sequence[str], types: Sequence[str], target_types: Sequence[str]
) -> dict[str, int]:
    """Column name -> the ``n`` of its guard (``length_guards``), for the guarded columns only."""
    guards = length_guards(types, target_types) or (None,) * len(names)
    return {name: n for name, n in zip(names, guards, strict=True) if n is not None}


def guard_rows(
    rows: list[tuple[Any, ...]], guarded: dict[str, int], names: Sequence[str]
) -> list[tuple[Any, ...]]:
    """``rows`` as ``cast_select``'s guards would read them, for rows handed over as Python values.

    A source that is not PostgreSQL (Oracle) hands its rows to ``copy_records_to_table``, which
    no SELECT guards: this is the same rule in Python.  ``guarded``: ``guarded_columns``' name
    -> n; ``names``: the columns of each row, in order.  A ``str`` longer than its column's
    ``n`` gets ``'~'`` appended (a character that is no blank, so the target refuses it as too
    long, SQLSTATE 22001, where it would have cut its excess blanks; ``unguard`` takes it off
    again); every other value, and ``rows`` itself when no value is longer, is returned as it
    is.  Raises ``ValueError`` when a guarded name is not in ``names``.
    """
    marks = [(names.index(name), n) for name, n in guarded.items()]
    if not marks:
        return rows
    out: list[tuple[Any, ...]] | None = None
    for at, row in enumerate(rows):
        long = [(i, v) for i, n in marks if isinstance(v := row[i], str) and len(v) > n]
        if not long:
            continue
        if out is None:
            out = list(rows)
        fixed = list(row)
        for i, v in long:
            fixed[i] = f"{v}~"
        out[at] = tuple(fixed)
    return rows if out is None else out


def unguard(value: object, n: int) -> object:
    """A guarded column's value as the source holds it: the guard's ``'~'`` taken off.

    A guarded value longer than ``n`` always ends in the ``'~'`` the guard appended; any
    other value is returned as it is.
    """
    if isinstance(value, str) and len(value) > n and value.endswith("~"):
        return value[:-1]
    return value


_TOO_LONG = re.compile(r"value too long for type character varying\((\d+)\)")


def too_long_line(
    message: str, guarded: dict[str, int], row: Mapping[str, object] | None = None
) -> str | None:
    """The columns a "value too long for type character varying(n)" ``message`` may mean.

    PostgreSQL's message names no column (SQLSTATE 22001); ``guarded`` (``guarded_columns``)
    names the columns a source value may be too long for.  None when ``message`` is another,
    or no guarded column has that ``n``.  ``'column "a" (character varying(3) in the target)
    got a value longer than 3 characters, which the target refuses ...'``.

    ``row``: the refused row's values as the source holds them (``unguard``), by column name,
    when known (a rejected row).  The line then names the columns whose value is longer than
    ``n`` and says what PostgreSQL would do with it: refuse it, or, when its excess
    characters are all spaces, store it with them cut (PostgreSQL docs, Character Types).
    Without ``row`` (a failed chunk) it says both.
    """
    found = _TOO_LONG.search(message)
    if found is None:
        return None
    n = int(found.group(1))
    names = [name for name, m in guarded.items() if m == n]
    if not names:
        return None
    what = "which the target refuses (or, when its excess is all blanks, would store with them cut)"
    if row is not None:
        long = [c for c in names if isinstance(v := row.get(c), str) and len(v) > n]
        refused = [c for c in long if str(row[c])[n:].strip(" ")]
        if refused:
            names, what = refused, "which the target refuses"
        elif long:
            names, what = long, "which the target would store with its trailing blanks cut"
    which = (f'column "{names[0]}"' if len(names) == 1 else
             "one of the columns " + ", ".join(f'"{c}"' for c in names))  # fmt: skip
    return (
        f"{which} (character varying({n}) in the target) got a value longer than {n} "
        f"characters, {what}; widen the target column, or trim the value in the source query"
    )
