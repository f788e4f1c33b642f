"""Schemas: validation, type mapping, DDL/DML text, and the TOML parser's one-line errors."""

from __future__ import annotations

import pickle

import pytest

from async_etl.core.schema import (
    Column,
    Schema,
    column,
    default_schema,
    parse_schema,
    pg_shape_problems,
    quote_ident,
)
from async_etl.errors import ConfigError

EXAMPLE = """
[columns]
id       = { type = "bigint", gen = "sequence" }
email    = { type = "text",   gen = "email" }
amount   = { type = "double", gen = "uniform", min = 0, max = 500 }
qty      = { type = "int",    gen = "int", min = 1, max = 10 }
status   = { type = "text",   gen = "choice", values = ["a", "b"] }
note     = { type = "text",   gen = "text", min_len = 5, max_len = 40 }
ts       = { type = "timestamptz", gen = "timestamp" }
ok       = { type = "bool",   gen = "bool", p = 0.3 }
meta     = { type = "json",   gen = "json" }
uid      = { type = "uuid",   gen = "uuid" }
nick     = { type = "text", gen = "name", nullable = 0.1 }   # 10% NULLs
"""


WHERE = "schema.toml"


def test_default_schema_columns() -> None:
    """The default schema has the documented columns, id first."""
    assert default_schema().names == (
        "id", "uid", "name", "city", "amount", "quantity", "status", "created_at", "attrs",
        "active",
    )  # fmt: skip


def test_default_schema_payload_column() -> None:
    """payload_bytes > 0 adds a fixed-length text column named payload."""
    col = default_schema(128).columns[-1]
    assert (col.name, col.type, col.param("min_len", 0), col.param("max_len", 0)) == (
        "payload", "text", 128, 128,
    )  # fmt: skip


def test_default_schema_rejects_negative_payload() -> None:
    """A negative payload size is a configuration error."""
    with pytest.raises(ConfigError, match="payload"):
        default_schema(-1)


def test_type_mapping_per_dialect() -> None:
    """uuid/json/timestamptz/double map to the right PostgreSQL and CrateDB types."""
    schema = default_schema()
    by_name = {c.name: c for c in schema.columns}
    assert schema.pg_type(by_name["attrs"]) == "jsonb"
    assert schema.pg_type(by_name["amount"]) == "double precision"
    assert schema.pg_type(by_name["quantity"]) == "integer"
    assert schema.crate_type(by_name["uid"]) == "TEXT"
    assert schema.crate_type(by_name["attrs"]) == "OBJECT(DYNAMIC)"
    assert schema.crate_type(by_name["created_at"]) == "TIMESTAMP WITH TIME ZONE"
    assert schema.crate_type(by_name["amount"]) == "DOUBLE PRECISION"


def test_pg_create_table_text() -> None:
    """PostgreSQL DDL: quoted names, id NOT NULL, no key, UNLOGGED when asked."""
    schema = Schema((column("id", "bigint", "sequence"), column("v", "json", "json")))
    assert schema.pg_create_table("s.t", unlogged=True) == (
        'CREATE UNLOGGED TABLE IF NOT EXISTS "s"."t" ("id" bigint NOT NULL, "v" jsonb)'
    )
    assert "UNLOGGED" not in schema.pg_create_table("t", unlogged=False)
    assert "PRIMARY KEY" not in schema.pg_create_table("t", unlogged=False)


def test_crate_create_table_text() -> None:
    """CrateDB DDL: id is the primary key, 4 shards, no replicas."""
    schema = Schema((column("id", "bigint", "sequence"), column("u", "uuid", "uuid")))
    assert schema.crate_create_table("doc.t") == (
        'CREATE TABLE IF NOT EXISTS "doc"."t" ("id" BIGINT PRIMARY KEY, "u" TEXT) '
        "CLUSTERED INTO 4 SHARDS WITH (number_of_replicas = 0)"
    )


def test_crate_insert_text() -> None:
    """The bulk INSERT names every column and has one marker per column."""
    schema = Schema((column("id", "bigint", "sequence"), column("b", "bool", "bool")))
    assert schema.crate_insert("t") == 'INSERT INTO "t" ("id", "b") VALUES (?, ?)'


