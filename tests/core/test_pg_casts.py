"""core.pg_casts: what a binary COPY into another PostgreSQL database casts, and to what."""

from __future__ import annotations

import pytest

from async_etl.core import drift
from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import Chunk
from async_etl.core.drift import sql_fits
from async_etl.core.pg_casts import (
    cast_select,
    copy_casts,
    guard_rows,
    guarded_columns,
    length_guards,
    too_long_line,
    unbounded,
    unguard,
)


@pytest.mark.parametrize(
    ("source", "target", "cast"),
    [
        ("integer[]", "bigint[]", "bigint[]"),
        ("smallint", "integer", "integer"),
        ("real", "double precision", "double precision"),
        ("real[]", "double precision[]", "double precision[]"),
        ("integer", "numeric(10,0)", "numeric"),
        ("integer[]", "numeric(12,0)[]", "numeric[]"),
        ("character varying(5)[]", "text[]", "text[]"),
        ("character(3)[]", "text[]", "text[]"),
        ("bigint", "integer", "integer"),
    ],
)
def test_a_pair_of_two_binary_formats_is_cast_to_the_unbounded_target_type(
    source: str, target: str, cast: str
) -> None:
    """Base types that differ: cast to the target's type without modifiers."""
    assert sql_fits(source, target)
    assert copy_casts(["integer", source], ["integer", target]) == (None, cast)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("numeric(5,2)", "numeric(10,2)"),
        ("numeric(5,2)[]", "numeric[]"),
        ("character varying(5)", "character varying(9)"),
        ("timestamp(3) with time zone", "timestamp with time zone"),
        ("integer[]", "integer[]"),
        ("src.mood[]", "src.mood[]"),
        ("integer", ""),
    ],
)
def test_one_binary_format_is_sent_as_it_is(source: str, target: str) -> None:
    """Modifiers alone, one type, or an unknown target: no cast at all."""
    assert copy_casts(["integer", source], ["integer", target]) == ()


def test_no_target_types_means_no_cast() -> None:
    """No existing target (its types not known): ``()``; lengths must agree otherwise."""
    assert copy_casts(["integer"], ()) == ()
    with pytest.raises(ValueError, match="1 source types against 2"):
        copy_casts(["integer"], ["bigint", "text"])


def test_unbounded_never_means_length_one() -> None:
    """``character`` and ``bit`` alone are length 1: their unbounded names are others."""
    assert unbounded("character(3)[]") == "bpchar[]"
    assert unbounded("bit(4)") == "bit varying"
    assert unbounded("numeric(12,2)[]") == "numeric[]"
    assert unbounded("timestamp(3) with time zone") == "timestamp with time zone"
    assert unbounded("integer[][]") == "integer[]"


def test_the_chunk_read_casts_only_what_differs() -> None:
    """The select list names every column in order, casting the ones ``copy_casts`` gives."""
    casts = copy_casts(["integer", "integer[]"], ["integer", "bigint[]"])
    select = cast_select(["id", "a"], casts)
    assert select == 'q."id", q."a"::bigint[] AS "a"'
    read = pg.extract_sql(None, "t", ["id"], Chunk(0, None, None), select=select).text
    assert read.startswith(f"SELECT {select} FROM")
    assert cast_select(["id", "a"], ()) == "*"
    with pytest.raises(ValueError):
        cast_select(["id", "a"], (None, "bigint; DROP TABLE t"))


@pytest.mark.parametrize(
    ("source", "target", "guard"),
    [
        ("text", "character varying(3)", 3),
        ("character varying(5)", "character varying(3)", 3),
        ("character varying", "character varying(3)", 3),
        ("character varying(3)", "character varying(3)", None),
        ("character varying(2)", "character varying(3)", None),
        ("text", "text", None),
        ("text", "character varying", None),
        ("character(5)", "character varying(3)", None),
        ("text[]", "character varying(3)[]", None),
        ("integer", "character varying(3)", None),
    ],
)
def test_only_a_varchar_narrower_than_its_source_is_guarded(
    source: str, target: str, guard: int | None
) -> None:
    """A guard where varchar(n) could cut a longer text's excess blanks; widening: none."""
    want = (None, guard) if guard is not None else ()
    assert length_guards(["integer", source], ["bigint", target]) == want


