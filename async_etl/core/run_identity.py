"""What a stored run was planned against, and why another job may not resume it.

A new run's plan (``jobs.planning.plan_run``) stores its ``target`` (where its committed
chunks are) and its ``source`` (what they were read from: database, table or query, chunk
key, columns as read).  A run resumed later skips the committed chunks, so it must write to
the same place from the same source: a run into another table would leave the committed
chunks elsewhere (its target then lacks them), and a run over another query, key or columns
would mix two sources in one target (or read chunk bounds cut over another key).  Pure: the
identities are built by the caller; a plan stored before plans recorded them resumes as
before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from async_etl.core.scd_sql_common import Sql

__all__ = [
    "PG_CLUSTER_SQL",
    "PG_PLACE_SQL",
    "Place",
    "database_identity",
    "identity_problem",
    "pg_database_identity",
    "source_identity",
    "target_identity",
]

Place = tuple[str | None, str | None, str | None]
"""Where a source or target table is, as its database resolves it: (the server's cluster
identifier, the database's oid, ``schema.table``); None where not known (the URL's database
key then stands for the database; a source query has no table)."""

PG_PLACE_SQL = Sql(
    "SELECT (SELECT oid FROM pg_database WHERE datname = current_database())::text, "
    "has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE'), "
    "coalesce((SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.oid = to_regclass($1)), $2::text, (current_schemas(false))[1]), "
    "coalesce((SELECT relname FROM pg_class WHERE oid = to_regclass($1)), $3::text)",
    ("relation", "schema", "name"),
)
"""Where a PostgreSQL table is: its database's oid, whether ``PG_CLUSTER_SQL`` may be
asked, and the table's schema and name as the server resolves them.  ``relation``: the
quoted name as given (``to_regclass``); ``schema`` (None when unqualified) and ``name``: its
parts.  A table that is not there yet is where ``CREATE TABLE`` would put it: its schema as
given, else the search path's first existing schema (``current_schemas``)."""

PG_CLUSTER_SQL = Sql("SELECT system_identifier::text FROM pg_control_system()")
"""The server's cluster identifier (set by ``initdb``); ``PG_PLACE_SQL`` says whether the user
may ask it."""


def pg_database_identity(cluster: str | None, database_oid: str, url_key: str) -> str:
    """A PostgreSQL database's identity, whatever the host name, user or password reaching it.

    ``cluster``: the server's ``PG_CLUSTER_SQL`` (None: not readable by the user, so the URL's
    ``url_key``, a ``jobs.budget.database_key``, stands for the server); ``database_oid``:
    ``PG_PLACE_SQL``'s (a database dropped and made again is another one).
    """
    server = f"cluster {cluster}" if cluster is not None else url_key.rpartition("/")[0]
    return f"postgresql {server} database {database_oid}"


def database_identity(place: Place, url_key: str) -> str:
    """The database of ``place`` (``pg_database_identity``), or ``url_key`` when it is unknown."""
    cluster, oid, _ = place
    return url_key if oid is None else pg_database_identity(cluster, oid, url_key)


def target_identity(url_key: str, table: str, database: str, relation: str) -> list[str]:
    """The JSON-able ``target`` a new plan stores: as written, then as the target resolves it.

    ``url_key``: the URL's ``database_key`` and ``table`` as written, shown in messages;
    ``database`` and ``relation`` (``schema.table``) as the target database resolves them
    (``pg_database_identity``; elsewhere the URL's key and the name as written), compared.
    """
    return [url_key, table, database, relation]