@pytest.mark.parametrize("bad", ["1abc", "a-b", "a.b.c", 't"; drop', "", "a.", "ä"])
def test_bad_identifiers_raise_naming_them(bad: str) -> None:
    """A table name that is not [schema.]name raises ConfigError naming it."""
    schema = default_schema()
    for build in (
        lambda: schema.pg_create_table(bad, unlogged=False),
        lambda: schema.crate_create_table(bad),
        lambda: schema.crate_insert(bad),
    ):
        with pytest.raises(ConfigError, match="invalid identifier") as info:
            build()
        assert repr(bad) in str(info.value)


def test_quote_ident_quotes_each_part() -> None:
    """Valid identifiers are double-quoted part by part."""
    assert quote_ident("Sch_1.tab") == '"Sch_1"."tab"'


def test_param_default() -> None:
    """Column.param returns the set value or the default."""
    col = column("q", "int", "int", min=3)
    assert (col.param("min", 0), col.param("max", 99)) == (3, 99)


def test_schema_is_picklable_and_hashable() -> None:
    """A schema crosses process boundaries unchanged and can key a cache."""
    schema = default_schema(10)
    assert pickle.loads(pickle.dumps(schema)) == schema
    assert hash(schema) == hash(default_schema(10))


def test_schema_requires_id_first() -> None:
    """Building a schema without the id/sequence column first raises ConfigError."""
    with pytest.raises(ConfigError, match="first column"):
        Schema((column("x", "int", "int"), column("id", "bigint", "sequence")))
    with pytest.raises(ConfigError, match="no columns"):
        Schema(())


def test_schema_rejects_duplicate_names() -> None:
    """Two columns with the same name raise ConfigError."""
    with pytest.raises(ConfigError, match="duplicate"):
        Schema(
            (
                column("id", "bigint", "sequence"),
                Column("a", "int", "int"),
                Column("a", "int", "int"),
            )
        )


def test_parse_example() -> None:
    """The documented example file parses with its types, generators and parameters."""
    schema = parse_schema(EXAMPLE, WHERE)
    assert schema.names == (
        "id", "email", "amount", "qty", "status", "note", "ts", "ok", "meta", "uid", "nick",
    )  # fmt: skip
    by_name = {c.name: c for c in schema.columns}
    assert by_name["status"].param("values", ()) == ("a", "b")
    assert by_name["nick"].null_fraction == pytest.approx(0.1)
    assert by_name["amount"].param("max", 0) == 500


