"""The one line for a CREATE TABLE the server refused, naming the declared column."""

from __future__ import annotations

import pytest

from async_etl.core.writer_sql import (
    crate_declared_problem,
    crate_type_key,
    create_refused,
    declared_problem,
    lookup_type,
)

COLUMNS = {"id": "BIGINT", "j": "json", "tags": "Text[]", "n": "numeric(10, 2)"}


@pytest.mark.parametrize(
    ("message", "column"),
    [
        ("400 4000 SQLParseException[Cannot find data type: json]", "j"),
        ('type "json" does not exist', "j"),
        ('type "text" does not exist', "tags"),
        ("Cannot find data type: NUMERIC", "n"),
    ],
)
def test_an_unknown_type_names_its_declared_column(message: str, column: str) -> None:
    """The server's unknown type is matched to the declared column (case, size, [] aside)."""
    line = create_refused("W", "t", COLUMNS, message)
    assert line.startswith(f"W: columns[{column!r}]: {COLUMNS[column]!r} is not a type")
    assert "\n" not in line


def test_another_refusal_repeats_the_server_reason() -> None:
    """A refusal that names no type keeps the server's words, with the table."""
    line = create_refused("W", "t", COLUMNS, "400 4000 SQLParseException[line 1: bad]")
    assert line == "W: cannot create table 't': 400 4000 SQLParseException[line 1: bad]"


@pytest.mark.parametrize(
    ("row", "line"),
    [
        ((True, None, True), "w: columns['v']: 'bogus' is not a type the server knows"),
        ((True, "text", True), "w: columns['v']: 'bogus' is not a type the server knows"),
        (
            (False, "text", True),
            "w: columns['v']: declared 'bogus', but table 't' has it as 'text'",
        ),
        ((False, "text", False), None),
        ((False, None, True), None),
    ],
)
def test_declared_problem_refuses_unknown_and_differing_types(
    row: tuple[bool, str | None, bool], line: str | None
) -> None:
    """Unknown: refused, table or not; differing from an existing column: refused; else None."""
    assert declared_problem("w", "t", "v", " bogus ", *row) == line


def test_serial_types_resolve_as_the_integer_they_make() -> None:
    """``serial`` / ``BIGSERIAL`` look up as integer / bigint; other types are kept as typed."""
    assert [lookup_type(t) for t in ("serial", " BIGSERIAL ", "serial2", "numeric(4,1)")] == [
        "integer",
        "bigint",
        "smallint",
        "numeric(4,1)",
    ]


@pytest.mark.parametrize(
    ("declared", "existing"),
    [
        ("BIGINT", "bigint"),
        ("long", "bigint"),
        ("int", "integer"),
        ("DOUBLE  PRECISION", "double"),
        ("varchar(20)", "text"),
        ("string", "character varying"),
        ("TIMESTAMP", "timestamp without time zone"),
        ("timestamptz", "timestamp with time zone"),
        ("bigint[]", "bigint_array"),
        ("text[]", "array(text)"),
        ("numeric(10, 2)", "numeric"),
        ("object", "object"),
    ],
)
def test_crate_type_key_reads_a_types_other_names_alike(declared: str, existing: str) -> None:
    """Aliases, modifiers and the three array spellings give one CrateDB type one key."""
    assert crate_type_key(declared) == crate_type_key(existing)


@pytest.mark.parametrize(
    ("declared", "existing"),
    [
        ("TEXT", "bigint"),
        ("integer", "bigint"),
        ("TIMESTAMP", "timestamp with time zone"),
        ("bigint[]", "bigint"),
        ("real", "double precision"),
    ],
)
def test_crate_type_key_tells_different_types_apart(declared: str, existing: str) -> None:
    """Another type, time zone or array-ness is another key."""
    assert crate_type_key(declared) != crate_type_key(existing)


def test_crate_declared_problem_names_table_column_and_both_types() -> None:
    """The first declared column whose type differs is refused in one line; absent ones pass."""
    existing = {"id": "bigint", "v": "text"}
    assert crate_declared_problem("w", "t", {"id": "long", "v": "string", "x": "int"},
                                  existing) is None  # fmt: skip
    line = crate_declared_problem("w", "t", {"id": "BIGINT", "v": "INTEGER"}, existing)
    assert line == "w: columns['v']: declared 'INTEGER', but table 't' has it as 'text'"
