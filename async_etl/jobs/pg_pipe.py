"""The PostgreSQL target's concurrent steps: a binary COPY pipe, and tasks run together.

- ``pipe`` copies a chunk from a PostgreSQL source connection into a target table as binary
  ``COPY`` out piped into binary ``COPY`` in, through a bounded memory stream (8 buffers), the
  stop flag checked between buffers;
- ``run_all`` runs coroutine functions in one task group and re-raises the first real failure
  bare (not in an ``ExceptionGroup``); ``bound`` binds arguments for it (a full refresh's index
  builds, one connection each).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import anyio

from async_etl.core.chunks import Chunk
from async_etl.jobs.context import JobContext
from async_etl.sources.postgres import PgSource

__all__ = ["bound", "pipe", "run_all"]


async def pipe(
    ctx: JobContext,
    source: PgSource,
    sconn: Any,
    conn: Any,
    chunk: Chunk,
    dest: str,
    columns: Sequence[str],
    tail: Sequence[str],
    select: str = "*",
) -> int:
    """Binary COPY from the source connection into ``dest``, through a bounded stream.

    ``select``: the source's columns as read (``core.pg_casts.cast_select``), so that each
    field is in the binary format of ``dest``'s column.
    """
    send, receive = anyio.create_memory_object_stream[bytes](8)
    rows = 0

    async def produce() -> None:
        nonlocal rows
        async with send:

            async def out(data: bytes) -> None:
                ctx.check_stop()
                await send.send(data)

            rows = await source.copy_out(sconn, chunk, out, tail, select)

    async def consume() -> None:
        async with receive:
            schema, _, name = dest.rpartition(".")
            await conn.copy_to_table(name, schema_name=schema or None, source=_iterate(receive),
                                     columns=list(columns), format="binary")  # fmt: skip

    await run_all(produce, consume)
    return rows


async def _iterate(receive: Any) -> AsyncIterator[bytes]:
    async for data in receive:
        yield data


def _leaf_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The most telling exception of a group: the first that is not a cancellation."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    cancelled = anyio.get_cancelled_exc_class()
    for exc in leaves:
        if not isinstance(exc, cancelled):
            return exc
    return leaves[0]


def bound(
    fn: Callable[..., Coroutine[Any, Any, None]], *args: Any
) -> Callable[[], Coroutine[Any, Any, None]]:
    """``fn`` with ``args`` bound, for ``run_all``."""

    async def call() -> None:
        await fn(*args)

    return call


async def run_all(*fns: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``fns`` concurrently in one task group; re-raise the first real failure bare.

    When one fails the others are cancelled (task-group semantics); the caller sees the
    failing task's own exception instead of an ``ExceptionGroup``.
    """
    try:
        async with anyio.create_task_group() as tg:
            for fn in fns:
                tg.start_soon(fn)
    except BaseExceptionGroup as group:
        raise _leaf_error(group)  # noqa: B904 - keep the leaf's own cause chain