def test_a_guarded_column_reads_longer_values_with_a_last_character_no_blank() -> None:
    """The guard keeps a value up to n, and makes a longer one end in '~' (refused, not cut)."""
    got = cast_select(["id", "a"], ("bigint", None), guards=(None, 3))
    assert got == ('q."id"::bigint AS "id", CASE WHEN char_length(q."a") > 3 THEN '
                   'q."a" || \'~\' ELSE q."a" END AS "a"')  # fmt: skip
    assert cast_select(["id", "a"], (), guards=(None, 3)).startswith('q."id", CASE')
    with pytest.raises(ValueError, match="2 columns against 2 casts, 1 guards"):
        cast_select(["id", "a"], (None, None), guards=(3,))


_BASES = sorted({b for pair in drift.ACROSS for b in pair} | {
    "boolean", "date", "timestamp without time zone", "timestamp with time zone", "json",
    "jsonb", "bytea", "uuid", "interval", "time without time zone"})  # fmt: skip


@pytest.mark.parametrize("pair", [(s, t) for s in _BASES for t in _BASES if s != t])
def test_fits_and_casts_come_from_one_table(pair: tuple[str, str]) -> None:
    """Every pair of two base types: the drift check fits it iff COPY casts it iff ACROSS has it."""
    source, target = pair
    listed = pair in drift.ACROSS
    assert drift.sql_fits(source, target) is listed
    assert copy_casts([source], [target]) == ((unbounded(target),) if listed else ())
    assert copy_casts([f"{source}[]"], [f"{target}[]"]) == (
        (f"{unbounded(target)}[]",) if listed else ()
    )


def test_guard_rows_marks_a_python_value_varchar_would_cut() -> None:
    """Python rows (an Oracle source's): a text longer than n ends in '~', unguard undoes it."""
    guarded = guarded_columns(["id", "a", "b"], ["integer", "text", "text"],
                              ["integer", "character varying(3)", "text"])  # fmt: skip
    assert guarded == {"a": 3}
    rows = [(1, "abc  ", "abc  "), (2, "ab ", "x"), (3, None, None), (4, "abcd", "y")]
    got = guard_rows(rows, guarded, ["id", "a", "b"])
    assert got == [(1, "abc  ~", "abc  "), (2, "ab ", "x"), (3, None, None), (4, "abcd~", "y")]
    assert [unguard(r[1], 3) for r in got] == [r[1] for r in rows]


def test_guard_rows_hands_back_rows_that_fit_as_they_are() -> None:
    """A batch with no value longer than its column's n is the same list, not a copy."""
    rows = [(1, "abc"), (2, None)]
    assert guard_rows(rows, {"a": 3}, ["id", "a"]) is rows
    assert guard_rows(rows, {}, ["id", "a"]) is rows


TOO_LONG = "value too long for type character varying(3) (SQLSTATE 22001)"


def test_a_rejected_rows_too_long_reason_says_the_target_refuses_what_is_not_blanks() -> None:
    """'abcdef' into varchar(3) (row known): 'refuses', never 'trailing blanks cut'."""
    line = too_long_line(TOO_LONG, {"a": 3, "b": 3}, {"a": "ab", "b": "abcdef"})
    assert line is not None and line.startswith('column "b" (character varying(3)'), line
    assert "which the target refuses;" in line and "blanks" not in line, line


def test_a_rejected_rows_too_long_reason_says_blanks_cut_only_for_blank_excess() -> None:
    """'abc  ' into varchar(3) (row known): the target would cut its trailing blanks."""
    line = too_long_line(TOO_LONG, {"a": 3}, {"a": "abc  "})
    assert line is not None and "would store with its trailing blanks cut" in line, line
    assert "refuses" not in line, line


def test_a_failed_chunks_too_long_reason_is_true_for_either_value() -> None:
    """No row known: the line says the target refuses, or cuts an excess of blanks."""
    line = too_long_line(TOO_LONG, {"a": 3})
    both = "which the target refuses (or, when its excess is all blanks, would store with them cut)"
    assert line is not None and both in line, line
