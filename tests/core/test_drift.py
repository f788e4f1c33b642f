"""Schema drift: source vs existing target columns, the one-line refusal, ADD COLUMN per target."""

from __future__ import annotations

import pytest
from cratedb_sqlparse import sqlparse as crate_parse

from async_etl.core import drift
from async_etl.core.drift import Drift
from async_etl.errors import ConfigError
from async_etl.jobs.coltypes import crate_type, oracle_type
from async_etl.jobs.spec import parse_job

SOURCE = [("id", "bigint"), ("name", "text"), ("email", "character varying(40)")]
META = ("valid_from", "valid_to", "is_current")


def _same(t: str) -> str:
    return t


def test_compare_sorts_added_dropped_and_retyped() -> None:
    """A new source column is added, a vanished one dropped, a changed family retyped."""
    target = [("id", "bigint"), ("name", "integer"), ("city", "text"),
              ("valid_from", "timestamp with time zone"), ("is_current", "boolean")]  # fmt: skip
    found = drift.compare(SOURCE, target, META, _same, drift.sql_fits)
    assert found == Drift(
        added=(("email", "character varying(40)"),),
        dropped=(("city", "text"),),
        retyped=(("name", "text", "integer"),),
        missing_meta=("valid_to",),
    )


def test_compare_of_a_matching_target_is_empty() -> None:
    """The table a job created from these columns shows no drift (SCD columns ignored)."""
    target = [*SOURCE, ("valid_from", "timestamptz"), ("valid_to", "timestamptz"),
              ("is_current", "boolean")]  # fmt: skip
    assert drift.compare(SOURCE, target, META, _same, drift.sql_fits).empty


def test_names_fold_only_for_oracle() -> None:
    """Oracle's upper-case target names match; PostgreSQL's ``Email`` and ``email`` differ."""
    source = [("id", "bigint"), ("email", "text")]
    upper = [("ID", "NUMBER(19)"), ("EMAIL", "VARCHAR2(4000)")]
    assert drift.compare(source, upper, (), oracle_type, drift.oracle_fits, fold=True).empty
    mixed = [("id", "bigint"), ("Email", "text")]
    found = drift.compare(source, mixed, (), _same, drift.sql_fits)
    assert (found.added, found.dropped) == ((("email", "text"),), (("Email", "text"),))


@pytest.mark.parametrize(
    ("source", "target"),
    [("integer", "bigint"), ("smallint", "integer"), ("bigint", "numeric"),
     ("character varying(20)", "text"), ("text", "character varying(5)"),
     ("real", "double precision"), ("numeric(12,2)", "numeric"), ("numeric(12,2)", "numeric(14,4)"),
     ("integer[]", "ARRAY(INTEGER)"), ("text[]", "text_array"), ("INTEGER", "integer"),
     ("timestamp(3) with time zone", "timestamp with time zone"),
     ("timestamp(0) without time zone", "timestamp(3) without time zone"),
     ("time(2) without time zone", "time without time zone"),
     ("character(3)", "character(5)"), ("character(3)[]", "text[]"),
     ("character varying(3)[]", "character varying(5)[]"),
     ("character(5)[]", "character varying(3)[]"), ("integer", "numeric(12,2)"),
     ("bigint", "numeric(30,4)"), ("interval second(0)", "interval second(3)"),
     ("interval(3)", "interval(3)")],
)  # fmt: skip
def test_widening_fits(source: str, target: str) -> None:
    """Every source value fits the target unchanged, or the database refuses it loudly."""
    assert drift.sql_fits(source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [("text", "integer"), ("integer", "text"), ("double precision", "real"),
     ("double precision", "bigint"), ("numeric(12,2)", "numeric(12,1)"),
     ("numeric", "numeric(10,2)"),
     ("numeric(5,2)", "bigint"), ("timestamp with time zone", "timestamp without time zone"),
     ("json", "jsonb"), ("integer[]", "integer"), ("text", "text_array"), ("date", "timestamp"),
     ("timestamp with time zone", "timestamp(0) with time zone"),
     ("timestamp(6) without time zone", "timestamp(3) without time zone"),
     ("text", "character(3)"), ("character varying(3)[]", "character(3)[]"),
     ("text[]", "character varying(3)[]"),
     ("character varying(5)[]", "character varying(3)[]"),
     ("time without time zone", "time(0) without time zone"),
     ("interval", "interval(0)"), ("interval second", "interval second(0)"),
     ("interval day to second(6)", "interval day to second(3)"),
     ("interval", "interval day"), ("integer", "numeric(12,-2)")],
)  # fmt: skip
def test_value_changing_types_do_not_fit(source: str, target: str) -> None:
    """Another family, a narrower float or a rounding scale counts as retyped."""
    assert not drift.sql_fits(source, target)


