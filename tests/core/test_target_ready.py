"""A PostgreSQL target's readiness query names what ``target_ddl`` makes, where it makes it."""

from __future__ import annotations

import re

import pytest

from async_etl.core import scd_sql_pg as pg
from async_etl.core.specs import ScdColumns, ScdSpec

SCD = {
    1: ScdSpec(type=1, business_key=("a", "b"), deletes="delete"),
    2: ScdSpec(type=2, business_key=("a", "b"), tracked=("name",), deletes="expire"),
}


def _cols(kind: int) -> ScdColumns:
    """The SCD columns of a type-``kind`` job keyed on (a, b)."""
    return SCD[kind].resolve(["a", "b", "name"])


@pytest.mark.parametrize("kind", [1, 2])
@pytest.mark.parametrize("table", ["dw.t", "t", "Sales.OrderItems"])
def test_the_ready_query_asks_for_the_table_and_each_index_the_ddl_makes(
    kind: int, table: str
) -> None:
    """Each index ``index_ddl`` creates is looked for in the table's schema, the table as typed."""
    cols = _cols(kind)
    sql = pg.target_ready_sql(table, cols)
    schema, dot, _ = table.rpartition(".")
    text = " ".join(st.text for st in pg.index_ddl(table, cols))
    made = re.findall(r'INDEX IF NOT EXISTS "(\w+)"', text)
    assert len(made) == kind
    for name in made:
        looked_for = f'"{schema}"."{name}"' if dot else f'"{name}"'
        assert f"to_regclass('{looked_for}') IS NOT NULL" in sql
    if dot:
        quoted = ".".join(f'"{p}"' for p in table.split("."))
        assert f"to_regclass('{quoted}') IS NOT NULL" in sql
    else:
        assert f"to_regclass(quote_ident(current_schema()) || '.\"{table}\"') IS NOT NULL" in sql
    assert sql.count("to_regclass") == 1 + kind and "pg_attribute" not in sql


def test_without_indexes_only_the_table_and_what_is_beside_it() -> None:
    """``indexes=False`` (append, or a key arbiter of the target's own): no index is asked for."""
    sql = pg.target_ready_sql("dw.t", _cols(1), indexes=False, beside=['"dw".async_etl_landed'])
    assert sql == (
        'SELECT to_regclass(\'"dw"."t"\') IS NOT NULL\n'
        "   AND to_regclass('\"dw\".async_etl_landed') IS NOT NULL"
    )
