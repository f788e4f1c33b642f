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

__all__ = ["identity_problem", "source_identity"]


def source_identity(
    database: str,
    table: str | None,
    query: str | None,
    key: Sequence[str],
    columns: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """The JSON-able ``source`` a new plan stores: database key, table, query, key, columns.

    ``database``: a key without credentials (``jobs.budget.database_key``); ``columns``:
    the source's ``(name, type)`` as preflight read them.
    """
    return {
        "database": database,
        "table": table,
        "query": query,
        "key": list(key),
        "columns": [[n, t] for n, t in columns],
    }


def identity_problem(
    stored_target: object,
    target: Sequence[str],
    stored_source: object,
    source: Mapping[str, Any],
) -> str | None:
    """Why a run into ``target`` reading ``source`` may not resume a plan stored with these.

    None: it may.  ``target`` is ``[database key, table]``; ``source`` is ``source_identity``.
    A stored value of another shape (a plan stored before plans recorded it) is no problem.
    The text follows ``"run R "`` and ends with what to do.
    """
    was = stored_target
    if isinstance(was, list) and len(was) == 2 and list(was) != list(target):
        return (
            f"is unfinished into target {was[1]} ({was[0]}); its committed chunks are there, "
            f"not in {target[1]} ({target[0]}): resume it with the target it had, or start "
            "over with --fresh"
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


def _source_change(was: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """The first difference between two ``source_identity`` values, in words (None: none)."""
    if was.get("database") != now["database"]:
        return f"database {was.get('database')}, now {now['database']}"
    if (was.get("table"), was.get("query")) != (now["table"], now["query"]):
        return _read_change(was.get("table"), now["table"])
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
