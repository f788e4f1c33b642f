"""What a full refresh cannot keep of a PostgreSQL target is refused by check and run alike.

A full refresh swaps a new table made LIKE the target in for it; prepare refused a target with a
trigger, a rule, row-level security, ... (``core.refresh_pg.BLOCKERS_SQL``) only once the run
was recorded, and ``check`` said OK.  Preflight now asks the same question first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.jobs_helpers import fetchval, run_cli

SETUP = {
    "trigger": [
        "CREATE FUNCTION dw.keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "CREATE TRIGGER t_keep BEFORE INSERT ON dw.t FOR EACH ROW EXECUTE FUNCTION dw.keep()",
    ],
    "rule": ["CREATE RULE r_none AS ON DELETE TO dw.t DO INSTEAD NOTHING"],
    "row-level security": ["ALTER TABLE dw.t ENABLE ROW LEVEL SECURITY"],
    "inheritance": ["CREATE TABLE dw.child () INHERITS (dw.t)"],
    "view dw.v": ["CREATE VIEW dw.v AS SELECT id FROM dw.t"],
    "foreign key": ["CREATE TABLE dw.f (id int REFERENCES dw.t (id))"],
    "publication": ["CREATE PUBLICATION p_t FOR TABLE dw.t"],
    "exclusion constraint": ["ALTER TABLE dw.t ADD CONSTRAINT x_v EXCLUDE USING btree (v WITH =)"],
}
"""What the target gets beside its rows, by the words the refusal names it with."""


@pytest.mark.parametrize("what", list(SETUP))
async def test_check_and_run_refuse_what_a_full_refresh_cannot_keep(
    pg_dsn: str, tmp_path: Path, what: str
) -> None:
    """check and run: exit 2, the same one line naming it, no run recorded, the target kept."""
    for sql in (
        "CREATE TABLE public.s (id int PRIMARY KEY, v text)",
        "INSERT INTO public.s VALUES (1, 'new')",
        "CREATE SCHEMA dw",
        "CREATE TABLE dw.t (id int PRIMARY KEY, v text)",
        "INSERT INTO dw.t VALUES (9, 'kept')",
        *SETUP[what],
    ):
        await fetchval(pg_dsn, sql)
    job = tmp_path / "t.toml"
    job.write_text(
        f'name = "t"\nmode = "full_refresh"\n[source]\nurl = "{pg_dsn}"\ntable = "public.s"\n'
        f'key = ["id"]\n[target]\nurl = "{pg_dsn}"\ntable = "dw.t"\n'
    )
    said = []
    for command in ("check", "run"):
        # before: check exit 0 'check: OK, nothing was written'; run refused at prepare,
        # after the run was recorded, naming the new table dw.t_etl_new
        code, out, err = await run_cli(command, str(job))
        assert code == 2, (command, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, (command, err)
        assert "dw.t:" in lines[0] and "full refresh" in lines[0] and what in lines[0], lines[0]
        assert "_etl_new" not in lines[0], lines[0]
        said.append(lines[0])
    assert said[0] == said[1]
    assert await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs') IS NULL") or (
        await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs") == 0
    )
    assert await fetchval(pg_dsn, "SELECT string_agg(v, ',') FROM ONLY dw.t") == "kept"


async def test_run_with_full_refresh_is_refused_before_a_run(pg_dsn: str, tmp_path: Path) -> None:
    """A merge job: run --full-refresh and check --set mode=full_refresh refuse a trigger."""
    for sql in (
        "CREATE TABLE public.s (id int PRIMARY KEY, v text)",
        "CREATE SCHEMA dw",
        "CREATE TABLE dw.t (id int PRIMARY KEY, v text)",
        *SETUP["trigger"],
    ):
        await fetchval(pg_dsn, sql)
    job = tmp_path / "t.toml"
    job.write_text(
        f'name = "t"\n[source]\nurl = "{pg_dsn}"\ntable = "public.s"\n'
        f'key = ["id"]\n[target]\nurl = "{pg_dsn}"\ntable = "dw.t"\n[scd]\ntype = 1\n'
    )
    code, out, err = await run_cli("run", "--full-refresh", str(job))
    assert code == 2, (out, err)
    assert "trigger t_keep" in err and "Traceback" not in err, err
    assert await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs') IS NULL") or (
        await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs") == 0
    )
    code, out, err = await run_cli("check", "--set", "mode=full_refresh", str(job))
    assert code == 2 and "trigger t_keep" in err, (out, err)
    code, out, err = await run_cli("check", str(job))
    assert code == 0, (out, err)  # a merge keeps the trigger: nothing to refuse
