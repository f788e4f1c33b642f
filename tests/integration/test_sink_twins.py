"""The sink twins answer the same scripted faults the same way (async vs blocking adapter).

Each scenario is one script run twice, through the async sink and through its blocking twin
(in a worker thread), each into its own table of the same database or stand-in; the two
traces of outcomes — results, and the type and kind of every error raised — must be equal,
and equal to what the scenario expects.  PostgreSQL is real; its faults come from
``async_etl.testing.pgproxy``.  CrateDB is the stand-in with its fault knobs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
import pytest

from async_etl.core.records import w_generate_batches
from async_etl.errors import AsyncEtlError
from async_etl.sinks.cratedb import CrateDBSink
from async_etl.sinks.cratedb_sync import BlockingCrateDBSink
from async_etl.sinks.postgres import PostgresSink
from async_etl.sinks.postgres_sync import BlockingPostgresSink
from async_etl.sources.synthetic import Synthetic
from async_etl.testing.crate import CrateStandIn
from async_etl.testing.pgproxy import Faults, PgProxy
from async_etl.typing import EncodedBatch, IdRange, SendResult, Target

ROWS, BATCH = 300, 100


class Twin:
    """One sink behind one async face: the async sink as it is, the blocking one in a thread."""

    def __init__(self, sink: Any, blocking: bool) -> None:
        self.sink, self.blocking = sink, blocking

    async def _call(self, name: str, *args: Any) -> Any:
        if self.blocking:
            return await anyio.to_thread.run_sync(getattr(self.sink, name), *args)
        return await getattr(self.sink, name)(*args)

    async def prepare(self) -> Target:
        return await self._call("prepare", Synthetic(seed=7).schema)  # type: ignore[no-any-return]

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        return await self._call("send", batch, attempt)  # type: ignore[no-any-return]

    async def count(self, ids: IdRange) -> int | None:
        return await self._call("count", ids)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._call("close" if self.blocking else "aclose")


@dataclass
class Trace:
    """What a script saw, step by step, in a form both twins can be compared on."""

    steps: list[tuple[Any, ...]]

    async def step(self, label: str, action: Awaitable[Any]) -> Any:
        try:
            value = await action
        except AsyncEtlError as exc:
            self.steps.append((label, "raised", type(exc).__name__, exc.kind.value))
            return None
        if isinstance(value, SendResult):
            rejected = tuple(r.row_id for r in value.rejected)
            self.steps.append((label, value.delivered, rejected))
        elif isinstance(value, Target):
            self.steps.append((label, "start_id", value.start_id))
        else:
            self.steps.append((label, value))
        return value


def batches_for(target: Target) -> list[EncodedBatch]:
    """ROWS rows from the target's start id, in batches of BATCH, in the target's encoding."""
    ids = IdRange(target.start_id, ROWS)
    return w_generate_batches(Synthetic(seed=7).unit(ids, target.encoding, BATCH))


Script = Callable[[Twin, Trace, Faults, str], Awaitable[None]]


async def pg_twins(pg_dsn: str, script: Script) -> list[list[tuple[Any, ...]]]:
    """Run ``script`` through both PostgreSQL twins, each behind its own fault proxy."""
    traces = []
    for blocking, make in ((False, PostgresSink), (True, BlockingPostgresSink)):
        faults = Faults()
        table = f"twin_{'blocking' if blocking else 'async'}"
        async with PgProxy(pg_dsn, faults) as proxy:
            twin = Twin(make(proxy.url, table=table, concurrency=2), blocking)
            trace = Trace([])
            try:
                await script(twin, trace, faults, table)
            finally:
                await twin.close()
        traces.append(trace.steps)
    return traces


async def killed_copy(twin: Twin, trace: Trace, faults: Faults, table: str) -> None:
    """The session carrying the first COPY dies; the retry asks the ledger and writes once."""
    target = await trace.step("prepare", twin.prepare())
    first, second, _ = batches_for(target)
    faults.arm(r"^COPY", nth=1)
    await trace.step("send 1", twin.send(first, 1))
    await trace.step("send 1 again", twin.send(first, 2))
    await trace.step("send 2", twin.send(second, 1))
    await trace.step("count", twin.count(IdRange(target.start_id, ROWS)))


async def killed_ledger_row(twin: Twin, trace: Trace, faults: Faults, table: str) -> None:
    """The session dies on the ledger row (the COPY rolls back); the retry writes it once."""
    target = await trace.step("prepare", twin.prepare())
    first = batches_for(target)[0]
    faults.arm(r"INSERT INTO \S*async_etl_bench_ledger", nth=1)
    await trace.step("send 1", twin.send(first, 1))
    await trace.step("send 1 again", twin.send(first, 2))
    await trace.step("count", twin.count(IdRange(target.start_id, ROWS)))


async def lost_acknowledgement(twin: Twin, trace: Trace, faults: Faults, table: str) -> None:
    """A batch that landed is sent again as attempt 2: the ledger says so, nothing is doubled."""
    target = await trace.step("prepare", twin.prepare())
    first = batches_for(target)[0]
    await trace.step("send 1", twin.send(first, 1))
    await trace.step("send 1 again", twin.send(first, 2))
    await trace.step("count", twin.count(IdRange(target.start_id, ROWS)))
    await trace.step("prepare again", twin.prepare())  # the next run starts after the ledger


async def refused_data(twin: Twin, trace: Trace, faults: Faults, table: str) -> None:
    """A constraint refuses a row: that whole batch is rejected by id, the others land."""
    target = await trace.step("prepare", twin.prepare())
    conn = await asyncpg.connect(twin.sink._dsn)
    try:
        await conn.execute(f"ALTER TABLE {table} ADD CHECK (id <> {target.start_id + 150})")
    finally:
        await conn.close()
    for n, batch in enumerate(batches_for(target), 1):
        await trace.step(f"send {n}", twin.send(batch, 1))
    await trace.step("count", twin.count(IdRange(target.start_id, ROWS)))


async def refused_connections(twin: Twin, trace: Trace, faults: Faults, table: str) -> None:
    """The server cannot be reached at all: prepare fails transiently, as a network error."""
    faults.refuse(100)
    await trace.step("prepare", twin.prepare())


async def used_after_close(twin: Twin, trace: Trace, faults: Faults, table: str) -> None:
    """A closed sink refuses to send with one LoadError line (neither twin asserts)."""
    target = await trace.step("prepare", twin.prepare())
    await twin.close()
    await trace.step("send", twin.send(batches_for(target)[0], 1))
    await trace.step("prepare", twin.prepare())


def ids(start: int, stop: int) -> tuple[int, ...]:
    return tuple(range(start, stop))


PG_EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "killed_copy": [
        ("prepare", "start_id", 1),
        ("send 1", "raised", "TransientLoadError", "network"),
        ("send 1 again", 100, ()),
        ("send 2", 100, ()),
        ("count", 200),
    ],
    "killed_ledger_row": [
        ("prepare", "start_id", 1),
        ("send 1", "raised", "TransientLoadError", "network"),
        ("send 1 again", 100, ()),
        ("count", 100),
    ],
    "lost_acknowledgement": [
        ("prepare", "start_id", 1),
        ("send 1", 100, ()),
        ("send 1 again", 100, ()),
        ("count", 100),
        ("prepare again", "start_id", 101),
    ],
    "refused_data": [
        ("prepare", "start_id", 1),
        ("send 1", 100, ()),
        ("send 2", 0, ids(101, 201)),
        ("send 3", 100, ()),
        ("count", 200),
    ],
    "refused_connections": [("prepare", "raised", "TransientLoadError", "network")],
    "used_after_close": [
        ("prepare", "start_id", 1),
        ("send", "raised", "LoadError", "database-permanent"),
        ("prepare", "raised", "LoadError", "database-permanent"),
    ],
}
PG_SCRIPTS = {s.__name__: s for s in (killed_copy, killed_ledger_row, lost_acknowledgement,
              refused_data, refused_connections, used_after_close)}  # fmt: skip


@pytest.mark.parametrize("name", list(PG_SCRIPTS))
async def test_postgres_twins_meet_the_same_faults_the_same_way(pg_dsn: str, name: str) -> None:
    """Both PostgreSQL sinks give the same trace for each scripted fault, the expected one."""
    async_trace, blocking_trace = await pg_twins(pg_dsn, PG_SCRIPTS[name])
    assert async_trace == blocking_trace
    assert async_trace == PG_EXPECTED[name]


async def test_postgres_twins_tell_a_permanent_connect_refusal_the_same_way(pg_dsn: str) -> None:
    """A database that does not exist: both twins fail for good (not a retry), in one line."""
    url = pg_dsn.rsplit("/", 1)[0] + "/twins_no_such_database"
    outcomes = []
    for blocking, make in ((False, PostgresSink), (True, BlockingPostgresSink)):
        twin = Twin(make(url, table="t", concurrency=1), blocking)
        trace = Trace([])
        await trace.step("prepare", twin.prepare())
        await twin.close()
        outcomes.append(trace.steps)
    assert outcomes[0] == outcomes[1] == [("prepare", "raised", "LoadError", "database-permanent")]


async def crate_twins(script: Script) -> list[list[tuple[Any, ...]]]:
    """Run ``script`` through both CrateDB twins against one stand-in, a table each."""
    traces = []
    async with CrateStandIn() as crate:
        for blocking, make in ((False, CrateDBSink), (True, BlockingCrateDBSink)):
            table = f"twin_{'blocking' if blocking else 'async'}"
            twin = Twin(make(crate.url, table=table, concurrency=2), blocking)
            twin.sink.standin = crate
            trace = Trace([])
            try:
                await script(twin, trace, Faults(), table)
            finally:
                await twin.close()
            traces.append(trace.steps)
    return traces


async def crate_unavailable(twin: Twin, trace: Trace, faults: Faults, table: str) -> None:
    """Every request answers 503 for a while: transient; then the resend lands each row once."""
    target = await trace.step("prepare", twin.prepare())
    first = batches_for(target)[0]
    twin.sink.standin.fail_rate = 1.0
    await trace.step("send 1", twin.send(first, 1))
    twin.sink.standin.fail_rate = 0.0
    await trace.step("send 1 again", twin.send(first, 2))
    await trace.step("count", twin.count(IdRange(target.start_id, ROWS)))


async def crate_lost_acknowledgement(twin: Twin, trace: Trace, faults: Faults, table: str) -> None:
    """A landed batch sent again as attempt 2: its duplicates are ours, delivered once."""
    target = await trace.step("prepare", twin.prepare())
    first = batches_for(target)[0]
    await trace.step("send 1", twin.send(first, 1))
    await trace.step("send 1 again", twin.send(first, 2))
    await trace.step("count", twin.count(IdRange(target.start_id, ROWS)))
    await trace.step("prepare again", twin.prepare())


async def crate_used_after_close(twin: Twin, trace: Trace, faults: Faults, table: str) -> None:
    """A closed CrateDB sink refuses send and count with one LoadError (none reopens)."""
    target = await trace.step("prepare", twin.prepare())
    await twin.close()
    await trace.step("send", twin.send(batches_for(target)[0], 1))
    await trace.step("count", twin.count(IdRange(target.start_id, ROWS)))


CRATE_EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "crate_unavailable": [
        ("prepare", "start_id", 1),
        ("send 1", "raised", "TransientLoadError", "database-transient"),
        ("send 1 again", 100, ()),
        ("count", 100),
    ],
    "crate_lost_acknowledgement": [
        ("prepare", "start_id", 1),
        ("send 1", 100, ()),
        ("send 1 again", 100, ()),
        ("count", 100),
        ("prepare again", "start_id", 101),
    ],
    "crate_used_after_close": [
        ("prepare", "start_id", 1),
        ("send", "raised", "LoadError", "database-permanent"),
        ("count", "raised", "LoadError", "database-permanent"),
    ],
}
CRATE_SCRIPTS = {s.__name__: s for s in (crate_unavailable, crate_lost_acknowledgement,
                 crate_used_after_close)}  # fmt: skip


@pytest.mark.parametrize("name", list(CRATE_SCRIPTS))
async def test_cratedb_twins_meet_the_same_faults_the_same_way(name: str) -> None:
    """Both CrateDB sinks give the same trace for each scripted fault, the expected one."""
    async_trace, blocking_trace = await crate_twins(CRATE_SCRIPTS[name])
    assert async_trace == blocking_trace
    assert async_trace == CRATE_EXPECTED[name]
