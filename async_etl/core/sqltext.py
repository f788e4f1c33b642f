"""A user's ``[source] query`` made safe to embed: one statement, no terminator, newlines around.

Theory of operation
-------------------
Every statement that reads the source embeds the user's query as a derived table
(``SELECT ... FROM (<query>) AS q WHERE <chunk bounds>``).  Pasting the text as written breaks
on ordinary SQL: a trailing ``-- comment`` swallows the closing parenthesis, a trailing ``;``
ends the statement early, and a second statement after the ``;`` would run as part of the load.

``source_query`` scans the text once with a small lexer that knows the dialect's quoting and
comment rules (so a ``;`` or ``--`` inside a string, a quoted name or a comment is just text):

* PostgreSQL: ``'...'`` (``''`` doubled), ``E'...'`` (backslash escapes), ``"..."``,
  ``$tag$...$tag$``, ``-- ...`` and ``/* ... */`` comments, which nest;
* Oracle: ``'...'``, ``q'[...]'`` (any delimiter; ``[ ( { <`` close with their partner),
  ``"..."``, ``--`` and non-nesting ``/* */``.

It splits at the top-level ``;`` characters, drops parts that hold only blanks and comments,
and requires exactly one statement, which must start like a query (``SELECT``, ``WITH``,
``VALUES``, ``TABLE`` or ``(``).  The statement's own text (comments included) is returned
unchanged; ``subquery`` wraps it in parentheses on lines of their own, so a comment at its end
can never comment out what follows.  Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal

__all__ = [
    "EXACT_FLOATS_SQL",
    "QUERY_STARTS",
    "ROW_LIMITS",
    "SqlTextError",
    "floats_print_exactly",
    "inline_integers",
    "inline_literals",
    "limits_rows",
    "quote_literals_sql",
    "source_query",
    "subquery",
    "typed_literals",
]

Dialect = Literal["postgresql", "oracle"]

QUERY_STARTS = ("select", "with", "values", "table", "(")
"""How a statement that returns rows may begin (first word, lower case, or a parenthesis)."""

ROW_LIMITS = frozenset({"limit", "offset", "fetch"})
"""Top-level words that make a query return a subset of its rows (``LIMIT``, ``OFFSET``,
``FETCH FIRST``): such a query cannot be cut into key ranges, each range would apply it again."""

_START = r"[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f]"
"""What starts a PostgreSQL name: an ASCII letter, ``_`` or any non-ASCII character (the
server's lexer reads UTF-8 bytes 0x80-0xff as letters).  Written as the ASCII characters it
is *not*: the same set as ``[A-Za-z_\u0080-\U0010ffff]``, but a range up to U+10FFFF took
8-14 ms to compile at every start (``re`` walks it code point by code point), this ~0.1 ms."""
_DOLLAR_TAG = _START + r"[^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]*"
"""A dollar quote's tag: a name's start, then letters, digits, ``_`` or non-ASCII (no ``$``)."""
_NAME = re.compile(_START + r"[^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]*")
"""A PostgreSQL name or keyword: every non-ASCII character starts or continues one, as in
the server's lexer (``café$1`` is one name, no placeholder in it); ``$`` continues one."""
_PARTNER = {"[": "]", "(": ")", "{": "}", "<": ">"}


@cache
def _dollar() -> re.Pattern[str]:
    """The dollar-quote pattern (``$$`` or ``$tag$``), compiled on first use."""
    return re.compile(rf"\$({_DOLLAR_TAG})?\$")


class SqlTextError(ValueError):
    """Raised when a source query is not exactly one statement that returns rows."""


@dataclass(frozen=True, slots=True)
class _Part:
    """One ``;``-separated piece: its text span and where its first token starts."""

    start: int
    end: int
    first: int | None  # offset of the first character that is not a blank or a comment


def _where(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _skip_quoted(text: str, i: int, quote: str, backslash: bool) -> int:
    """End offset (exclusive) of a quoted token whose opening quote is at ``i``."""
    j = i + 1
    while j < len(text):
        c = text[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < len(text) and text[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    kind = "quoted name" if quote == '"' else "string literal"
    raise SqlTextError(f"unterminated {kind} starting at {_where(text, i)}")


def _skip_block(text: str, i: int, nested: bool) -> int:
    """End offset of a ``/* */`` comment starting at ``i`` (nested ones count in PostgreSQL)."""
    depth, j = 1, i + 2
    while j < len(text):
        if nested and text.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif text.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    raise SqlTextError(f"unterminated /* comment starting at {_where(text, i)}")


def _skip_token(
    text: str, i: int, dialect: Dialect, *, standard_strings: bool = True
) -> tuple[int, bool]:
    """(end of the token at ``i``, whether it is a comment) for quotes and comments.

    ``standard_strings``: PostgreSQL's ``standard_conforming_strings``; off, a backslash
    escapes in a plain ``'...'`` string too.  Returns ``(i, False)`` when ``i`` starts neither.
    """
    c = text[i]
    if text.startswith("--", i):
        end = text.find("\n", i)
        return (len(text) if end < 0 else end), True
    if text.startswith("/*", i):
        return _skip_block(text, i, nested=dialect == "postgresql"), True
    if c == '"':
        return _skip_quoted(text, i, '"', backslash=False), False
    if c == "'":
        return _skip_quoted(text, i, "'", backslash=not standard_strings), False
    prev_word = i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")
    if dialect == "postgresql" and not prev_word:
        if c in "eE" and text.startswith("'", i + 1):
            return _skip_quoted(text, i + 1, "'", backslash=True), False
        m = _dollar().match(text, i) if c == "$" else None
        if m is not None:
            end = text.find(m.group(0), m.end())
            if end < 0:
                raise SqlTextError(f"unterminated {m.group(0)} string starting at "
                                   f"{_where(text, i)}")  # fmt: skip
            return end + len(m.group(0)), False
    if dialect == "oracle" and not prev_word and c in "qQnN":
        j = i + 1 if c in "qQ" else i + 2 if text[i + 1 : i + 2] in ("q", "Q") else -1
        if j > 0 and text.startswith("'", j) and j + 1 < len(text):
            close = _PARTNER.get(text[j + 1], text[j + 1]) + "'"
            end = text.find(close, j + 2)
            if end < 0:
                raise SqlTextError(f"unterminated q'...' string starting at {_where(text, i)}")
            return end + 2, False
    return i, False


def _parts(text: str, dialect: Dialect) -> list[_Part]:
    """Split at top-level ``;``; each part records its first non-comment character."""
    parts: list[_Part] = []
    start, first, i = 0, None, 0
    while i < len(text):
        c = text[i]
        if c == ";":
            parts.append(_Part(start, i, first))
            start, first, i = i + 1, None, i + 1
            continue
        end, comment = _skip_token(text, i, dialect)
        if end > i:
            if not comment and first is None:
                first = i
            i = end
            continue
        if first is None and not c.isspace():
            first = i
        m = _NAME.match(text, i)
        i = m.end() if m is not None else i + 1
    parts.append(_Part(start, len(text), first))
    return parts


def source_query(text: str, dialect: Dialect = "postgresql") -> str:
    """The single statement of ``text``, without its terminating ``;`` and what follows it.

    Comments and blanks after the last ``;`` are dropped; everything else is kept verbatim.
    Raises ``SqlTextError`` (one line, with the line and column) for an empty text, two or
    more statements, a statement that does not return rows, or an unterminated string,
    quoted name or comment.
    """
    statements = [p for p in _parts(text, dialect) if p.first is not None]
    if not statements:
        raise SqlTextError("holds no statement (only blanks, comments or ';')")
    if len(statements) > 1:
        second = statements[1]
        assert second.first is not None
        head = " ".join(text[second.first : second.end].split())[:40]
        raise SqlTextError(f"holds {len(statements)} statements; the second starts at "
                           f"{_where(text, second.first)} ({head!r}); give one SELECT")  # fmt: skip
    only = statements[0]
    assert only.first is not None
    m = _NAME.match(text, only.first)
    word = m.group(0).lower() if m is not None else text[only.first]
    if word not in QUERY_STARTS:
        raise SqlTextError(f"must be one SELECT (or WITH / VALUES / TABLE), not {word.upper()!r} "
                           f"at {_where(text, only.first)}")  # fmt: skip
    return text[only.start : only.end].strip()


def subquery(query: str) -> str:
    """``query`` in parentheses on lines of their own: ``(``, line break, query, line break, ``)``.

    A ``-- comment`` ending the query then ends at its own line break, never swallowing the
    closing parenthesis or the SQL that follows it.
    """
    return f"(\n{query}\n)"


_CLAUSES = frozenset({"select", "from", "where", "group", "having", "order", "connect", "start"})
"""Words that start a clause of a query (what an Oracle ``ROWNUM`` / ``SAMPLE`` is inside)."""


def limits_rows(query: str, dialect: Dialect = "postgresql") -> bool:
    """Whether ``query`` limits its rows at the top level (``LIMIT``, ``OFFSET``, ``FETCH``).

    Oracle also: ``ROWNUM`` in the top-level ``WHERE`` (``WHERE ROWNUM <= 10``; in the select
    list it only numbers rows) and a ``SAMPLE`` clause after a table of the top-level ``FROM``.
    Words inside parentheses (subqueries, CTE bodies), strings, quoted names and comments do not
    count.  A chunked read wraps the query once per key range, so a top-level limit would pick
    its rows again in every range (rows lost or read twice): the planner reads such a query as
    one chunk.
    """
    depth, i, clause = 0, 0, ""
    while i < len(query):
        c = query[i]
        end, _comment = _skip_token(query, i, dialect)
        if end > i:
            i = end
        elif c == "(":
            depth, i = depth + 1, i + 1
        elif c == ")":
            depth, i = depth - 1, i + 1
        elif (m := _NAME.match(query, i)) is not None:
            word = m.group(0).lower()
            if depth == 0 and word in ROW_LIMITS:
                return True
            if depth == 0 and dialect == "oracle":
                if word in _CLAUSES:
                    clause = word
                elif (word, clause) == ("rownum", "where") or (
                    (word, clause) == ("sample", "from")
                    and re.match(r"\s*(\(|block\b)", query[m.end() :], re.IGNORECASE)
                ):
                    return True
            i = m.end()
        else:
            i += 1
    return False


_PARAM = re.compile(r"\$([0-9]+)")


def inline_integers(
    text: str, args: Sequence[object], *, standard_strings: bool = True
) -> str | None:
    """PostgreSQL ``text`` with its ``$n`` placeholders replaced by ``args[n - 1]`` as literals.

    For a statement that takes no parameters (``COPY (query) TO``).  Only when every argument
    is an ``int`` (not a bool) or None: an int is written ``'<digits>'`` and None ``NULL``,
    the text asyncpg's own inlining gets from the server (``quote_literal($n::type::text)``,
    a prepare and a query: two round trips), so the statement is the same.  Placeholders in
    string literals, quoted names, dollar quotes and comments are left alone.  Returns None
    when an argument is of another type or a placeholder has no argument (the caller inlines
    through the server then).  ``standard_strings``: the session's
    ``standard_conforming_strings`` (as for ``inline_literals``).  Raises ``SqlTextError`` on
    an unterminated quote or comment.
    """
    if not all(a is None or type(a) is int for a in args):
        return None
    if any(n > len(args) or n < 1 for _, _, n in _placeholders(text, standard_strings)):
        return None
    literals = ["NULL" if a is None else f"'{a}'" for a in args]
    return inline_literals(text, literals, standard_strings=standard_strings)


def inline_literals(text: str, literals: Sequence[str], *, standard_strings: bool = True) -> str:
    """PostgreSQL ``text`` with each ``$n`` placeholder replaced by SQL text ``literals[n - 1]``.

    Placeholders are found by this module's lexer: a ``$n`` in a string literal, a quoted
    name, a dollar quote or a comment is text, not a placeholder (asyncpg's own inlining,
    a regular expression over the whole text, replaces those too).  ``literals`` come from
    ``inline_integers`` or ``typed_literals``.  ``standard_strings``: the session's
    ``standard_conforming_strings``; off, the server reads a backslash in a plain ``'...'``
    string as an escape, and so does the lexer.  Raises ``SqlTextError`` on an unterminated
    quote or comment, or a placeholder with no literal.
    """
    out: list[str] = []
    last = 0
    for start, end, n in _placeholders(text, standard_strings):
        if n > len(literals) or n < 1:
            raise SqlTextError(f"${n} has no value ({len(literals)} given)")
        out += [text[last:start], literals[n - 1]]
        last = end
    return "".join(out) + text[last:]


_FLOAT_SETTINGS = ("extra_float_digits", "server_version_num")

EXACT_FLOATS_SQL = "SET LOCAL extra_float_digits = 3"
"""Makes the session print every float4 / float8 exactly until its transaction ends."""


def quote_literals_sql(types: Sequence[str]) -> str:
    """The query that asks PostgreSQL for each argument's literal: one row, a column per type.

    ``types``: the statement's parameter types as qualified, quoted names (``"pg_catalog".
    "timestamptz"``), in placeholder order.  Column n is ``quote_literal($n::type::text)``
    (NULL for a NULL argument): the value bound as that type, written out by the server in
    its session settings (DateStyle, TimeZone, extra_float_digits) and read back the same
    way by the statement it is inlined into on that connection.  The text asyncpg's
    inlining asks for.  Two more columns follow, the session's ``extra_float_digits`` and
    ``server_version_num`` (ints), for ``floats_print_exactly``: a float's text is exact
    only under some settings, and no setting changes between the two statements.
    """
    cols = ", ".join(f"quote_literal(${i}::{t}::text)" for i, t in enumerate(types, start=1))
    settings = ", ".join(f"current_setting('{n}')::int" for n in _FLOAT_SETTINGS)
    return f"SELECT {cols}, {settings}"


def floats_print_exactly(extra_float_digits: int, server_version_num: int) -> bool:
    """Whether the session's text of every float4 / float8 value reads back as that value.

    PostgreSQL 12 and later print the shortest text that reads back exactly when
    ``extra_float_digits`` is 1 or more (1 is the default), and 15 (float8) or 6 (float4)
    significant digits, fewer when it is negative, when it is 0 or less: another number.
    Before 12, only 3 gives enough digits (17, 9).  When False, ask for the literals again
    under ``EXACT_FLOATS_SQL`` (PostgreSQL documentation, "Floating-Point Types").
    """
    if server_version_num >= 120000:
        return extra_float_digits >= 1
    return extra_float_digits >= 3


def typed_literals(quoted: Sequence[str | None], types: Sequence[str]) -> list[str]:
    """``'<quoted>'::type`` per argument (``NULL::type`` for None), for ``inline_literals``.

    ``quoted``: the literal columns of ``quote_literals_sql(types)``'s row.  The cast names
    the type the server gave the placeholder, so the constant is typed as the parameter was
    rather than left to be resolved again from its context.  Raises ``ValueError`` on a
    length mismatch.
    """
    if len(quoted) != len(types):
        raise ValueError(f"{len(quoted)} literals for {len(types)} types")
    return [f"{'NULL' if q is None else q}::{t}" for q, t in zip(quoted, types, strict=True)]


@lru_cache(maxsize=256)
def _placeholders(text: str, standard_strings: bool) -> tuple[tuple[int, int, int], ...]:
    """(start, end, n) of each ``$n`` outside quotes and comments.

    Cached: every chunk of a job has the same text, with other bounds.
    """
    found: list[tuple[int, int, int]] = []
    i = 0
    while i < len(text):
        end, _ = _skip_token(text, i, "postgresql", standard_strings=standard_strings)
        if end > i:
            i = end
            continue
        c = text[i]
        m = _PARAM.match(text, i) if c == "$" else None
        if m is not None:
            found.append((i, m.end(), int(m.group(1))))
            i = m.end()
            continue
        w = _NAME.match(text, i)
        i = w.end() if w is not None else i + 1
    return tuple(found)
