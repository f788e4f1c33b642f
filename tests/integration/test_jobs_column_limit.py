"""A PostgreSQL target past 1,600 columns (source columns + the SCD columns) is refused first."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.jobs_helpers import fetchval, run_cli


@pytest.mark.parametrize(("kind", "width", "refused"), [(2, 1598, True), (2, 1597, False)])
async def test_a_target_past_1600_columns_is_refused_in_preflight(
    pg_dsn: str, tmp_path: Path, kind: int, width: int, refused: bool
) -> None:
    """scd2 of 1,598 columns (+3 SCD = 1,601): check and run exit 2, one line, no run."""
    cols = ", ".join(f"c{i} int" for i in range(1, width))
    await fetchval(pg_dsn, f"CREATE TABLE public.w (id int PRIMARY KEY, {cols})")
    await fetchval(pg_dsn, "INSERT INTO public.w (id) VALUES (1)")
    job = tmp_path / "w.toml"
    job.write_text(
        f'name = "w"\n[source]\nurl = "{pg_dsn}"\ntable = "public.w"\nkey = ["id"]\n'
        f'[target]\nurl = "{pg_dsn}"\ntable = "dw.w"\n[scd]\ntype = {kind}\n'
    )
    for command in ("check", "run"):
        # before: run exit 1 after the run was recorded, 'TooManyColumnsError: tables can
        # have at most 1600 columns'; check exit 0
        code, out, err = await run_cli(command, str(job), timeout=120)
        if not refused:
            assert code == 0, (command, out, err)
            continue
        assert code == 2, (command, out, err)
        line = err.strip().splitlines()[-1]
        assert "dw.w" in line and f"{width + 3} columns" in line and "1600" in line, line
        assert "Traceback" not in err
    if refused:
        assert await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs') IS NULL") or (
            await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs") == 0
        )