@pytest.mark.parametrize(
    "pg_type", ["bigint", "text", "integer[]", "double precision", "timestamp with time zone"]
)
def test_crate_target_created_by_a_job_fits_its_source(pg_type: str) -> None:
    """CrateDB's information_schema names match ``crate_type`` of the source type."""
    reported = crate_type(pg_type).lower().replace("array(", "").replace(")", "_array")
    assert drift.sql_fits(crate_type(pg_type), reported)


@pytest.mark.parametrize(
    ("fields", "want"),
    [(("NUMBER", 19, 0, None), "NUMBER(19)"), (("NUMBER", None, None, None), "NUMBER"),
     (("NUMBER", 12, 2, None), "NUMBER(12,2)"), (("VARCHAR2", None, None, 40), "VARCHAR2(40 CHAR)"),
     (("TIMESTAMP(6) WITH TIME ZONE", None, 6, None), "TIMESTAMP WITH TIME ZONE"),
     (("TIMESTAMP(6)", None, 6, None), "TIMESTAMP"),
     (("TIMESTAMP(0) WITH TIME ZONE", None, 0, None), "TIMESTAMP(0) WITH TIME ZONE"),
     (("TIMESTAMP(3)", None, 3, None), "TIMESTAMP(3)"),
     (("TIMESTAMP(9)", None, 9, None), "TIMESTAMP"), (("BINARY_DOUBLE", None, None, None),
                                                      "BINARY_DOUBLE")],
)  # fmt: skip
def test_oracle_column_type_from_all_tab_columns(fields: tuple, want: str) -> None:  # type: ignore[type-arg]
    """``all_tab_columns`` fields give the type as ``oracle_type`` spells it."""
    assert drift.oracle_column_type(*fields) == want


@pytest.mark.parametrize("pg_type", ["bigint", "integer", "text", "character varying(20)",
                                     "numeric(12,2)", "numeric", "double precision", "boolean",
                                     "timestamp with time zone", "date"])  # fmt: skip
def test_oracle_target_created_by_a_job_fits_its_source(pg_type: str) -> None:
    """The Oracle type a job creates, read back from all_tab_columns, fits its source."""
    made = oracle_type(pg_type)
    base = made.split("(")[0]
    mods = made[len(base) :].strip("()").split(",") if "(" in made else []
    precision = int(mods[0].split()[0]) if mods and base == "NUMBER" else None
    scale = (int(mods[1]) if len(mods) > 1 else 0) if precision is not None else None
    length = int(mods[0].split()[0]) if mods and base != "NUMBER" else None
    assert drift.oracle_fits(made, drift.oracle_column_type(base, precision, scale, length))


@pytest.mark.parametrize(
    ("pg_type", "target", "ok"),
    [("timestamp(0) without time zone", ("TIMESTAMP(0)", None, 0, None), True),
     ("timestamp(0) with time zone", ("TIMESTAMP(0) WITH TIME ZONE", None, 0, None), True),
     ("timestamp(3) without time zone", ("TIMESTAMP(3)", None, 3, None), True),
     ("timestamp(3) without time zone", ("TIMESTAMP(0)", None, 0, None), False),
     ("timestamp(0) without time zone", ("TIMESTAMP(3)", None, 3, None), True),
     ("timestamp without time zone", ("TIMESTAMP(3)", None, 3, None), False),
     ("timestamp(6) with time zone", ("TIMESTAMP(6) WITH TIME ZONE", None, 6, None), True),
     ("timestamp(3) with time zone", ("TIMESTAMP(9) WITH TIME ZONE", None, 9, None), True),
     ("timestamp(3) with time zone", ("TIMESTAMP(3)", None, 3, None), False),
     ("numeric(12,2)", ("NUMBER", 12, 2, None), True),
     ("numeric(12,4)", ("NUMBER", 12, 2, None), False),
     ("numeric(5)", ("NUMBER", 5, 0, None), True), ("integer", ("NUMBER", 12, 2, None), True),
     ("numeric", ("NUMBER", 12, 2, None), False), ("integer", ("NUMBER", 5, -2, None), False)],
)  # fmt: skip
def test_pg_precision_into_an_oracle_column(pg_type: str, target: tuple, ok: bool) -> None:  # type: ignore[type-arg]
    """A PostgreSQL type with a precision fits an Oracle column iff no value's digits are lost."""
    assert drift.oracle_fits(oracle_type(pg_type), drift.oracle_column_type(*target)) is ok


