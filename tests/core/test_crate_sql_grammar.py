from __future__ import annotations

import pytest
from cratedb_sqlparse import sqlparse

from tests.crate_statements import all_statements

STATEMENTS = all_statements()


def test_the_collection_covers_every_statement_kind() -> None:
    """The statement list holds DDL, inserts, upserts, updates, deletes, reads and refreshes."""
    heads = {s.split()[0] for s in STATEMENTS}
    assert heads == {"CREATE", "INSERT", "UPDATE", "DELETE", "SELECT", "REFRESH", "ALTER", "DROP"}
    assert any("ON CONFLICT DO NOTHING" in s for s in STATEMENTS)
    assert any("DO UPDATE SET" in s for s in STATEMENTS)
    assert len(STATEMENTS) > 200


@pytest.mark.parametrize("stmt", STATEMENTS)
def test_every_generated_statement_is_valid_cratedb_sql(stmt: str) -> None:
    """CrateDB's own grammar (cratedb-sqlparse) parses each statement the project sends."""
    parsed = sqlparse(stmt, raise_exception=True)
    assert len(parsed) == 1
