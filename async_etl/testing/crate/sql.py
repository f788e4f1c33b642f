"""A small, pure parser for the SQL subset the CrateDB stand-in understands.

``parse(text)`` returns one statement from ``sqlast`` or raises ``SQLParseError``; the server
maps that to HTTP 400 / code 4000 ``SQLParseException[...]``.  With CrateDB's grammar installed
(``grammar``), text it rejects fails with its message, and text it accepts that this parser
cannot handle raises ``UnsupportedSQLError`` (400 / 4004, "not supported by the stand-in").
Exactly one statement per text: a single trailing ``;`` is allowed, ``a; b`` is not.
Unquoted identifiers are folded to lower case, ``"quoted"`` ones are kept.
Placeholders are ``?`` or ``$n`` (not mixed).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from async_etl.testing.crate.grammar import AVAILABLE, grammar_error
from async_etl.testing.crate.sqlast import (
    AlterTable,
    Check,
    ColumnDef,
    Cond,
    CreateTable,
    Delete,
    DropTable,
    Expr,
    Insert,
    Noop,
    OnConflict,
    Refresh,
    Select,
    SelectItem,
    ShowCreate,
    Star,
    Statement,
    SwapTable,
    Update,
)
from async_etl.testing.crate.sqlexpr import EOF, Cursor, SQLAnalysisError, SQLParseError, tokenize

__all__ = ["SQLParseError", "UnsupportedSQLError", "parse", "tokenize"]


class UnsupportedSQLError(SQLParseError):
    """Raised for valid CrateDB SQL the stand-in cannot run (HTTP 400 / 4004)."""


def parse(text: str) -> Statement:
    """Parse exactly one statement.

    Raises ``SQLParseError`` when the text is invalid (CrateDB's grammar message when it is
    installed) or holds several statements, ``UnsupportedSQLError`` when CrateDB would accept it
    but the stand-in cannot run it.
    """
    why = grammar_error(text)
    if why is not None:
        raise SQLParseError(why)
    try:
        return _Parser(tokenize(text)).statement()
    except SQLAnalysisError:
        raise
    except SQLParseError as exc:
        if AVAILABLE:
            raise UnsupportedSQLError(f"not supported by the stand-in: {exc}") from None
        raise


class _Parser(Cursor):
    def statement(self) -> Statement:
        if not self.tokens:
            raise SQLParseError("line 1:1: empty statement")
        word = self.ident()
        handler = getattr(self, f"_stmt_{word}", None)
        if handler is None:
            raise SQLParseError(f"line 1:1: unsupported statement {word.upper()!r}")
        stmt: Statement = handler()
        self.accept(";")
        if self.peek() != EOF:
            raise self.error("expected end of statement (one statement per request)")
        if self.qmarks and self.dollars:
            raise SQLAnalysisError("mixed ? and $n placeholders are not allowed")
        return dataclasses.replace(stmt, param_count=max(self.qmarks, self.dollars))

    def _stmt_begin(self) -> Noop:
        self.accept("transaction") or self.accept("work")
        return Noop("begin")

    def _stmt_start(self) -> Noop:
        self.expect("transaction")
        return Noop("begin")

    def _stmt_commit(self) -> Noop:
        return Noop("commit")

    def _stmt_set(self) -> Noop:
        self.pos = len(self.tokens)
        return Noop("set")

    def _stmt_refresh(self) -> Refresh:
        self.expect("table")
        return Refresh(tuple(self.comma_list(self.table_name)))

    def _stmt_show(self) -> ShowCreate:
        self.expect("create")
        self.expect("table")
        return ShowCreate(self.table_name())

    def _stmt_drop(self) -> DropTable:
        self.expect("table")
        if_exists = self.accept("if", "exists")
        return DropTable(self.table_name(), if_exists)

    def _stmt_alter(self) -> AlterTable | SwapTable:
        if self.accept("cluster"):
            self.expect("swap")
            self.expect("table")
            source = self.table_name()
            self.expect("to")
            target = self.table_name()
            settings = dict(self.paren_list(self.setting)) if self.accept("with") else {}
            unknown = sorted(set(settings) - {"drop_source"})
            if unknown:
                raise self.error(f"unknown SWAP TABLE option {unknown[0]!r}")
            return SwapTable(source, target, settings.get("drop_source") is True)
        self.expect("table")
        table = self.table_name()
        if self.accept("add"):
            self.accept("column")
            return AlterTable(table, (), (self.column_def([]),))
        if self.accept("reset"):
            return AlterTable(table, tuple((k, None) for k in self.paren_list(self.setting_key)))
        self.expect("set")
        return AlterTable(table, tuple(self.paren_list(self.setting)))

    def _stmt_create(self) -> CreateTable:
        self.expect("table")
        if_not_exists = self.accept("if", "not", "exists")
        table = self.table_name()
        self.expect("(")
        columns: list[ColumnDef] = []
        pk: list[str] = []
        checks: list[Check] = []
        while True:
            if self.accept("primary", "key"):
                pk.extend(self.paren_list(self.ident))
            elif self.peek() in (("id", "check"), ("id", "constraint")):
                checks.append(self.check())
            else:
                columns.append(self.column_def(pk, checks))
            if not self.accept(","):
                break
        self.expect(")")
        shards = None
        settings: list[tuple[str, Any]] = []
        while True:
            if self.accept("clustered"):
                if self.accept("by"):
                    self.paren_list(self.ident)
                self.expect("into")
                shards = self.integer()
                self.expect("shards")
            elif self.accept("partitioned", "by"):
                self.paren_list(self.ident)
            elif self.accept("with"):
                settings.extend(self.paren_list(self.setting))
            else:
                break
        names = [c.name for c in columns]
        pk = list(dict.fromkeys(pk))
        for key in pk:
            if key not in names:
                raise SQLAnalysisError(f"primary key column {key!r} is not defined")
        return CreateTable(
            table, tuple(columns), tuple(pk), if_not_exists, shards, tuple(settings),
            checks=tuple(checks),
        )  # fmt: skip

    def _stmt_insert(self) -> Insert:
        self.expect("into")
        table = self.table_name()
        columns: list[str] = []
        if self.peek() == ("op", "("):
            columns = self.paren_list(self.ident)
        self.expect("values")
        rows = self.comma_list(lambda: tuple(self.paren_list(self.operand)))
        on_conflict = None
        if self.accept("on", "conflict"):
            target: list[str] = []
            if self.peek() == ("op", "("):
                target = self.paren_list(self.ident)
            self.expect("do")
            if self.accept("nothing"):
                on_conflict = OnConflict(tuple(target))
            else:
                self.expect("update", "set")
                on_conflict = OnConflict(tuple(target), tuple(self.comma_list(self.assignment)))
        return Insert(table, tuple(columns), tuple(rows), on_conflict)

    def assignment(self) -> tuple[str, Expr]:
        name = self.ident()
        self.expect("=")
        return name, self.operand()

    def _stmt_update(self) -> Update:
        table = self.table_name()
        self.expect("set")
        assignments = tuple(self.comma_list(self.assignment))
        return Update(table, assignments, self.where())

    def _stmt_delete(self) -> Delete:
        self.expect("from")
        table = self.table_name()
        return Delete(table, self.where())

    def _stmt_select(self) -> Select:
        items = tuple(self.comma_list(self.select_item))
        table = None
        if self.accept("from"):
            table = self.table_name()
            kind, value = self.peek()
            if kind == "id" and value not in ("where", "order", "limit"):
                self.accept("as")
                self.ident()  # a table alias: ignored
        where = self.where()
        order: list[tuple[Expr, bool]] = []
        if self.accept("order", "by"):
            order = self.comma_list(self.order_item)
        limit = self.operand() if self.accept("limit") else None
        return Select(items, table, where, tuple(order), limit)

    def select_item(self) -> SelectItem:
        if self.accept("*"):
            return SelectItem(Star())
        expr = self.operand()
        if self.accept("as"):
            return SelectItem(expr, self.ident())
        return SelectItem(expr)

    def order_item(self) -> tuple[Expr, bool]:
        expr = self.operand()
        desc = self.accept("desc")
        if not desc:
            self.accept("asc")
        self.accept("nulls", "first") or self.accept("nulls", "last")
        return expr, desc

    def where(self) -> tuple[Cond, ...]:
        if not self.accept("where"):
            return ()
        conds = [self.condition()]
        while self.accept("and"):
            conds.append(self.condition())
        if self.peek() == ("id", "or"):
            raise self.error("OR is not supported by the stand-in")
        return tuple(conds)
