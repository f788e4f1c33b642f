"""Load modes: the job file's ``mode`` key and the SQL that swaps a full refresh in."""

from __future__ import annotations

import pytest
from cratedb_sqlparse import sqlparse as crate_parse

from async_etl.core import scd_sql_pg as pg
from async_etl.core.modes import (
    crate_swap_sql,
    mode_of,
    new_table,
    oracle_swap_sql,
    pg_swap_sql,
    refresh_problem,
    synonym_swap_sql,
)
from async_etl.core.specs import ScdSpec
from async_etl.errors import ConfigError
from async_etl.jobs.spec import parse_job
from async_etl.testing.crate.sql import parse as standin_parse
from async_etl.testing.crate.sqlast import SwapTable, TableName

PG = "postgresql://postgres@127.0.0.1:5432/db"
CRATE = "http://127.0.0.1:4200"


def job(extra: str = "", scd: str = "", target: str = PG, state: str = "") -> str:
    """A small job file text."""
    return (
        f'name = "j"\n{extra}\n[source]\nurl = "{PG}"\ntable = "src.t"\nkey = ["id"]\n'
        f'[target]\nurl = "{target}"\ntable = "dw.t"\n{scd}\n{state}\n'
    )


def test_mode_defaults_follow_scd_type() -> None:
    """Without `mode` the existing keys decide: type 2 is scd2, type 1 is merge."""
    assert parse_job(job(), env={}).mode == "scd2"
    assert parse_job(job(scd="[scd]\ntype = 1"), env={}).mode == "merge"


@pytest.mark.parametrize(("text", "mode", "kind"), [
    ("merge", "merge", 1), ("scd2", "scd2", 2), ("append", "append", 1),
    ("full_refresh", "full_refresh", 1), ("replace", "full_refresh", 1),
])  # fmt: skip
def test_mode_names_and_implied_scd_type(text: str, mode: str, kind: int) -> None:
    """Each mode name (and `replace`) maps to its mode and SCD type."""
    spec = parse_job(job(f'mode = "{text}"'), env={})
    assert (spec.mode, spec.scd.type) == (mode, kind)


def test_full_refresh_keeps_type_2_shape_and_drops_deletes() -> None:
    """A full refresh of a type-2 job keeps type 2 and needs no delete detection."""
    scd = '[scd]\ntype = 2\ndeletes = "expire"'
    spec = parse_job(job(scd=scd), env={}, overrides=["mode=full_refresh"])
    assert (spec.mode, spec.scd.type, spec.scd.deletes) == ("full_refresh", 2, "ignore")


COMPARE_ONLY = [("deletes", '"expire"'), ("tracked", '["v"]'), ("overwrite", '["w"]')]
"""The ``[scd]`` keys that only say how a merge / SCD2 run compares source and target."""


@pytest.mark.parametrize("mode", ["full_refresh", "replace"])
@pytest.mark.parametrize(("key", "value"), COMPARE_ONLY)
def test_a_full_refresh_job_file_refuses_the_keys_of_a_comparison(
    mode: str, key: str, value: str
) -> None:
    """`mode = "full_refresh"` with [scd] deletes / tracked / overwrite: one line, file and key."""
    scd = f"[scd]\ntype = 2\n{key} = {value}"
    with pytest.raises(ConfigError) as info:
        parse_job(job(f'mode = "{mode}"', scd), path="jobs/t.toml", env={})
    message = str(info.value)
    assert message.startswith(f"job file jobs/t.toml: [scd] {key}: not with mode full_refresh")
    assert "replaces the table" in message and "\n" not in message


@pytest.mark.parametrize(("key", "value"), COMPARE_ONLY)
def test_a_full_refresh_from_the_environment_refuses_them_too(key: str, value: str) -> None:
    """ASYNC_ETL_MODE=full_refresh is the job's own mode: a written comparison key is refused."""
    with pytest.raises(ConfigError, match=f"\\[scd\\] {key}: not with mode full_refresh"):
        parse_job(job(scd=f"[scd]\ntype = 2\n{key} = {value}"),
                  env={"ASYNC_ETL_MODE": "full_refresh"})  # fmt: skip


