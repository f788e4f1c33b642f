"""Which collation each chunk-key column is compared in, by every statement of a run.

Theory of operation
-------------------
A chunk is a key range ``[lower, upper)``, and a range means the same rows only where "<"
means the same thing.  For a text key "<" is a collation: under ``en-x-icu`` ``m00002``
sorts after ``M00001``, under ``C`` (code-point order) every ``M`` comes before every ``m``.
The source's database sorts the boundaries (``ntile``) and reads each chunk; the target
applies the same range to find the chunk's current rows (the merge's target-side bounds,
delete detection, the "range is empty" shortcut).  If the two sides use different orderings
a chunk reads rows twice, the merge expires keys staged by another chunk, or inserts a second
current row.

So one ordering is chosen per run, before anything is written, and stored with the chunk plan
(a resumed run keeps it):

* source and target in the same PostgreSQL database: each key column's own collation (the
  statements name it explicitly, ``k COLLATE "en-x-icu"``, so indexes on the column serve them
  and a target created earlier with another collation still selects the same keys);
* PostgreSQL into another PostgreSQL database: the same collation under a name both databases
  know (``default`` is resolved to the database's real one, e.g. ``en_US.utf8``), when the
  target has it;
* anything else (a CrateDB or Oracle target, an Oracle source, a collation the target lacks):
  ``BINARY``, code-point order.  PostgreSQL spells it ``COLLATE "C"`` (UTF-8 byte order is
  code-point order), Oracle sessions run with ``NLS_SORT = BINARY`` and ``NLS_COMP = BINARY``,
  CrateDB compares strings by their UTF-8 bytes, and Python compares ``str`` by code point.
  A PostgreSQL source then reads its chunks with ``COLLATE "C"``, which its index on a
  non-``C`` key cannot serve (each chunk scans the source): correct first, fast second.

Pure: no I/O.  The drivers read the source's collations and the target's collation names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BINARY", "KeyCollation", "collated", "is_text_type", "key_order"]

BINARY = "C"
"""The code-point ordering every dialect can apply (PostgreSQL's name for it)."""

_TEXT = re.compile(r"^(text|character varying|varchar|character|char|bpchar|name|citext)\b")


@dataclass(frozen=True, slots=True)
class KeyCollation:
    """The collation of one source key column: its own name and a name portable elsewhere.

    ``name`` is what the column's catalog entry says (``default``, ``en-x-icu``, ``C``);
    ``portable`` names the same ordering in a way another database understands (``default``
    resolved to the database's collation), or ``None`` when it could not be resolved.
    """

    name: str
    portable: str | None


def is_text_type(pg_type: str) -> bool:
    """True for the PostgreSQL type names of strings (``text``, ``character varying(20)``)."""
    return _TEXT.match(pg_type.strip().lower()) is not None


def key_order(
    source: Sequence[KeyCollation | None],
    *,
    target: frozenset[str] | None,
    same_database: bool,
) -> tuple[str | None, ...]:
    """The collation each chunk-key column is compared in (``None``: a type without one).

    ``source`` holds one entry per key column (``None`` for numbers, dates, ...); ``target``
    is the set of collation names the target can apply, or ``None`` when it compares text
    only in code-point order (CrateDB, Oracle).  See the module doc for the rules.
    """
    binary = tuple(None if c is None else BINARY for c in source)
    if target is None:
        return binary
    if same_database:
        return tuple(None if c is None else c.name for c in source)
    names = [None if c is None else c.portable for c in source]
    if all(
        c is None or (n is not None and n in target) for c, n in zip(source, names, strict=True)
    ):
        return tuple(names)
    return binary


def collated(ref: str, name: str | None) -> str:
    """``ref COLLATE "name"`` in PostgreSQL syntax (``ref`` itself when ``name`` is None)."""
    if name is None:
        return ref
    quoted = name.replace('"', '""')
    return f'{ref} COLLATE "{quoted}"'
