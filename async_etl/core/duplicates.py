"""Business keys that appear more than once in a chunk's source rows: the rule and the model.

Theory of operation
-------------------
A source with two rows for one business key gives the merge no right answer: which row is the
new version depends on physical order, which no run can reproduce.  So, on every target and
in both the merge and the initial-load path, before anything of the chunk is written:

* ``on_bad_row = "fail"``: the chunk fails with a ``DataError`` naming the key and its count;
* ``on_bad_row = "reject"``: EVERY row of such a key is rejected with ``duplicate_reason``,
  and the key is merged as if the source still held the target's current row for it (its
  current version for type 2), so nothing about it changes: it keeps its current version,
  is not expired or deleted as absent, and a key the target does not have stays absent.

PostgreSQL does this in SQL on the staging table (``scd_sql_pg.duplicate_keys_sql`` and
``hold_duplicates_sql``); CrateDB and Oracle hold the chunk's rows in Python and use
``duplicate_keys`` / ``hold_duplicates`` below.  Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from async_etl.core.specs import ScdColumns

if TYPE_CHECKING:  # core.scd (the Python SCD model) is imported where rows are held in Python:
    # PostgreSQL's path needs only the messages below, and a start need not build its classes
    from async_etl.core.scd import Key, Row

__all__ = ["duplicate_keys", "duplicate_message", "duplicate_reason", "hold_duplicates"]


def duplicate_reason(count: int) -> str:
    """The reject reason of each row of a business key that ``count`` source rows share."""
    return (
        f"duplicate business key: {count} source rows have it, all rejected; "
        "the target keeps its current row for the key"
    )


def duplicate_message(key: Mapping[str, Any], count: int) -> str:
    """The one-line failure of a chunk with a duplicated key (``on_bad_row = "fail"``)."""
    pairs = ", ".join(f"{k}={v!r}" for k, v in key.items())
    return f"business key ({pairs}) appears {count} times in the source"


def duplicate_keys(keys: Iterable[Key]) -> dict[Key, int]:
    """Each key that occurs more than once, with its count, in order of first occurrence."""
    counts = Counter(keys)
    return {k: n for k, n in counts.items() if n > 1}


def hold_duplicates(
    cols: ScdColumns, source_rows: Sequence[Mapping[str, Any]], target_rows: Iterable[Row]
) -> tuple[list[Row], dict[Key, int]]:
    """Source rows with every duplicated key replaced by the target's current row for it.

    ``target_rows`` are the chunk's target rows (type 2: at least the current versions).
    Returns the rows to diff (a duplicated key the target lacks is left out) and the
    duplicated keys with their counts.  Raises ``DataError`` on a NULL key part.
    """
    from async_etl.core.scd import key_of

    dups = duplicate_keys(key_of(r, cols) for r in source_rows)
    if not dups:
        return [dict(r) for r in source_rows], {}
    rows = [dict(r) for r in source_rows if key_of(r, cols) not in dups]
    for row in target_rows:
        if (cols.type == 1 or row[cols.is_current]) and key_of(row, cols) in dups:
            rows.append({c: row[c] for c in cols.data})
    return rows, dups