@pytest.mark.parametrize(("key", "value"), COMPARE_ONLY)
@pytest.mark.parametrize("head", ['mode = "scd2"', 'mode = "full_refresh"'])
def test_a_comparison_key_set_for_a_full_refresh_run_is_refused(
    head: str, key: str, value: str
) -> None:
    """`--set scd.<key>=...` with a full-refresh run would do nothing: refused, naming the --set."""
    with pytest.raises(ConfigError) as info:
        parse_job(job(head, "[scd]\ntype = 2"), env={},
                  overrides=["mode=full_refresh", f"scd.{key}={value}"])  # fmt: skip
    assert f"--set scd.{key}={value}: not with mode full_refresh" in str(info.value)


def test_full_refresh_run_of_a_merge_or_scd2_job_sets_its_comparison_aside() -> None:
    """`--full-refresh` over an scd2 job with those keys runs; the spec carries none of them."""
    scd = '[scd]\ntype = 2\ndeletes = "expire"\ntracked = ["v"]\noverwrite = ["w"]'
    spec = parse_job(job('mode = "scd2"', scd), env={}, overrides=["mode=full_refresh"])
    assert (spec.mode, spec.scd.type) == ("full_refresh", 2)
    assert (spec.scd.deletes, spec.scd.tracked, spec.scd.overwrite) == ("ignore", None, ())
    kept = parse_job(job('mode = "scd2"', scd), env={})
    assert (kept.scd.deletes, kept.scd.tracked, kept.scd.overwrite) == ("expire", ("v",), ("w",))


@pytest.mark.parametrize("key", ["business_key", "valid_from", "valid_to", "is_current"])
def test_a_full_refresh_keeps_the_keys_that_shape_its_table(key: str) -> None:
    """[scd] business_key and the validity column names shape the new table: still accepted."""
    value = '["id", "k"]' if key == "business_key" else '"x_col"'
    spec = parse_job(job('mode = "full_refresh"', f"[scd]\ntype = 2\n{key} = {value}"), env={})
    assert spec.mode == "full_refresh" and spec.scd.type == 2


@pytest.mark.parametrize(("extra", "scd", "target", "state", "message"), [
    ('mode = "upsert"', "", PG, "", "mode: expected one of merge, scd2, append, full_refresh"),
    ('mode = "merge"', "[scd]\ntype = 2", PG, "", "mode merge is SCD type 1, got type 2"),
    ('mode = "append"', '[scd]\ntracked = ["a"]', PG, "", "mode append takes no [scd] keys"),
    ('mode = "append"', "", CRATE, f'[state]\nurl = "{PG}"', "append is exactly once only"),
    ('mode = "append"', "", PG, '[state]\nurl = "postgresql://h/other"',
     "append is exactly once only"),
])  # fmt: skip
def test_bad_mode_combinations_are_one_line(
    extra: str, scd: str, target: str, state: str, message: str
) -> None:
    """A wrong mode, or one that contradicts the rest of the file, is a one-line ConfigError."""
    with pytest.raises(ConfigError) as info:
        parse_job(job(extra, scd, target, state), env={})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_full_refresh_refuses_incremental() -> None:
    """A full refresh reads everything: an incremental cursor is refused."""
    text = job('mode = "full_refresh"').replace('key = ["id"]', 'key = ["id"]\nincremental = "ts"')
    with pytest.raises(ConfigError, match="full_refresh reads the whole source"):
        parse_job(text, env={})


def test_append_refuses_incremental() -> None:
    """Append + incremental would insert the re-read boundary rows twice: refused in one line."""
    text = job('mode = "append"').replace('key = ["id"]', 'key = ["id"]\nincremental = "ts"')
    with pytest.raises(ConfigError, match="not with mode append") as info:
        parse_job(text, env={})
    assert "\n" not in str(info.value)


def test_mode_of_rejects_unknown() -> None:
    """An unknown mode name raises ValueError naming the choices."""
    with pytest.raises(ValueError, match="full_refresh"):
        mode_of("snapshot")


