"""A user's source query becomes one embeddable statement; every dialect's read SQL keeps it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core import scd_sql_oracle as ora
from async_etl.core import scd_sql_pg as pg
from async_etl.core import sqltext
from async_etl.core.chunks import Chunk, plan_chunks
from async_etl.core.sqltext import (
    Dialect,
    SqlTextError,
    floats_print_exactly,
    inline_integers,
    inline_literals,
    limits_rows,
    quote_literals_sql,
    source_query,
    subquery,
    typed_literals,
)
from async_etl.jobs.spec import parse_job

CHUNKS = plan_chunks([(5,), (9,)]).chunks
KEY = ("id",)


def _code(text: str, dialect: str) -> str:
    """``text`` with its comments removed (by hand, independently of the module under test)."""
    out, i, in_str = [], 0, False
    while i < len(text):
        if in_str:
            out.append(text[i])
            in_str = text[i] != "'"
            i += 1
        elif text[i] == "'":
            out.append(text[i])
            in_str = True
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("SELECT id, v FROM src WHERE id IS NOT NULL -- keyed rows only",
         "SELECT id, v FROM src WHERE id IS NOT NULL -- keyed rows only"),
        ("SELECT id FROM src;", "SELECT id FROM src"),
        ("SELECT id FROM src ;  \n-- done\n/* really */ ;\n", "SELECT id FROM src"),
        ("WITH k AS (SELECT id FROM src) SELECT id FROM k ORDER BY id LIMIT 2;",
         "WITH k AS (SELECT id FROM src) SELECT id FROM k ORDER BY id LIMIT 2"),
        ("/* a /* nested; */ -- still */ SELECT 1 AS id",
         "/* a /* nested; */ -- still */ SELECT 1 AS id"),
        ("SELECT ';--' AS id, $x$ ; -- $x$ AS v, $$;$$ AS w;",
         "SELECT ';--' AS id, $x$ ; -- $x$ AS v, $$;$$ AS w"),
        ("SELECT E'it\\'s; --' AS id, \"a;--b\" FROM t",
         "SELECT E'it\\'s; --' AS id, \"a;--b\" FROM t"),
        ("VALUES (1, 'a');", "VALUES (1, 'a')"),
        ("(SELECT 1 AS id) UNION ALL (SELECT 2);", "(SELECT 1 AS id) UNION ALL (SELECT 2)"),
        ("SELECT 1 AS é$x$; ", "SELECT 1 AS é$x$"),  # one name, no dollar quote in it
        ("SELECT $😀$a;b$😀$ AS x;", "SELECT $😀$a;b$😀$ AS x"),  # a tag outside the BMP
    ],
)  # fmt: skip
def test_postgresql_query_is_one_statement(text: str, want: str) -> None:
    """Trailing ``;`` and comments after it go; comments, quotes, CTEs, ORDER BY/LIMIT stay."""
    assert source_query(text, "postgresql") == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("SELECT q'[it's; -- x]' AS id FROM dual; -- end",
         "SELECT q'[it's; -- x]' AS id FROM dual"),
        ("SELECT nq'{;}' AS id FROM dual ;", "SELECT nq'{;}' AS id FROM dual"),
        ("WITH k AS (SELECT 1 id FROM dual) SELECT id FROM k ORDER BY id "
         "FETCH FIRST 2 ROWS ONLY;", "WITH k AS (SELECT 1 id FROM dual) SELECT id FROM k "
         "ORDER BY id FETCH FIRST 2 ROWS ONLY"),
        ("/* not /* nested */ SELECT 1 id FROM dual", "/* not /* nested */ SELECT 1 id FROM dual"),
    ],
)  # fmt: skip
def test_oracle_query_is_one_statement(text: str, want: str) -> None:
    """Oracle's q'...' strings and its non-nesting comments are read as Oracle reads them."""
    assert source_query(text, "oracle") == want


