"""A PostgreSQL target past 1,600 columns (source columns + the SCD columns) is refused first."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.jobs_helpers import fetchval, run_cli


async def _source_and_job(dsn: str, tmp_path: Path, cols: str, more: str) -> Path:
    """public.w (id int PRIMARY KEY, ``cols``) holding one row; a job file loading it into
    dw.w, ``more`` after ``[target] table``."""
    await fetchval(dsn, f"CREATE TABLE public.w (id int PRIMARY KEY, {cols})")
    await fetchval(dsn, "INSERT INTO public.w (id) VALUES (1)")
    job = tmp_path / "w.toml"
    job.write_text(
        f'name = "w"\n[source]\nurl = "{dsn}"\ntable = "public.w"\nkey = ["id"]\n'
        f'[target]\nurl = "{dsn}"\ntable = "dw.w"\n{more}'
    )
    return job


async def _check_and_run(dsn: str, job: Path, refused: tuple[str, ...]) -> None:
    """check then run ``job``: exit 0 each (``refused`` empty), or exit 2 with a last line
    holding every word of ``refused``, no traceback and no run recorded."""
    for command in ("check", "run"):
        code, out, err = await run_cli(command, str(job), timeout=120)
        if not refused:
            assert code == 0, (command, out, err)
            continue
        assert code == 2, (command, out, err)
        line = err.strip().splitlines()[-1]
        assert all(w in line for w in refused), line
        assert "Traceback" not in err
    if refused:
        assert await fetchval(dsn, "SELECT to_regclass('async_etl_runs') IS NULL") or (
            await fetchval(dsn, "SELECT count(*) FROM async_etl_runs") == 0
        )


@pytest.mark.parametrize(("kind", "width", "refused"), [(2, 1598, True), (2, 1597, False)])
async def test_a_target_past_1600_columns_is_refused_in_preflight(
    pg_dsn: str, tmp_path: Path, kind: int, width: int, refused: bool
) -> None:
    """scd2 of 1,598 columns (+3 SCD = 1,601): check and run exit 2, one line, no run."""
    cols = ", ".join(f"c{i} int" for i in range(1, width))
    job = await _source_and_job(pg_dsn, tmp_path, cols, f"[scd]\ntype = {kind}\n")
    # before: run exit 1 after the run was recorded, 'TooManyColumnsError: tables can
    # have at most 1600 columns'; check exit 0
    await _check_and_run(pg_dsn, job, ("dw.w", f"{width + 3} columns", "1600") if refused else ())


@pytest.mark.parametrize(("added", "refused"), [(1, True), (0, False)])
async def test_an_existing_targets_dropped_columns_count_toward_the_limit(
    pg_dsn: str, tmp_path: Path, added: int, refused: bool
) -> None:
    """1,500 live + 100 dropped columns, one added: check and run exit 2; none added: loads."""
    cols = ", ".join(f"c{i} int" for i in range(1, 1600))
    await fetchval(pg_dsn, "CREATE SCHEMA dw")
    await fetchval(pg_dsn, f"CREATE TABLE dw.w (id int PRIMARY KEY, {cols})")
    drop = ", ".join(f"DROP COLUMN c{i}" for i in range(1500, 1600))
    await fetchval(pg_dsn, f"ALTER TABLE dw.w {drop}")
    live = ", ".join(f"c{i} int" for i in range(1, 1500))
    extra = ", x1 int" if added else ""
    more = 'schema_evolution = "add_columns"\n[scd]\ntype = 1\n'
    job = await _source_and_job(pg_dsn, tmp_path, live + extra, more)
    # before: check exit 0; run exit 1 after the run was recorded, at ADD COLUMN x1:
    # 'TooManyColumnsError: tables can have at most 1600 columns'
    words = ("dw.w would have 1601 columns", "100 dropped")
    await _check_and_run(pg_dsn, job, words if refused else ())
    if not refused:
        assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.w") == 1
