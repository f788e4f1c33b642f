"""The stand-in's parser answers like CrateDB: its grammar's errors, its positions."""

from __future__ import annotations

import pytest

from async_etl.testing.crate.grammar import AVAILABLE, grammar_error
from async_etl.testing.crate.sql import SQLParseError, UnsupportedSQLError, parse
from tests.crate_statements import all_statements

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="cratedb-sqlparse is not installed")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("SELEC a FROM t", "line 1:1:"),
        ("SELECT a FROM t WHERE (a, b) >= (?, ?)", "line 1:25:"),
        ('SELECT a FROM t WHERE a COLLATE "C" >= ?', "line 1:25:"),
        ("SELECT 1; SELECT 2", "line 1:11:"),
        ("SELECT a\nFROM t\nWHERE a =", "line 3:10:"),
    ],
)
def test_grammar_rejects_with_cratedb_message_and_column(text: str, where: str) -> None:
    """SQL CrateDB's grammar rejects: SQLParseError with its message at line:column."""
    with pytest.raises(SQLParseError) as info:
        parse(text)
    assert not isinstance(info.value, UnsupportedSQLError)
    assert str(info.value).startswith(where)
    assert grammar_error(text) == str(info.value)


def test_valid_sql_the_stand_in_cannot_run_is_not_supported() -> None:
    """Valid CrateDB SQL beyond the stand-in: a distinct 'not supported' error, by column."""
    text = "SELECT a FROM t WHERE a = 1 OR b = 2"
    with pytest.raises(UnsupportedSQLError) as info:
        parse(text)
    message = str(info.value)
    assert message.startswith("not supported by the stand-in: line 1:29:")  # column of OR
    assert grammar_error(text) is None


def test_analysis_errors_stay_parse_errors() -> None:
    """An unknown type parses in CrateDB's grammar but is an analysis error, not unsupported."""
    with pytest.raises(SQLParseError) as info:
        parse("CREATE TABLE t (a WIBBLE)")
    assert not isinstance(info.value, UnsupportedSQLError)


@pytest.mark.parametrize("stmt", all_statements())
def test_stand_in_runs_every_generated_statement(stmt: str) -> None:
    """Every statement the project sends to CrateDB parses in the stand-in as well."""
    parse(stmt)
