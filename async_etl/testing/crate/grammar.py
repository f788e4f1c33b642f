"""CrateDB's own grammar, when ``cratedb-sqlparse`` is installed: the stand-in's first check.

The stand-in's parser understands a subset of CrateDB SQL.  To answer like CrateDB, a statement
is first parsed with CrateDB's published ANTLR grammar (``pip install async-etl[standin]``):
text the grammar rejects gets CrateDB's own ``SQLParseException`` (``line L:C: message``, both
1-based, as CrateDB reports them); text it accepts but the stand-in cannot run gets a distinct
"not supported by the stand-in" error.  Without the package the stand-in's own parser decides
alone (every refusal is then a ``SQLParseException``).  Pure; the server caches parses.
"""

from __future__ import annotations

from typing import Any

from async_etl.testing.crate.sqlexpr import position

_sqlparse: Any = None
ParsingException: Any = Exception
try:  # an optional dependency: the stand-in works without it
    import cratedb_sqlparse
    import cratedb_sqlparse.parser

    _sqlparse = cratedb_sqlparse.sqlparse
    ParsingException = cratedb_sqlparse.parser.ParsingException
except ImportError:  # pragma: no cover - exercised where the package is missing
    pass

AVAILABLE = _sqlparse is not None
"""Whether CrateDB's grammar is installed."""

__all__ = ["AVAILABLE", "grammar_error"]


def grammar_error(text: str) -> str | None:
    """CrateDB's parse error for ``text`` (``line L:C: ...``), or None when it parses.

    Also None when the grammar is not installed or fails itself on the text (its lexer cannot
    upper-case some characters, e.g. ``ß``): the stand-in's own parser then decides.  Several
    statements in one text are an error, as in CrateDB's HTTP endpoint.
    """
    if _sqlparse is None:
        return None
    try:
        statements = _sqlparse(text, raise_exception=True)
    except ParsingException as exc:
        token = getattr(exc, "offending_token", None)
        where = f"line {token.line}:{token.column + 1}" if token is not None else position(text, 0)
        return f"{where}: {getattr(exc, 'message', str(exc))}"
    except Exception:  # the grammar package itself fails on some text (e.g. 'ß'): not a verdict
        return None
    if len(statements) > 1:
        second = text.find(";") + 1
        while second < len(text) and text[second].isspace():
            second += 1
        word = text[second:].split(None, 1)[0] if text[second:].strip() else ""
        return f"{position(text, second)}: mismatched input '{word}' expecting <EOF>"
    return None
