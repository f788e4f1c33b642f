"""PostgreSQL: move a loaded table's identity and serial sequences past the values it holds.

A load writes the source's values into identity and serial columns without drawing them from
the column's sequence (``COPY`` always does; ``INSERT ... OVERRIDING SYSTEM VALUE`` does for
``GENERATED ALWAYS``), so the sequence still stands where it stood and the user's next
``INSERT`` draws a value the load already wrote.  ``pg_dump`` and ``pgcopydb`` reset every
sequence after the data for the same reason; a job's target keeps its own sequence and its
own rows, so the rule here is narrower: a sequence whose next value is at or below the
column's largest value is set to that value (its next is then one step past it); a sequence
already ahead, a descending one, or one whose maximum is below the column's is left alone.

Order of operations: ``SEQUENCE_COLUMNS_SQL`` lists the columns that own a sequence
(``pg_get_serial_sequence``: identity columns and ``serial`` ones), then ``advance_sql`` runs
once per column (a scan of its maximum, an index probe when the column leads an index).
``setval`` is not transactional, so a concurrent insert is never blocked and never rolled back.
"""

from __future__ import annotations

from async_etl.core.scd_sql_common import Sql, ident

__all__ = ["SEQUENCE_COLUMNS_SQL", "advance_sql"]

SEQUENCE_COLUMNS_SQL = Sql(
    """
SELECT a.attname, q.seq::text
FROM pg_attribute a
CROSS JOIN LATERAL (SELECT pg_get_serial_sequence($1::regclass::text, a.attname)::regclass
                    AS seq) q
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND q.seq IS NOT NULL
ORDER BY a.attnum
""",
    ("relation",),
)
"""(column name, sequence as regclass text) of each column of ``relation`` owning a sequence."""


def advance_sql(table: str, column: str, sequence: str) -> Sql:
    """Set ``sequence`` to ``max(column)`` of ``table`` when its next value is not past it.

    ``table`` and ``sequence``: relations as SQL text, already quoted (``sequence`` as
    ``SEQUENCE_COLUMNS_SQL`` returns it, quoted by the server); ``column``: the column's own
    name; ``$1``: ``sequence`` again, as a value.  The next value is read from the sequence
    itself (``last_value``, ``is_called``): a sequence restarted, or never used, gives
    ``last_value`` next.  Returns the new value when it moved the sequence, no row otherwise.
    """
    return Sql(
        "SELECT setval($1::regclass, m.v) "
        f"FROM (SELECT max({ident(column)})::bigint AS v FROM {table}) m, "
        f"(SELECT last_value, is_called FROM {sequence}) c, pg_sequence s "
        "WHERE s.seqrelid = $1::regclass "
        "AND s.seqincrement > 0 AND m.v <= s.seqmax "
        "AND m.v >= CASE WHEN c.is_called THEN c.last_value + s.seqincrement "
        "ELSE c.last_value END",
        ("sequence",),
    )
