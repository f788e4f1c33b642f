"""A mixed-case PostgreSQL target (``dw.MixedCase``) is the table named, as typed, everywhere.

Names are quoted, so they keep their case; the existence checks must quote them too, or
``to_regclass`` folds ``dw.MixedCase`` to ``dw.mixedcase`` and finds nothing: the swap of a
full refresh was skipped as "already committed" (the data stayed in ``MixedCase_etl_new``),
an existing target's grants were not carried over, and a type-2 target's history read as
absent, so a full refresh would have dropped it.
"""

from __future__ import annotations

from async_etl.core.modes import new_table
from tests.integration.jobs_helpers import at, fetchval, history, load_source, run_cli

OWN = '"dw"."MixedCase"'


def copy_flags(dsn: str, table: str, *flags: str) -> list[str]:
    """``copy`` of ``src.t`` into ``table`` keyed on (a, b)."""
    return ["copy", "--source", dsn, "--source-table", "src.t", "--target", dsn,
            "--target-table", table, "--key", "a,b", *flags]  # fmt: skip


async def test_replace_into_a_mixed_case_target_swaps_it_in_and_keeps_grants(
    pg_dsn: str,
) -> None:
    """copy (replace) into dw.MixedCase leaves it loaded, no new table behind, grants kept."""
    (rows,) = history(seed=41, n_keys=150, runs=1)
    await load_source(pg_dsn, rows)
    code, _, err = await run_cli(*copy_flags(pg_dsn, "dw.MixedCase"))
    assert code == 0, err
    assert await fetchval(pg_dsn, f"SELECT count(*) FROM {OWN}") == len(rows)
    left = f'"dw"."{new_table("dw.MixedCase").partition(".")[2]}"'
    assert await fetchval(pg_dsn, "SELECT to_regclass($1)", left) is None
    await fetchval(pg_dsn, f"GRANT SELECT ON {OWN} TO PUBLIC")  # no role outlives the test
    code, _, err = await run_cli(*copy_flags(pg_dsn, "dw.MixedCase", "--full-refresh"))
    assert code == 0, err
    assert await fetchval(pg_dsn, f"SELECT count(*) FROM {OWN}") == len(rows)
    assert await fetchval(pg_dsn, "SELECT to_regclass($1)", left) is None
    granted = "SELECT has_table_privilege('public', $1, 'SELECT')"
    assert await fetchval(pg_dsn, granted, OWN) is True


async def test_full_refresh_refuses_to_drop_a_mixed_case_tables_history(pg_dsn: str) -> None:
    """A full refresh of type-2 dw.MixedHist holding expired versions refuses, untouched."""
    first, second = history(seed=42, n_keys=150, runs=2)
    base = copy_flags(pg_dsn, "dw.MixedHist", "--mode", "scd2")
    for day, rows in enumerate((first, second)):
        await load_source(pg_dsn, rows)
        code, _, err = await run_cli(*base, "--as-of", at(day).isoformat())
        assert code == 0, err
    expired = 'SELECT count(*) FROM "dw"."MixedHist" WHERE NOT is_current'
    before = await fetchval(pg_dsn, expired)
    assert before > 0
    code, _, err = await run_cli(*base, "--full-refresh")
    assert code == 2, err
    assert "expired versions" in err and "Traceback" not in err
    assert await fetchval(pg_dsn, expired) == before