@pytest.mark.parametrize(
    ("text", "dialect", "needle"),
    [
        ("SELECT 1 AS id; DELETE FROM src", "postgresql",
         "2 statements; the second starts at line 1, column 17"),
        ("SELECT 1 id FROM dual;\nSELECT 2 id FROM dual;", "oracle", "line 2, column 1"),
        ("  ; -- nothing\n", "postgresql", "holds no statement"),
        ("DELETE FROM src RETURNING id", "postgresql", "not 'DELETE'"),
        ("SELECT 'open", "postgresql", "unterminated string literal starting at line 1, column 8"),
        ("SELECT 1 /* a /* b */", "postgresql", "unterminated /* comment"),
        ("SELECT $t$ x", "postgresql", "unterminated $t$ string"),
        ("SELECT q'[x' FROM dual", "oracle", "unterminated q'...' string"),
    ],
)  # fmt: skip
def test_not_one_select_is_refused_in_one_line(text: str, dialect: str, needle: str) -> None:
    """Two statements, none, a non-query or an unterminated token: one line with its place."""
    with pytest.raises(SqlTextError) as info:
        source_query(text, dialect)  # type: ignore[arg-type]
    message = str(info.value)
    assert needle in message and "\n" not in message, message


_PIECE = st.sampled_from(
    ["SELECT", "id", ",", "v", "FROM", "src", "WHERE", "id", ">", "1", "'a;b'", "'--x'",
     "$$;--$$", "\"q;\"", "/* ; */", "(", ")", "ORDER BY id", "LIMIT 3", "\n"]
)  # fmt: skip
_TAIL = st.lists(st.sampled_from([";", " ", "\n", "-- c\n", "/* ; */", "-- ;"]), max_size=6)


@given(st.lists(_PIECE, max_size=12), _TAIL)
def test_trailing_terminators_and_comments_never_change_the_statement(
    body: list[str], tail: list[str]
) -> None:
    """``SELECT <pieces>;`` followed by any mix of ``;``, blanks and comments: the statement."""
    statement = " ".join(["SELECT", *body]).strip()
    assert source_query(statement + ";" + "".join(tail), "postgresql") == statement


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("dialect", ["postgresql", "oracle"])
def test_read_sql_survives_a_trailing_comment(dialect: str, chunk: Chunk) -> None:
    """Extract, NULL-key count and boundaries keep their SQL after a query's last-line comment."""
    query = "SELECT id, v FROM src WHERE id IS NOT NULL -- keyed rows only"
    mod = pg if dialect == "postgresql" else ora
    alias = ") AS q" if dialect == "postgresql" else ") q"
    for sql in (
        mod.extract_sql(query, None, KEY, chunk).text,
        mod.null_keys_sql(query, None, KEY).text,
        mod.boundaries_sql(query, None, KEY).text,
    ):
        code = _code(sql, dialect)
        assert "SELECT id, v FROM src WHERE id IS NOT NULL" in code
        assert alias in code and code.count("(") == code.count(")"), sql
        assert code.rstrip().endswith(("ORDER BY q.\"id\"", "ORDER BY q.\"ID\"", "IS NULL",
                                       "ORDER BY bucket")), sql  # fmt: skip


def test_subquery_puts_the_parentheses_on_their_own_lines() -> None:
    """``subquery`` wraps with newlines so no comment reaches the closing parenthesis."""
    assert subquery("SELECT 1 -- c") == "(\nSELECT 1 -- c\n)"


@pytest.mark.parametrize(
    ("url", "query"),
    [
        ("postgresql://u@h/db", "SELECT id FROM src ORDER BY id; -- the end"),
        ("oracle://u:p@h:1521/svc", "SELECT id FROM src ORDER BY id; -- the end"),
    ],
)
def test_job_file_query_is_stored_as_its_one_statement(url: str, query: str) -> None:
    """The job loader keeps the query without ``;`` and comments after it, for both sources."""
    text = (f'name = "j"\n[source]\nurl = "{url}"\nquery = "{query}"\nkey = ["id"]\n'
            f'[target]\nurl = "postgresql://u@h/db"\ntable = "t"\n'
            '[state]\nurl = "postgresql://u@h/db"\n')  # fmt: skip
    spec = parse_job(text, env={})
    assert spec.source.query == "SELECT id FROM src ORDER BY id"


def test_job_file_with_two_statements_names_the_key() -> None:
    """Two statements in ``[source] query``: one ConfigError line naming the file and key."""
    from async_etl.errors import ConfigError

    text = ('name = "j"\n[source]\nurl = "postgresql://u:secret@h/db"\n'
            'query = "SELECT 1 AS id; DROP TABLE src"\nkey = ["id"]\n'
            '[target]\nurl = "postgresql://u@h/db"\ntable = "t"\n')  # fmt: skip
    with pytest.raises(ConfigError) as info:
        parse_job(text, path="j.toml", env={})
    message = str(info.value)
    assert message.startswith("job file j.toml: [source] query: holds 2 statements"), message
    assert "\n" not in message and "secret" not in message


