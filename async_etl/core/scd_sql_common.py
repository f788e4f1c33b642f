"""Shared pieces of the per-dialect SQL generators: quoting, binds, chunk-bound predicates.

A generated statement is an ``Sql``: its text plus the *logical* name of every bind parameter
in bind order (``as_of``, ``lo0``, ``lo1``, ``hi0``...).  ``Sql.args(values)`` turns a mapping of
those names into the positional argument list the driver passes along, so the driver never
counts placeholders.  PostgreSQL binds are ``$n`` (a name used twice reuses its number); Oracle
``:n`` and CrateDB ``?`` get one bind per occurrence, numbered in text order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from async_etl.core.chunks import Chunk
from async_etl.core.collation import collated
from async_etl.core.specs import is_identifier
from async_etl.core.sqltext import subquery

Style: TypeAlias = Literal["pg", "oracle", "crate"]

_NAME = r'(?:[A-Za-z_][A-Za-z0-9_]*|"[^"]+")'
_TYPE = re.compile(rf"^{_NAME}(?:\.{_NAME})?[A-Za-z0-9_ ,()\[\]]*$")


def ident(name: str) -> str:
    """``name`` as one quoted PostgreSQL identifier, any characters (inner quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def quote(name: str, style: Style = "pg") -> str:
    """Quote a (possibly dotted) identifier; Oracle names are upper-cased as Oracle folds them.

    Raises ``ValueError`` on anything that is not ``[A-Za-z_][A-Za-z0-9_]*`` per part.
    """
    if not is_identifier(name, dotted=True):
        raise ValueError(f"bad identifier {name!r}")
    parts = name.upper().split(".") if style == "oracle" else name.split(".")
    return ".".join(f'"{p}"' for p in parts)


def check_type(sql_type: str) -> str:
    """A column type from the driver or ValueError.

    ``bigint``, ``numeric(12,2)``, ``text[]``, a schema-qualified or quoted name as
    ``format_type`` writes user types (``src.pair``, ``"char"``, ``"My Type"[]``).
    """
    if not _TYPE.fullmatch(sql_type.strip()):
        raise ValueError(f"bad column type {sql_type!r}")
    return sql_type.strip()


def short_name(table: str, suffix: str) -> str:
    """An index / staging name derived from ``table`` (last part), at most 63 characters."""
    base = table.split(".")[-1]
    return f"{base[: 62 - len(suffix)]}_{suffix}"


@dataclass(frozen=True, slots=True)
class Sql:
    """One statement: text, the logical bind names in bind order, and what its count means."""

    text: str
    params: tuple[str, ...] = ()
    counts: str = ""

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """Positional arguments for this statement; ``KeyError`` names a missing value."""
        return [values[p] for p in self.params]


class Binder:
    """Hands out placeholders in text order and records the logical names behind them."""

    def __init__(self, style: Style) -> None:
        self.style = style
        self.params: list[str] = []

    def __call__(self, name: str) -> str:
        if self.style == "pg":
            if name not in self.params:
                self.params.append(name)
            return f"${self.params.index(name) + 1}"
        self.params.append(name)
        return "?" if self.style == "crate" else f":{len(self.params)}"

    def sql(self, text: str, counts: str = "") -> Sql:
        """Wrap ``text`` with the names bound so far."""
        return Sql(" ".join(text.split()), tuple(self.params), counts)


def chunk_values(chunk: Chunk, as_of: Any = None) -> dict[str, Any]:
    """The bind values of a chunk's bounds (``lo0``.., ``hi0``..) plus ``as_of``."""
    out: dict[str, Any] = {"as_of": as_of}
    for prefix, bound in (("lo", chunk.lower), ("hi", chunk.upper)):
        for i, v in enumerate(bound or ()):
            out[f"{prefix}{i}"] = v
    return out


def _compare(cols: Sequence[str], op: str, prefix: str, bind: Binder, expand: bool) -> str:
    """``(c1, c2) op (x1, x2)`` as a row comparison, or expanded into ANDs / ORs."""
    if len(cols) == 1:
        return f"{cols[0]} {op} {bind(prefix + '0')}"
    if not expand:
        refs = ", ".join(bind(f"{prefix}{i}") for i in range(len(cols)))
        return f"({', '.join(cols)}) {op} ({refs})"
    strict = op[0]  # ">" or "<"

    def level(i: int) -> str:
        here = f"{prefix}{i}"
        if i == len(cols) - 1:
            return f"{cols[i]} {op} {bind(here)}"
        first = f"{cols[i]} {strict} {bind(here)}"
        return f"({first} OR ({cols[i]} = {bind(here)} AND {level(i + 1)}))"

    return level(0)


def bounds_predicate(
    cols: Sequence[str], chunk: Chunk, bind: Binder, *, expand: bool = False
) -> str:
    """``NOT NULL`` checks and ``lower <= key < upper`` for quoted key column references.

    Row-value comparison by default; ``expand`` writes ``a > :1 OR (a = :2 AND b >= :3)``
    (Oracle has no row-value inequality).  Open sides are omitted.  In PostgreSQL each column
    compares in the chunk's collation (``a COLLATE "en-x-icu" >= $1``); Oracle sessions and
    CrateDB compare text in code-point order, the only other ordering a plan for them has.
    """
    parts = [f"{c} IS NOT NULL" for c in cols]
    if bind.style == "pg" and chunk.collate:
        cols = [collated(c, n) for c, n in zip(cols, chunk.collate, strict=True)]
    if chunk.lower is not None:
        parts.append(_compare(cols, ">=", "lo", bind, expand))
    if chunk.upper is not None:
        parts.append(_compare(cols, "<", "hi", bind, expand))
    return " AND ".join(parts)


def rowcount_from_status(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 12`` or ``INSERT 0 5`` (0 if none)."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


SOURCE = "<<source>>"
"""Marks where ``embed_source`` puts the source relation in a statement template."""


def embed_source(st: Sql, relation: str) -> Sql:
    """``st`` with ``SOURCE`` replaced by ``relation`` verbatim.

    ``Binder.sql`` re-spaces its template; a user's query must not be re-spaced (a line break
    ends its ``--`` comments, and spaces inside its string literals are data), so it is put in
    only afterwards.
    """
    return Sql(st.text.replace(SOURCE, relation, 1), st.params, st.counts)


def source_relation(query: str | None, table: str | None, style: Style) -> str:
    """``(<query on its own lines>) AS q`` (``sqltext.subquery``), or the quoted table ``AS q``.

    Oracle takes no ``AS`` before a table alias, so there it is ``... q``.  ``query`` must
    already be one statement (``sqltext.source_query``, done by the job loader).  Raises
    ``ValueError`` on a bad ``table`` name (``quote``).
    """
    relation = subquery(query) if query is not None else quote(table or "", style)
    return f"{relation} q" if style == "oracle" else f"{relation} AS q"