_ID = 'id = { type = "bigint", gen = "sequence" }\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[columns\n", "invalid TOML"),
        ("[other]\nx = 1\n", "[columns]"),
        (
            "[columns]\n" + _ID + 'x = { type = "varchar", gen = "text" }',
            "column 'x': unknown type",
        ),
        ("[columns]\n" + _ID + 'x = { type = "text", gen = "lorem" }', "unknown generator 'lorem'"),
        ("[columns]\n" + _ID + 'x = { type = "int", gen = "email" }', "cannot fill type 'int'"),
        (
            "[columns]\n" + _ID + 'x = { type = "int", gen = "int", min = 5, max = 1 }',
            "min=5 max=1",
        ),
        (
            "[columns]\n" + _ID + 'x = { type = "double", gen = "uniform", min = 5, max = 1 }',
            "min > max",
        ),
        (
            "[columns]\n" + _ID + 'x = { type = "text", gen = "text", min_len = 9, max_len = 3 }',
            "min_len > max_len",
        ),
        (
            "[columns]\n" + _ID + 'x = { type = "timestamptz", gen = "timestamp", days = 3e6 }',
            "at most 739251",
        ),
        (
            "[columns]\n" + _ID + 'x = { type = "double", gen = "uniform", min = -1.7e308, '
            "max = 1.7e308 }",
            "max - min must be a finite number",
        ),
        ("[columns]\n" + _ID + 'x = { type = "text", gen = "choice", values = [] }', "empty"),
        ("[columns]\n" + _ID + 'x = { type = "text", gen = "choice" }', "values"),
        (
            "[columns]\n" + _ID + 'x = { type = "int", gen = "choice", values = ["a"] }',
            "valid int values",
        ),
        (
            "[columns]\n" + _ID + 'x = { type = "text", gen = "city", colour = 1 }',
            "unknown parameter 'colour'",
        ),
        (
            "[columns]\n" + _ID + 'x = { type = "bool", gen = "bool", nullable = 2 }',
            "nullable must be",
        ),
        ("[columns]\n" + _ID + 'x = { type = "bool", gen = "bool", p = "high" }', "p must be"),
        ("[columns]\n" + _ID + 'x = { type = "int", gen = "int", max = 3000000000 }', "2147483647"),
        ("[columns]\n" + _ID + 'x = "text"', "column 'x': expected"),
        ("[columns]\n" + _ID + 'x = { type = "text" }', "'type' and 'gen' are required"),
        ("[columns]\n" + _ID + '"bad name" = { type = "text", gen = "city" }', "invalid name"),
        ('[columns]\nx = { type = "text", gen = "city" }', "missing the id column"),
        ('[columns]\nx = { type = "text", gen = "city" }\n' + _ID, "column 'x': the first column"),
        ('[columns]\nid = { type = "int", gen = "sequence" }', "cannot fill type 'int'"),
        ('[columns]\nkey = { type = "bigint", gen = "sequence" }', "column 'key': the first"),
        (
            "[columns]\n" + _ID + 'ts = { type = "timestamptz", gen = "timestamp", days = 0 }',
            "days must be",
        ),
        ("[columns]\n" + _ID + "[extra]\n", "unknown top-level key"),
        ("[columns]\n" + _ID + 'f = { type = "text", gen = "constant", value = 5 }', "value must"),
        (
            "[columns]\n" + _ID + 'f = { type = "text", gen = "constant", value = "a\\u0000" }',
            "NUL",
        ),
        ("[columns]\n" + _ID + 'f = { type = "text", gen = "constant", width = -1 }', "width must"),
        ("[columns]\n" + _ID + 'f = { type = "int", gen = "constant" }', "cannot fill type 'int'"),
        ("[columns]\n" + _ID + 'f = { type = "char", gen = "constant" }', "width must be at"),
        (
            "[columns]\n"
            + _ID
            + 'f = { type = "char", gen = "constant", value = "abc", width = 2 }',
            "the value's 3 characters, got 2",
        ),
        ("[columns]\n" + _ID + 'f = { type = "char", gen = "text" }', "cannot fill type 'char'"),
    ],
)
def test_parse_errors_are_one_line(text: str, expected: str) -> None:
    """Every bad schema file raises one ConfigError line naming the file and the problem."""
    with pytest.raises(ConfigError) as info:
        parse_schema(text, WHERE)
    message = str(info.value)
    assert expected in message
    assert message.startswith(f"{WHERE}: ")
    assert "\n" not in message


def test_parse_toml_error_names_line() -> None:
    """A TOML syntax error reports the line it is on."""
    with pytest.raises(ConfigError, match="line 3"):
        parse_schema("[columns]\n" + _ID + "x = { type = \n", WHERE)


def test_constant_is_blank_padded_like_char_n() -> None:
    """A constant column is its value blank-padded to width; a longer value is kept whole."""
    from async_etl.core.schema import constant_text

    assert constant_text(column("f", "text", "constant", width=4)) == "    "
    assert constant_text(column("f", "text", "constant", value="ab", width=4)) == "ab  "
    assert constant_text(column("f", "text", "constant", value="abcdef", width=4)) == "abcdef"
    assert constant_text(column("f", "text", "constant")) == ""


def test_char_is_character_n_in_postgresql_and_text_in_cratedb() -> None:
    """A char constant column is created as character(width) in PostgreSQL, TEXT in CrateDB."""
    schema = parse_schema(
        "[columns]\n" + _ID + 'filler = { type = "char", gen = "constant", width = 84 }', WHERE
    )
    filler = schema.columns[1]
    assert schema.pg_type(filler) == "character(84)"
    assert '"filler" character(84)' in schema.pg_create_table("t", unlogged=False)
    assert schema.crate_type(filler) == "TEXT"
    assert (
        pg_shape_problems(
            schema, [("id", "bigint", True, False), ("filler", "character(84)", False, False)]
        )
        == []
    )
    assert pg_shape_problems(
        schema, [("id", "bigint", True, False), ("filler", "text", False, False)]
    ) == ["column filler is text, the records' is character(84)"]