@pytest.mark.parametrize("dialect", ["postgresql", "oracle"])
def test_read_sql_keeps_the_query_text_verbatim(dialect: str) -> None:
    """Blanks and line breaks inside the query's string literals reach the database unchanged."""
    query = "SELECT id, 'a  b\n  c' AS v FROM src"
    mod = pg if dialect == "postgresql" else ora
    for sql in (
        mod.extract_sql(query, None, KEY, CHUNKS[1]).text,
        mod.boundaries_sql(query, None, KEY).text,
        mod.null_keys_sql(query, None, KEY).text,
    ):
        assert f"(\n{query}\n)" in sql, sql


@pytest.mark.parametrize(
    ("query", "dialect", "limited"),
    [
        ("SELECT id FROM t LIMIT 5", "postgresql", True),
        ("SELECT id FROM t ORDER BY id OFFSET 3", "postgresql", True),
        ("SELECT id FROM t FETCH FIRST 5 ROWS ONLY", "oracle", True),
        ("WITH k AS (SELECT id FROM t LIMIT 5) SELECT id FROM k", "postgresql", False),
        ("SELECT id FROM (SELECT id FROM t LIMIT 5) s", "postgresql", False),
        ("SELECT 'limit' AS l, \"offset\" FROM t -- limit 5", "postgresql", False),
        ("SELECT $$ LIMIT $$, id FROM t /* fetch */", "postgresql", False),
        ("SELECT q'[limit]' FROM t", "oracle", False),
        ("SELECT limited, fetched FROM t", "postgresql", False),
        ("SELECT a AS limité FROM t", "postgresql", False),  # one name, not LIMIT
        ("SELECT a AS offsetä FROM t", "postgresql", False),
        ("SELECT é FROM t LIMIT 5", "postgresql", True),
        ("SELECT id FROM t WHERE ROWNUM <= 5", "oracle", True),
        ("SELECT id FROM t WHERE x = 1 AND rownum < 9 ORDER BY id", "oracle", True),
        ("SELECT id FROM t SAMPLE (10)", "oracle", True),
        ("SELECT id FROM t SAMPLE BLOCK (5) WHERE x = 1", "oracle", True),
        ("SELECT ROWNUM AS rn, id FROM t", "oracle", False),  # numbers rows, keeps them all
        ("SELECT id FROM (SELECT id FROM t WHERE ROWNUM <= 5) s", "oracle", False),
        ("SELECT sample FROM t WHERE rownum_ok = 1", "oracle", False),
        ("SELECT id FROM t WHERE ROWNUM <= 5", "postgresql", False),  # a column there
    ],
)
def test_limits_rows_sees_only_top_level_row_limits(
    query: str, dialect: Dialect, limited: bool
) -> None:
    """Only a top-level LIMIT / OFFSET / FETCH counts; subqueries, strings, comments do not."""
    assert limits_rows(query, dialect) is limited


def test_inline_integers_writes_each_placeholder_as_asyncpg_would():
    """Integers go in as quoted digits, None as NULL, $10 is not $1 followed by 0."""
    args: list[object] = [1, -2, None, 4, 5, 6, 7, 8, 9, 10]
    text = "SELECT * FROM t WHERE a >= $1 AND a < $2 AND b IS $3 AND c = $10"
    assert inline_integers(text, args) == (
        "SELECT * FROM t WHERE a >= '1' AND a < '-2' AND b IS NULL AND c = '10'"
    )


def test_inline_integers_leaves_quotes_and_comments_alone():
    """A $n inside a literal, a quoted name, a dollar quote or a comment is not a placeholder."""
    text = (
        "SELECT '$1', \"$1\", E'\\'$1', $q$ $1 $q$, $$ $1 $$, x$1 /* $1 */ "
        "FROM t -- $1\nWHERE a = $1"
    )
    got = inline_integers(text, [7])
    assert got == text[: text.rindex("$1")] + "'7'"


@pytest.mark.parametrize("args", [[True], [1.0], ["1"], [1, "x"], []])
def test_inline_integers_declines_what_it_cannot_write_exactly(args: list[object]):
    """A bool, float or text argument, or a placeholder with no argument: None (server inlines)."""
    assert inline_integers("SELECT $1", args) is None


