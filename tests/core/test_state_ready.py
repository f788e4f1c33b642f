"""The state store's readiness query names every table, index and column its DDL makes."""

from __future__ import annotations

import re

from async_etl.core import state_sql as sq


def _made_by_ddl() -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """(tables, indexes, (table, column)) that ``STATE_DDL`` creates, read from its text."""
    text = "\n".join(st.text for st in sq.STATE_DDL)
    tables = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", text))
    indexes = set(re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", text))
    columns = set(re.findall(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", text))
    return tables, indexes, columns


def test_the_ready_lists_are_exactly_what_the_ddl_creates() -> None:
    """Every table, index and added column of ``STATE_DDL`` is listed, and nothing else."""
    tables, indexes, columns = _made_by_ddl()
    assert set(sq.STATE_TABLES) == tables
    assert set(sq.STATE_INDEXES) == indexes
    assert {(t, c) for t, cs in sq.STATE_COLUMNS for c in cs} == columns


def test_the_ready_query_asks_for_each_of_them() -> None:
    """Tables in the schema a CREATE would use; indexes and columns as the DO blocks look."""
    sql = sq.state_ready_sql((*sq.STATE_TABLES, "extra_t"))
    for table in (*sq.STATE_TABLES, "extra_t"):
        assert f"to_regclass(quote_ident(current_schema()) || '.{table}') IS NOT NULL" in sql
    for index in sq.STATE_INDEXES:
        assert f"to_regclass('{index}') IS NOT NULL" in sql
    assert "attname IN ('cursor', 'counts', 'loader') AND NOT attisdropped) = 3" in sql
    assert sql.startswith("SELECT ") and ";" not in sql