@pytest.mark.parametrize(
    ("pg_type", "want"),
    [("timestamp(0) without time zone", "TIMESTAMP(0)"),
     ("timestamp(3) with time zone", "TIMESTAMP(3) WITH TIME ZONE"),
     ("timestamp(6) with time zone", "TIMESTAMP WITH TIME ZONE"),
     ("timestamp without time zone", "TIMESTAMP"), ("numeric(12,2)", "NUMBER(12,2)")],
)  # fmt: skip
def test_oracle_type_keeps_a_timestamp_precision(pg_type: str, want: str) -> None:
    """A job makes an Oracle column of the source's precision (was VARCHAR2(4000) with one)."""
    assert oracle_type(pg_type) == want


@pytest.mark.parametrize(
    ("source", "target", "ok"),
    [("NUMBER(19)", "NUMBER(12,2)", True), ("NUMBER(12,2)", "NUMBER(19)", False),
     ("NUMBER", "NUMBER(19)", False), ("VARCHAR2(4000)", "CLOB", True),
     ("BINARY_DOUBLE", "NUMBER", False), ("BINARY_FLOAT", "BINARY_DOUBLE", True),
     ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP", False), ("VARCHAR2(4000)", "CHAR(3 CHAR)", False),
     ("CLOB", "NCHAR(3 CHAR)", False), ("CHAR(3 CHAR)", "CHAR(5 CHAR)", True),
     ("CHAR(3 CHAR)", "VARCHAR2(10 CHAR)", True),
     ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP(0) WITH TIME ZONE", False),
     ("TIMESTAMP", "TIMESTAMP(3)", False), ("TIMESTAMP(3)", "TIMESTAMP", True),
     ("TIMESTAMP(0) WITH TIME ZONE", "TIMESTAMP(0) WITH TIME ZONE", True)],
)  # fmt: skip
def test_oracle_fits(source: str, target: str, ok: bool) -> None:
    """Oracle: text into any text but CHAR, NUMBER only without rounding, no family change."""
    assert drift.oracle_fits(source, target) is ok


@pytest.mark.parametrize(
    ("found", "needle"),
    [(Drift(added=(("email", "text"), ("tier", "integer"))),
      'the source has column "email" (text) that target dw.dim lacks (and 1 more: tier)'),
     (Drift(dropped=(("city", "text"),)), 'target dw.dim has column "city" (text) that the '
      "source no longer has"),
     (Drift(added=(("email", "text"),), retyped=(("v", "text", "integer"),)),
      'column "v" of target dw.dim is integer, but the source now gives text values')],
)  # fmt: skip
def test_decide_refuses_in_one_line_naming_the_column(found: Drift, needle: str) -> None:
    """Without evolution any drift is one line naming its first column (retyped first)."""
    problem, add = drift.decide(found, "dw.dim", "none")
    assert problem is not None and needle in problem and "\n" not in problem, problem
    assert add == ()


def test_type2_target_without_scd_columns_is_refused() -> None:
    """A type-2 job on a table without valid_from / valid_to / is_current: one line."""
    target = [*SOURCE, ("valid_to", "timestamp with time zone")]
    found = drift.compare(SOURCE, target, META, _same, drift.sql_fits)
    assert found.missing_meta == ("valid_from", "is_current")
    problem, add = drift.decide(found, "dw.dim", "add_columns")
    assert problem is not None and "lacks the SCD column(s) valid_from, is_current" in problem
    assert add == ()


def test_decide_with_add_columns_evolves_only_added_columns() -> None:
    """``add_columns`` adds new columns; dropped and retyped ones are still refused."""
    added = Drift(added=(("email", "text"),))
    assert drift.decide(added, "t", "add_columns") == (None, (("email", "text"),))
    dropped = Drift(added=(("email", "text"),), dropped=(("city", "text"),))
    problem, add = drift.decide(dropped, "t", "add_columns")
    assert problem is not None and '"city"' in problem and add == ()