def source_identity(
    database: str,
    table: str | None,
    query: str | None,
    key: Sequence[str],
    columns: Sequence[tuple[str, str]],
    resolved: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """The JSON-able ``source`` a new plan stores: database key, table, query, key, columns.

    ``database``: a key without credentials (``jobs.budget.database_key``); ``columns``:
    the source's ``(name, type)`` as preflight read them; ``resolved``: the database
    (``database_identity``) and ``schema.table`` (None: a query) as the source resolves
    them, compared instead of ``database`` and ``table`` when both plans have it.
    """
    out: dict[str, Any] = {
        "database": database,
        "table": table,
        "query": query,
        "key": list(key),
        "columns": [[n, t] for n, t in columns],
    }
    if resolved is not None:
        out["resolved"] = list(resolved)
    return out


def identity_problem(
    stored_target: object,
    target: Sequence[str],
    stored_source: object,
    source: Mapping[str, Any],
) -> str | None:
    """Why a run into ``target`` reading ``source`` may not resume a plan stored with these.

    None: it may.  ``target`` is ``target_identity``; ``source`` is ``source_identity``.  Two
    targets are compared as their databases resolve them (a table named with or without its
    schema, a host by another name, other credentials: the same target); a plan stored as
    ``[database key, table]`` (before plans recorded the resolved names) is compared as
    written.  A stored value of another shape (a plan stored before plans recorded it) is no
    problem.
    The text follows ``"run R "`` and ends with what to do.
    """
    if isinstance(stored_target, list) and _other_target(stored_target, target):
        was, now = _where(stored_target), _where(target)
        if was == now:  # the same names, resolved in another database (made again, or moved)
            now = f"{now}, another database"
        return (
            f"is unfinished into target {was}; its committed chunks are there, not in {now}: "
            "resume it with the target it had, or start over with --fresh"
        )
    if not isinstance(stored_source, dict):
        return None
    changed = _source_change(stored_source, source)
    if changed is None:
        return None
    return (
        f"was planned over another source ({changed}); its committed chunks were read from "
        "that one: resume it with the source it had, or start over with --fresh"
    )


def _other_target(was: list[Any], now: Sequence[str]) -> bool:
    """Whether a stored target is another than ``now`` (False: the same, or not comparable)."""
    if len(was) == 2:
        return was != list(now[:2])
    return len(was) == 4 == len(now) and was[2:] != list(now[2:])


def _where(target: Sequence[Any]) -> str:
    """A target in words: its table (as resolved, when known) and its URL's database key."""
    return f"{target[3] if len(target) == 4 else target[1]} ({target[0]})"


def _source_change(was: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """The first difference between two ``source_identity`` values, in words (None: none).

    Database and table as resolved when both have them (``resolved``), else as written.
    """
    old, new = was.get("resolved"), now.get("resolved")
    both = isinstance(old, list) and len(old) == 2 and isinstance(new, list) and len(new) == 2
    if both:
        assert isinstance(old, list) and isinstance(new, list)
        databases, tables = (old[0], new[0]), (old[1], new[1])
    else:
        databases, tables = (was.get("database"), now["database"]), (was.get("table"), now["table"])
    if databases[0] != databases[1]:
        shown = f"database {was.get('database')}, now {now['database']}"
        return shown if was.get("database") != now["database"] else f"{shown}, another database"
    if (tables[0], was.get("query")) != (tables[1], now["query"]):
        written = (was.get("table"), now["table"])  # named as written unless only resolved differ
        return _read_change(*(written if written[0] != written[1] else tables))
    if was.get("key") != now["key"]:
        return f"[source] key {_names(was.get('key'))}, now {_names(now['key'])}"
    if was.get("columns") != now["columns"]:
        return _column_change(was.get("columns"), now["columns"])
    return None


def _read_change(was: object, now: object) -> str:
    """A changed table or query in words (a query's text is not repeated: it may be long)."""
    if was is None and now is None:
        return "another [source] query"
    before = "a [source] query" if was is None else f"[source] table {was}"
    return f"{before}, now {'a query' if now is None else f'table {now}'}"


def _names(value: object) -> str:
    """A stored key as ``a, b``."""
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _column_change(was: object, now: list[list[str]]) -> str:
    """The first column added, dropped or retyped between two stored column lists."""
    before = {str(c[0]): str(c[1]) for c in was} if isinstance(was, list) else {}
    after = {n: t for n, t in now}
    for name, kind in after.items():
        if name not in before:
            return f"column {name} was not among its columns"
        if before[name] != kind:
            return f"column {name} was {before[name]}, now {kind}"
    for name in before:
        if name not in after:
            return f"column {name} was among its columns, now not"
    return "its columns in another order"
