"""How many connections a mapper job needs open at once per database to make progress (pure).

Theory of operation
-------------------
A run holds its state store's connection (it carries the job's lock) from its start to its
end.  Every other connection it opens in a step that takes its tokens, works, and gives them
back; the widest step is a chunk: a connection to the target, then one to the source, both
held until the chunk commits -- or one connection for both when source and target are
PostgreSQL in one database (the chunk stages with ``INSERT ... SELECT``).  Preflight's reads
take no more than a chunk (source and target at once in two PostgreSQL databases, one kept
connection in one database); the target's preparation and the source's survey run side by
side, one connection each, and either waits for the other's token to come back; a full
refresh's index builds take one token each as they free.  So per database a run needs its
state store's connection plus what one chunk holds there.  With fewer, its first chunk waits
for a token only the run's own state connection could free: the run hangs without a word.

A chunk executor that holds a token per role whatever the databases (``apart``, the Ray chunk
executor) needs a source and a target token in one database too.  Database identity (``key``)
is passed in; URLs are only read for their dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from async_etl.core.urls import dialect_of

__all__ = ["chunk_connections", "minimum", "needed_connections", "refusal"]

STATE = "its state store's (held for the whole run, with the job's lock)"
TARGET = "a chunk's target connection"
SOURCE = "a chunk's source connection"
BOTH = "a chunk's one connection (source and target are this PostgreSQL database)"


def chunk_connections(source: str, target: str, key: Callable[[str], str], *,
                      apart: bool = False) -> list[str]:  # fmt: skip
    """The URL of each connection one chunk holds at once: the target's, then the source's.

    One URL (the target's) when source and target are PostgreSQL in one database (unless
    ``apart``: see ``needed_connections``).  Raises nothing.
    """
    shared = (
        not apart
        and key(source) == key(target)
        and dialect_of(source) == dialect_of(target) == "postgresql"
    )
    return [target] if shared else [target, source]


def needed_connections(
    state: str, source: str, target: str, key: Callable[[str], str], *, apart: bool = False
) -> dict[str, list[str]]:
    """Database key -> why each connection a job needs open there at once (count: its length).

    ``state``, ``source``, ``target``: the job's URLs; ``apart``: a chunk holds a source and a
    target token even in one database.  Raises nothing.
    """
    needs: dict[str, list[str]] = {key(state): [STATE]}
    chunk = chunk_connections(source, target, key, apart=apart)
    if len(chunk) == 1:
        needs.setdefault(key(target), []).append(BOTH)
    else:
        needs.setdefault(key(target), []).append(TARGET)
        needs.setdefault(key(source), []).append(SOURCE)
    return needs


def minimum(
    state: str, source: str, target: str, key: Callable[[str], str], *, apart: bool = False
) -> dict[str, int]:
    """A job's minimum: URL -> connections it needs open at once on that database.

    The one source of the number ``run_job`` reserves (``jobs.runner.job_minimum``),
    orchestrator admission reserves (``orchestrator.admission``) and a Ray job's grant waits
    for (``jobs.ray_jobs.connection_needs``): ``needed_connections`` counted, each database
    under the first of ``state``, ``source``, ``target`` that names it.  Raises nothing.
    """
    spelling: dict[str, str] = {}
    for url in (state, source, target):
        spelling.setdefault(key(url), url)
    needs = needed_connections(state, source, target, key, apart=apart)
    return {spelling[db]: len(why) for db, why in needs.items()}


def refusal(job: str, database: str, limit: int, why: Sequence[str]) -> str:
    """The one line refusing ``job`` a budget of ``limit`` connections on ``database``."""
    return (
        f"job {job}: the connection budget for {database} is {limit}; this job needs at least "
        f"{len(why)} connections there at once ({'; '.join(why)}), so it could never finish: "
        f"give that database a budget of at least {len(why)}"
    )
