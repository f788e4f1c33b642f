"""Tokens and expressions for the stand-in's SQL parser: the building blocks of ``sql``.

``tokenize`` splits text into ``(kind, value)`` pairs (identifiers folded to lower case unless
quoted); ``Cursor`` walks them and parses the pieces shared by all statements: names, column
types and definitions, ``WITH`` settings, expressions and ``WHERE`` conditions.  Pure.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from async_etl.testing.crate.coltypes import TYPE_ALIASES, ColumnType
from async_etl.testing.crate.sqlast import (
    Check,
    Column,
    ColumnDef,
    Cond,
    Excluded,
    Expr,
    Func,
    Literal,
    Param,
    Star,
    TableName,
)

_TOKEN = re.compile(
    r"""(?P<ws>\s+|--[^\n]*|/\*.*?\*/)
    |(?P<str>'(?:[^']|'')*')
    |(?P<qid>"(?:[^"]|"")*")
    |(?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
    |(?P<param>\?|\$\d+)
    |(?P<id>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op><=|>=|<>|!=|::|[=<>(),.*\[\];+\-])""",
    re.VERBOSE | re.DOTALL,
)
_COMPARISONS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
EOF = ("eof", "")


class SQLParseError(ValueError):
    """Raised when a statement is not valid SQL for the stand-in (maps to HTTP 400 / 4000)."""


class SQLAnalysisError(SQLParseError):
    """Raised for SQL that parses but cannot mean anything (an unknown type, a missing key).

    CrateDB refuses these too (400 / 4000), so they are never reported as "not supported".
    """


def position(text: str, offset: int) -> str:
    """``line L:C`` (both 1-based) of character ``offset`` of ``text``, as CrateDB reports it."""
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)  # rfind is -1 on the first line
    return f"line {line}:{column}"


class Tokens(list[tuple[str, str]]):
    """``(kind, value)`` tokens of ``text`` plus the character offset where each starts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.offsets: list[int] = []

    def position(self, index: int) -> str:
        """``line L:C`` of token ``index`` (just past the text for the end of input)."""
        offset = self.offsets[index] if index < len(self.offsets) else len(self.text)
        return position(self.text, offset)


def tokenize(text: str) -> Tokens:
    """Split ``text`` into ``(kind, value)`` tokens; raises ``SQLParseError`` on junk."""
    tokens = Tokens(text)
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise SQLParseError(f"{position(text, pos)}: unexpected character {text[pos]!r}")
        kind = match.lastgroup or "ws"
        value = match.group()
        start, pos = pos, match.end()
        if kind == "ws":
            continue
        if kind == "id":
            value = value.lower()
        elif kind == "str":
            value = value[1:-1].replace("''", "'")
        elif kind == "qid":
            kind, value = "id", value[1:-1].replace('""', '"')
        tokens.append((kind, value))
        tokens.offsets.append(start)
    return tokens


class Cursor:
    """A position in a token list plus the helpers every statement parser needs."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.qmarks = 0
        self.dollars = 0

    def peek(self, ahead: int = 0) -> tuple[str, str]:
        """The token ``ahead`` positions on (``EOF`` past the end)."""
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else EOF

    def error(self, what: str) -> SQLParseError:
        """A ``SQLParseError`` naming what was expected and the token found."""
        kind, value = self.peek()
        near = "<EOF>" if kind == "eof" else repr(value)
        tokens = self.tokens
        where = tokens.position(self.pos) if isinstance(tokens, Tokens) else "line 1:1"
        return SQLParseError(f"{where}: {what}, found {near}")

    def accept(self, *words: str) -> bool:
        """Consume the keyword/operator sequence ``words`` if it is next."""
        for i, word in enumerate(words):
            kind, value = self.peek(i)
            if kind not in ("id", "op") or value != word:
                return False
        self.pos += len(words)
        return True

    def expect(self, *words: str) -> None:
        """Consume ``words``; raises ``SQLParseError`` when they are not next."""
        if not self.accept(*words):
            raise self.error(f"expected {' '.join(words).upper()}")

    def ident(self) -> str:
        """Consume an identifier; raises ``SQLParseError`` otherwise."""
        kind, value = self.peek()
        if kind != "id":
            raise self.error("expected an identifier")
        self.pos += 1
        return value

    def integer(self) -> int:
        """Consume a non-negative integer literal; raises ``SQLParseError`` otherwise."""
        kind, value = self.peek()
        if kind != "num" or not value.isdigit():
            raise self.error("expected an integer")
        self.pos += 1
        return int(value)

    def comma_list(self, item: Any) -> list[Any]:
        """Parse ``item (, item)*``."""
        items = [item()]
        while self.accept(","):
            items.append(item())
        return items

    def paren_list(self, item: Any) -> list[Any]:
        """Parse ``( item (, item)* )``."""
        self.expect("(")
        items = self.comma_list(item)
        self.expect(")")
        return items

    def table_name(self) -> TableName:
        """Parse ``[schema.]name``."""
        first = self.ident()
        if self.accept("."):
            return TableName(first, self.ident())
        return TableName(None, first)

    def setting_key(self) -> str:
        """Parse a dotted setting name (``blocks.read_only``)."""
        parts = [self.ident()]
        while self.accept("."):
            parts.append(self.ident())
        return ".".join(parts)

    def setting(self) -> tuple[str, Any]:
        """Parse ``key = value`` inside ``WITH (...)`` / ``SET (...)``."""
        key = self.setting_key()
        self.expect("=")
        kind, value = self.peek()
        if kind == "id" and value not in ("true", "false", "null"):
            self.pos += 1
            return key, value
        expr = self.operand()
        return key, expr.value if isinstance(expr, Literal) else None

    def column_def(self, pk: list[str], checks: list[Check] | None = None) -> ColumnDef:
        """Parse ``name TYPE [PRIMARY KEY] [NOT NULL] [DEFAULT v] [[CONSTRAINT c] CHECK (..)]``.

        PK names go to ``pk``, checks to ``checks``.
        """
        name = self.ident()
        col_type = self.column_type()
        not_null = False
        default = None
        while True:
            if self.peek() in (("id", "check"), ("id", "constraint")) and checks is not None:
                checks.append(replace(self.check(), column=name))
            elif self.accept("primary", "key"):
                pk.append(name)
            elif self.accept("not", "null"):
                not_null = True
            elif self.accept("null"):
                pass
            elif self.accept("default"):
                expr = self.operand()
                default = expr.value if isinstance(expr, Literal) else None
            elif self.accept("index", "off"):
                pass
            else:
                return ColumnDef(name, col_type, not_null, default)

    def check(self) -> Check:
        """Parse ``[CONSTRAINT name] CHECK (cond [AND cond ...])``."""
        name = self.ident() if self.accept("constraint") else ""
        self.expect("check")
        self.expect("(")
        conds = [self.condition()]
        while self.accept("and"):
            conds.append(self.condition())
        self.expect(")")
        return Check(name, tuple(conds))

    def column_type(self) -> ColumnType:
        """Parse a column type, including ``ARRAY(t)``, ``t[]`` and multi-word names."""
        word = self.ident()
        if word == "timestamp":
            kind = "timestamp without time zone"
            if self.accept("with", "time", "zone"):
                kind = "timestamp with time zone"
            else:
                self.accept("without", "time", "zone")
            result = ColumnType(kind)
        elif word == "double":
            self.accept("precision")
            result = ColumnType("double precision")
        elif word in ("character", "char", "varchar", "numeric", "decimal"):
            varying = self.accept("varying") or word == "varchar"
            mods = self.paren_list(self.integer) if self.peek() == ("op", "(") else []
            length = mods[0] if varying and mods else None  # VARCHAR(n): checked on cast
            padded = word in ("character", "char") and not varying
            if padded:  # CHARACTER(n), n = 1 when not given (docs, Data types, CHARACTER(n))
                length = mods[0] if mods else 1
            result = ColumnType(TYPE_ALIASES[word], length=length, padded=padded)
        elif word == "array":
            self.expect("(")
            inner = self.column_type()
            self.expect(")")
            result = ColumnType("array", inner=inner)
        elif word == "object":
            result = self.object_type()
        elif word in TYPE_ALIASES:
            result = ColumnType(TYPE_ALIASES[word])
        else:
            raise SQLAnalysisError(f"Cannot find data type: {word}")
        while self.accept("[", "]"):
            result = ColumnType("array", inner=result)
        return result

    def object_type(self) -> ColumnType:
        """Parse the rest of ``OBJECT[(policy)] [AS (...)]``."""
        policy = "dynamic"
        if self.accept("("):
            policy = self.ident()
            if policy not in ("dynamic", "strict", "ignored"):
                raise SQLAnalysisError(f"invalid object column policy {policy!r}")
            self.expect(")")
        fields: tuple[tuple[str, ColumnType], ...] = ()
        if self.accept("as"):
            defs = self.paren_list(lambda: self.column_def([]))
            fields = tuple((d.name, d.type) for d in defs)
        return ColumnType("object", fields=fields, policy=policy)

    def condition(self) -> Cond:
        """Parse one ``WHERE`` condition (comparison, IS [NOT] NULL, [NOT] IN, [NOT] LIKE)."""
        left = self.operand()
        kind, value = self.peek()
        if kind == "op" and value in _COMPARISONS:
            self.pos += 1
            return Cond(left, "!=" if value == "<>" else value, (self.operand(),))
        if self.accept("is"):
            negate = self.accept("not")
            self.expect("null")
            return Cond(left, "is not null" if negate else "is null")
        prefix = "not " if self.accept("not") else ""
        if self.accept("in"):
            return Cond(left, prefix + "in", tuple(self.paren_list(self.operand)))
        if self.accept("like"):
            return Cond(left, prefix + "like", (self.operand(),))
        raise self.error("expected a comparison")

    def operand(self) -> Expr:
        """Parse an expression with optional ``::type`` casts."""
        expr = self.primary()
        while self.accept("::"):
            expr = Func("cast", (expr,), self.column_type().sql_name)
        return expr

    def primary(self) -> Expr:
        """Parse a placeholder, literal, column, ``excluded.c``, call or ``*``."""
        kind, value = self.peek()
        self.pos += 1
        if kind == "param":
            return self.param(value)
        if kind == "str":
            return Literal(value)
        if kind == "num":
            return Literal(_number(value))
        if kind == "op" and value == "-" and self.peek()[0] == "num":
            self.pos += 1
            return Literal(-_number(self.tokens[self.pos - 1][1]))
        if kind == "op" and value == "*":
            return Star()
        if kind != "id":
            self.pos -= 1
            raise self.error("expected an expression")
        if value in ("true", "false", "null"):
            return Literal({"true": True, "false": False, "null": None}[value])
        if value == "excluded" and self.accept("."):
            return Excluded(self.ident())
        if self.peek() == ("op", "("):
            return self.call(value)
        if self.accept("."):
            value = self.ident()  # a qualified column: the qualifier is ignored
        path: list[str] = []
        while self.accept("["):
            key_kind, key = self.peek()
            if key_kind != "str":
                raise self.error("expected a string subscript")
            self.pos += 1
            self.expect("]")
            path.append(key)
        return Column(value, tuple(path))

    def call(self, name: str) -> Func:
        """Parse a function call after its name (``cast(x AS t)`` included)."""
        self.expect("(")
        if name == "cast":
            inner = self.operand()
            self.expect("as")
            target = self.column_type().sql_name
            self.expect(")")
            return Func("cast", (inner,), target)
        args: list[Expr] = []
        if not self.accept(")"):
            args = self.comma_list(self.operand)
            self.expect(")")
        return Func(name, tuple(args))

    def param(self, token: str) -> Param:
        """A placeholder from its token, tracking how many the statement needs."""
        if token == "?":
            self.qmarks += 1
            return Param(self.qmarks - 1)
        index = int(token[1:])
        if index < 1:
            raise SQLAnalysisError(f"invalid placeholder {token}")
        self.dollars = max(self.dollars, index)
        return Param(index - 1)


def _number(text: str) -> int | float:
    if text.isdigit():
        return int(text)
    return float(text)