def test_pg_swap_renames_table_and_its_index_to_the_target_names() -> None:
    """PostgreSQL swap: drop old, rename new, rename the new table's key index to the old name."""
    cols = ScdSpec(type=1, business_key=("id",)).resolve(["id", "v"])
    ddl = " ".join(st.text for st in pg.target_ddl(new_table("dw.t"), [("id", "int")], cols))
    texts = [st.text for st in pg_swap_sql("dw.t", cols)]
    assert texts == [
        'DROP TABLE IF EXISTS "dw"."t"',
        'ALTER TABLE "dw"."t_etl_new" RENAME TO "t"',
        'ALTER INDEX IF EXISTS "dw"."t_etl_new_bk" RENAME TO "t_bk"',
    ]
    assert '"t_etl_new_bk"' in ddl


def test_pg_swap_of_type_2_renames_both_indexes() -> None:
    """A type-2 full refresh renames the version and the current-row index."""
    cols = ScdSpec(type=2, business_key=("id",)).resolve(["id", "v"])
    texts = [st.text for st in pg_swap_sql("t", cols)]
    assert texts[2:] == [
        'ALTER INDEX IF EXISTS "t_etl_new_version" RENAME TO "t_version"',
        'ALTER INDEX IF EXISTS "t_etl_new_current" RENAME TO "t_current"',
    ]


def test_crate_swap_is_valid_cratedb_sql_and_parsed_by_standin() -> None:
    """The CrateDB swap statement parses in CrateDB's grammar and in the stand-in."""
    text = crate_swap_sql("dw.t")
    assert text == 'ALTER CLUSTER SWAP TABLE "dw"."t_etl_new" TO "dw"."t" WITH (drop_source = true)'
    crate_parse(text, raise_exception=True)
    assert standin_parse(text) == SwapTable(
        TableName("dw", "t_etl_new"), TableName("dw", "t"), True
    )


def test_oracle_swap_sql_renames_then_drops() -> None:
    """Oracle: rename the old away, the new in, purge the old; a first refresh only renames."""
    texts = [st.text for st in oracle_swap_sql("dw.t", exists=True)]
    assert texts == [
        'ALTER TABLE "DW"."T" RENAME TO "T_ETL_OLD"',
        'ALTER TABLE "DW"."T_ETL_NEW" RENAME TO "T"',
        'DROP TABLE "DW"."T_ETL_OLD" PURGE',
    ]
    assert [st.text for st in oracle_swap_sql("dw.t", exists=False)] == [texts[1]]
    assert (
        synonym_swap_sql("dw.t", "dw.t_b").text
        == 'CREATE OR REPLACE SYNONYM "DW"."T" FOR "DW"."T_B"'
    )


def test_refresh_problem_refuses_to_drop_history_or_the_type_2_shape() -> None:
    """A full refresh may rebuild a table unless it would lose history or the type-2 columns."""
    two = ScdSpec(type=2, business_key=("id",)).resolve(["id", "v"])
    one = ScdSpec(type=1, business_key=("id",)).resolve(["id", "v"])
    type2 = ["id", "v", "valid_from", "valid_to", "is_current"]
    assert refresh_problem("d.t", two, None, history=False) is None
    assert refresh_problem("d.t", one, ["id", "v"], history=False) is None
    assert refresh_problem("d.t", two, type2, history=False) is None
    assert "type-2 table" in str(refresh_problem("d.t", one, type2, history=False))
    assert "type-2 table" in str(refresh_problem("d.t", one, [c.upper() for c in type2], False))
    assert "expired versions" in str(refresh_problem("d.t", two, type2, history=True))


def test_a_resumed_plan_must_have_been_stored_in_the_same_mode() -> None:
    """Only the same mode and type resume, or an initial load's full refresh under its job."""
    from async_etl.core.modes import resume_problem

    assert resume_problem(["merge", 1], "merge", 1) is None
    assert resume_problem(None, "full_refresh", 1) is None  # a plan stored before modes were
    assert resume_problem(["full_refresh", 2], "scd2", 2) is None  # the initial load, resumed
    refused = resume_problem(["merge", 1], "full_refresh", 1)
    assert refused is not None and "unfinished as a merge load" in refused
    assert resume_problem(["full_refresh", 1], "scd2", 2) is not None
    assert resume_problem(["scd2", 2], "append", 2) is not None
    assert resume_problem(["full_refresh", 2], "full_refresh", 1) is not None