def test_inline_literals_puts_each_literal_at_its_placeholders_only():
    """Each $n gets literals[n-1], again where it repeats; quoted and commented $n stay."""
    text = "SELECT '$1 each', $2, /* $1 */ $1 FROM t WHERE k >= $1 -- $2"
    got = inline_literals(text, ["'a''b'::\"pg_catalog\".\"text\"", "NULL::x"])
    assert got == (
        "SELECT '$1 each', NULL::x, /* $1 */ 'a''b'::\"pg_catalog\".\"text\" FROM t "
        "WHERE k >= 'a''b'::\"pg_catalog\".\"text\" -- $2"
    )


def test_inline_literals_leaves_a_dollar_digit_inside_a_non_ascii_name_alone():
    """café$1 and x_é$2 are names to PostgreSQL (any non-ASCII letter starts or continues one)."""
    text = "SELECT café$1, x_é$2, é$1 FROM t WHERE k > $1 AND j < $2"
    got = inline_literals(text, ["'5'", "'6'"])
    assert got == "SELECT café$1, x_é$2, é$1 FROM t WHERE k > '5' AND j < '6'"


SPOT_CHECKS = [*range(0x180), 0x7FF, 0x800, 0xD7FF, 0xD800, 0xDFFF, 0xE000, 0xFFFF, 0x10000,
               0x1F600, 0x10FFFF]  # fmt: skip


@pytest.mark.parametrize("code", SPOT_CHECKS)
def test_names_and_dollar_tags_follow_the_servers_lexer(code: int) -> None:
    """A name or tag starts with a letter, _ or non-ASCII; digits (and $ in a name) continue it."""
    c = chr(code)
    starts = not c.isascii() or c.isalpha() or c == "_"
    continues = starts or c in "0123456789"
    assert bool(sqltext._NAME.fullmatch(c)) is starts
    assert bool(sqltext._NAME.fullmatch("a" + c)) is (continues or c == "$")
    assert bool(sqltext._dollar().fullmatch(f"${c}$")) is starts
    assert bool(sqltext._dollar().fullmatch(f"$a{c}$")) is continues


def test_name_patterns_spell_no_range_beyond_ascii() -> None:
    """A class up to U+10FFFF took 8-14 ms to compile at each start; negated ASCII ones don't."""
    for pattern in (sqltext._NAME.pattern, sqltext._dollar().pattern):
        assert pattern.isascii()
        assert "\\u" not in pattern and "\\U" not in pattern


def test_inline_literals_refuses_a_placeholder_with_no_literal():
    """$3 with two literals: SqlTextError, not a half-inlined statement."""
    with pytest.raises(SqlTextError):
        inline_literals("SELECT $1, $3", ["1", "2"])


def test_typed_literals_cast_each_quoted_value_to_its_parameter_type():
    """Each server-quoted value, or NULL, is cast to the type the placeholder had."""
    types = ['"pg_catalog"."timestamp"', '"pg_catalog"."text"']
    assert quote_literals_sql(types) == (
        'SELECT quote_literal($1::"pg_catalog"."timestamp"::text), '
        'quote_literal($2::"pg_catalog"."text"::text), '
        "current_setting('extra_float_digits')::int, current_setting('server_version_num')::int"
    )
    assert typed_literals(["'2024-01-01 00:00:00'", None], types) == [
        '\'2024-01-01 00:00:00\'::"pg_catalog"."timestamp"',
        'NULL::"pg_catalog"."text"',
    ]
    with pytest.raises(ValueError):
        typed_literals(["'x'"], types)


@pytest.mark.parametrize(
    ("digits", "version", "exact"),
    [(1, 150000, True), (3, 120000, True), (0, 150000, False), (-15, 120000, False),
     (1, 110000, False), (2, 90600, False), (3, 110000, True)],
)  # fmt: skip
def test_floats_print_exactly_only_under_settings_that_round_trip(
    digits: int, version: int, exact: bool
):
    """extra_float_digits >= 1 is exact from PostgreSQL 12 on, only 3 before; 0 or less never."""
    assert floats_print_exactly(digits, version) is exact


def test_inline_literals_reads_backslash_escapes_in_plain_strings_when_the_session_does():
    """standard_conforming_strings off: '\\'$1' is one string, and only the later $1 is replaced."""
    text = "SELECT 'a\\'$1' AS s WHERE k >= $1"
    assert inline_literals(text, ["'5'"], standard_strings=False) == (
        "SELECT 'a\\'$1' AS s WHERE k >= '5'"
    )
    assert inline_integers(text, [5], standard_strings=False) == (
        "SELECT 'a\\'$1' AS s WHERE k >= '5'"
    )
    assert inline_literals("SELECT 'a\\' AS s, $1", ["'5'"]) == "SELECT 'a\\' AS s, '5'"
