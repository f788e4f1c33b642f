"""PostgreSQL values Python cannot hold as they are: end-of-time dates copied exactly, cursors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from async_etl.core.chunks import Chunk
from async_etl.jobs import runner
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from async_etl.jobs.spec import JobSpec
from async_etl.sources.postgres import PgSource
from tests.integration.jobs_helpers import at, fetchval, run_cli, spec_of, write
from tests.integration.test_jobs_widening import BLANK_CUT, check_blank_cut


class PythonRows:
    """A PostgreSQL source read as Python values and handed over by ``batches``, as Oracle's is.

    Not a ``PgSource`` (it delegates to one), so the PostgreSQL target copies its rows with
    ``copy_records_to_table`` as it does an Oracle source's.
    """

    def __init__(self, inner: PgSource) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def batches(self, conn: Any, chunk: Chunk, size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        return self._inner.batches(conn, chunk, size)


async def test_end_of_time_dates_from_python_rows_are_not_stored_as_infinity(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """9999-12-31 and 0001-01-01 (Oracle's 'end of time') land as themselves, not ±infinity."""
    _python_rows(monkeypatch)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE src (id int PRIMARY KEY, d date, ts timestamptz)")
        await conn.execute(
            "INSERT INTO src VALUES (1, '9999-12-31', '9999-12-31 23:59:59.999999+00'), "
            "(2, '0001-01-01', '0001-01-01 00:00:00+00'), (3, '2024-01-01', NULL)"
        )
    finally:
        await conn.close()
    text = f"""
name = "pyrows"
[source]
url = "{pg_dsn}"
table = "src"
key = ["id"]
[target]
url = "{pg_dsn}?application_name=target"
table = "dw_rows"
[scd]
type = 1
[parallel]
enabled = false
"""
    result = await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
    assert result.status == "SUCCEEDED", result.error
    assert result.inserted == 3
    rows = await fetchval(pg_dsn, "SELECT string_agg(id || ' ' || d || ' ' || coalesce("
                                  "ts::text, '-'), '; ' ORDER BY id) FROM dw_rows")  # fmt: skip
    assert rows == ("1 9999-12-31 9999-12-31 23:59:59.999999+00; 2 0001-01-01 0001-01-01 "
                    "00:00:00+00; 3 2024-01-01 -")  # fmt: skip
    same = "SELECT count(*) FROM src s JOIN dw_rows t USING (id) WHERE s.d = t.d"
    assert await fetchval(pg_dsn, same + " AND s.ts IS NOT DISTINCT FROM t.ts") == 3


async def test_a_cursor_past_year_9999_is_one_line_not_a_traceback(
    pg_dsn: str, tmp_path: Path
) -> None:
    """An incremental cursor whose maximum is 12345-01-01: exit 2, one line naming the column."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE src (id int PRIMARY KEY, c date)")
        await conn.execute("INSERT INTO src VALUES (1, '2024-01-01'), (2, '12345-01-01')")
    finally:
        await conn.close()
    text = f"""
name = "cur"
[source]
url = "{pg_dsn}"
table = "src"
key = ["id"]
incremental = "c"
[target]
url = "{pg_dsn}"
table = "dw_cur"
[scd]
type = 1
"""
    code, out, err = await run_cli("run", str(write(tmp_path, "job.toml", text)))
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "source cursor column c: its highest value 12345-01-01 has no Python form" in lines[0]


def _python_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every job's PostgreSQL source handed over as Python rows, as an Oracle source's are."""
    made = runner.make_source

    def python_rows(spec: JobSpec, window: Any = None) -> Any:
        source = made(spec, window)
        return PythonRows(source) if isinstance(source, PgSource) else source

    monkeypatch.setattr(runner, "make_source", python_rows)


@pytest.mark.parametrize("on_bad_row", ["fail", "reject"])
@pytest.mark.parametrize("pair", list(BLANK_CUT))
async def test_python_rows_varchar_would_cut_are_never_stored_changed(
    pg_server_dsn: str, monkeypatch: pytest.MonkeyPatch, pair: str, on_bad_row: str
) -> None:
    """Python rows (an Oracle source's path): 'abc  ' into varchar(3) fails or is rejected."""
    _python_rows(monkeypatch)
    await check_blank_cut(pg_server_dsn, pair, on_bad_row, "another")