def test_add_column_sql_per_dialect() -> None:
    """Nullable ADD COLUMN in each dialect's quoting; CrateDB's grammar accepts its form."""
    assert drift.add_column_sql("postgresql", "dw.dim", "email", "text").text == (
        'ALTER TABLE "dw"."dim" ADD COLUMN IF NOT EXISTS "email" text'
    )
    assert drift.add_column_sql("oracle", "dw.dim", "email", "VARCHAR2(40 CHAR)").text == (
        'ALTER TABLE "DW"."DIM" ADD ("EMAIL" VARCHAR2(40 CHAR))'
    )
    crate = drift.add_column_sql("cratedb", "dw.dim", "tags", "ARRAY(TEXT)").text
    assert crate == 'ALTER TABLE "dw"."dim" ADD COLUMN "tags" ARRAY(TEXT)'
    crate_parse(crate, raise_exception=True)
    crate_parse(drift.target_columns_sql("cratedb").text, raise_exception=True)
    with pytest.raises(ValueError, match="bad identifier"):
        drift.add_column_sql("postgresql", "dw.dim", "e; drop", "text")


def _job(extra: str) -> str:
    return ('name = "j"\n[source]\nurl = "postgresql://u@h/db"\ntable = "s"\nkey = ["id"]\n'
            f'[target]\nurl = "postgresql://u@h/db"\ntable = "t"\n{extra}\n')  # fmt: skip


def test_schema_evolution_setting_is_read_and_checked() -> None:
    """``[target] schema_evolution``: default none, add_columns accepted, others one line."""
    assert parse_job(_job(""), env={}).target.schema_evolution == "none"
    spec = parse_job(_job('schema_evolution = "add_columns"'), env={})
    assert spec.target.schema_evolution == "add_columns"
    with pytest.raises(ConfigError, match=r"\[target\] schema_evolution: expected 'none' or"):
        parse_job(_job('schema_evolution = "drop_columns"'), env={})


@pytest.mark.parametrize(
    ("column", "got", "needle"),
    [("valid_from", "timestamp without time zone", "needs timestamp with time zone"),
     ("valid_to", "date", 'column "valid_to" of target dw.t is date'),
     ("is_current", "integer", "needs boolean")],
)  # fmt: skip
def test_pg_scd_columns_of_another_type_are_refused(column: str, got: str, needle: str) -> None:
    """A PostgreSQL type-2 table made with timestamp / date / integer SCD columns is refused."""
    cols = {"valid_from": "timestamp with time zone", "valid_to": "timestamp(3) with time zone",
            "is_current": "boolean"}  # fmt: skip
    target = [("id", "integer"), *{**cols, column: got}.items()]
    problem = drift.pg_scd_type_problem(target, "valid_from", "valid_to", "is_current", "dw.t")
    assert problem is not None and needle in problem
    ok = [("id", "integer"), *cols.items()]
    assert drift.pg_scd_type_problem(ok, "valid_from", "valid_to", "is_current", "dw.t") is None


def test_pg_types_to_check_asks_only_about_types_not_built_in() -> None:
    """Built-in types (with modifiers, arrays) need no question; enums, composites do, once."""
    columns = [("a", "integer"), ("b", "character varying(20)[]"), ("c", "numeric(10,2)"),
               ("d", "timestamp with time zone"), ("e", "mood"), ("f", "mood[]"),
               ("g", "s.pair"), ("h", "mood"), ("i", '"Mood"'), ("j", '"char"')]  # fmt: skip
    assert drift.pg_types_to_check(columns) == ("mood", "mood[]", "s.pair", '"Mood"')
    assert drift.pg_types_to_check([("id", "bigint"), ("t", "text"), ("j", "jsonb")]) == ()


@pytest.mark.parametrize(
    ("key", "parts", "needle"),
    [(("id",), ("region",), "the key (id) lacks the partition key (region)"),
     (("id", "region"), ("region",), None), (("id",), (), None),
     (("id", "d"), ("d", None), "(d, an expression)"), (("id",), ("id",), None)],
)  # fmt: skip
def test_a_partition_key_outside_the_key_is_a_problem(
    key: tuple[str, ...], parts: tuple[str | None, ...], needle: str | None
) -> None:
    """A merge key must hold every partition key column; an expression never fits."""
    problem = drift.pg_partition_key_problem(key, parts)
    assert problem is None if needle is None else needle in (problem or "")


def test_near_table_hint_names_a_table_differing_in_case_only() -> None:
    """NZ vs nz: a hint written as typed (schema only when given); none for no or the same."""
    from async_etl.core.drift import near_table_args, near_table_hint

    assert near_table_args("NZ") == (None, "NZ") and near_table_args("s.NZ") == ("s", "NZ")
    assert near_table_hint("NZ", ("public", "nz")).startswith("; a table nz exists (")
    assert near_table_hint("S.NZ", ("s", "nz")).startswith("; a table s.nz exists (")
    assert near_table_hint("NZ", None) == "" and near_table_hint("s.nz", ("s", "nz")) == ""


