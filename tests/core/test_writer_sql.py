"""The one line for a CREATE TABLE the server refused, naming the declared column."""

from __future__ import annotations

import pytest

from async_etl.core.writer_sql import create_refused

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