def test_a_pg_target_past_1600_columns_is_a_problem() -> None:
    """1,597 + 3 SCD columns fit; 1,598 + 3 do not, and the line says how many and why."""
    from async_etl.core.drift import pg_column_count_problem

    assert pg_column_count_problem("dw.w", 1597, 3) is None
    assert pg_column_count_problem("dw.w", 1600, 0) is None
    line = pg_column_count_problem("dw.w", 1598, 3)
    assert line is not None and line.startswith("target dw.w would have 1601 columns (1598")
    assert "at most 1600" in line


def test_a_pg_targets_dropped_columns_count_toward_1600() -> None:
    """1,500 + 100 dropped fit; 1,501 + 100 dropped do not, and the line names the dropped."""
    assert drift.pg_column_count_problem("dw.w", 1500, 0, 100) is None
    line = drift.pg_column_count_problem("dw.w", 1498, 3, 100) or ""
    assert line.startswith("target dw.w would have 1601 columns (1498 source + 3 SCD + 100 "
                           "dropped, which still count)")  # fmt: skip


def test_a_full_refresh_into_any_partitioned_table_is_a_problem() -> None:
    """A full refresh swaps in a table made LIKE the target: refused when it is partitioned."""
    assert drift.pg_partitioned_refresh_problem(()) is None
    problem = drift.pg_partitioned_refresh_problem(("region", None)) or ""
    assert "would not be partitioned (by region, an expression)" in problem, problem
    assert 'mode = "merge"' in problem


@pytest.mark.parametrize(
    ("data_type", "length", "listed"),
    [
        ("character varying", 3, "character varying(3)"),  # the stand-in's name
        ("text", 3, "character varying(3)"),  # CrateDB's name for VARCHAR(3) (StringType)
        ("character", 3, "character(3)"),  # CHAR(3) / CHARACTER(3)
        ("character", 1, "character(1)"),  # CHARACTER without a length
        ("text", None, "text"),
        ("text_array", None, "text_array"),
        ("bigint", None, "bigint"),
    ],
)
def test_crate_listed_type_keeps_the_length_of_every_character_type(
    data_type: str, length: int | None, listed: str
) -> None:
    """information_schema's data_type and character_maximum_length give VARCHAR(n) / CHAR(n)."""
    assert drift.crate_listed_type(data_type, length) == listed


@pytest.mark.parametrize("source", ["text", "character varying(5)", "character(3)"])
def test_a_text_source_fits_a_crate_character_n_target_checked_per_row(source: str) -> None:
    """Into CrateDB CHARACTER(n) a text fits (each value is checked for n characters per row)."""
    assert drift.crate_fits(crate_type(source), "character(3)")
    assert not drift.crate_fits(crate_type("bigint"), "character(3)")
    assert not drift.crate_fits(crate_type(f"{source}[]"), "character(3)")
    assert drift.crate_fits(crate_type(source), "text")  # as sql_fits


DDL = """CREATE TABLE IF NOT EXISTS "doc"."t" (
   "id" BIGINT,
   "a" ARRAY(VARCHAR(3)),
   "b" ARRAY(CHARACTER(2)),
   "c" TEXT,
   "d ""q"" x" ARRAY(TEXT),
   "e" ARRAY(VARCHAR(10)),
   PRIMARY KEY ("id")
)"""


def test_crate_array_types_reads_bounded_elements_from_show_create_table() -> None:
    """SHOW CREATE TABLE's ARRAY(VARCHAR(n)) / ARRAY(CHARACTER(n)) columns, by name, with n."""
    assert drift.crate_array_types(DDL) == {
        "a": "character varying(3)[]", "b": "character(2)[]", "e": "character varying(10)[]",
    }  # fmt: skip
    assert drift.crate_array_types("") == {}


@pytest.mark.parametrize(
    ("data_type", "asks"),
    [("text_array", True), ("character varying_array", True), ("character_array", True),
     ("text", False), ("bigint_array", False), ("object_array", False)],
)  # fmt: skip
def test_a_text_array_column_asks_for_show_create_table(data_type: str, asks: bool) -> None:
    """information_schema gives no element length: a text array needs SHOW CREATE TABLE."""
    assert drift.crate_text_array(data_type) is asks


def test_show_create_table_sql_parses_as_cratedb() -> None:
    """The statement reading a table's definition is one CrateDB statement, names quoted."""
    text = drift.crate_show_create_sql("dw", "notes")
    assert text == 'SHOW CREATE TABLE "dw"."notes"'
    assert len(crate_parse(text)) == 1
