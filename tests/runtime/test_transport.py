"""Batches through shared memory: the same bytes as the pipe, exactly once, no segment left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_etl.config import BenchSettings
from async_etl.core.records import w_generate_batches
from async_etl.core.schema import Schema, column, default_schema
from async_etl.errors import LoadError
from async_etl.runtime.engine import Engine
from async_etl.runtime.threads import ThreadRunner
from async_etl.runtime.transport import ARENA_PREFIX, Arena, SlotBatch, w_generate_into
from async_etl.sources.synthetic import Synthetic
from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.typing import EncodedBatch, Encoding, IdRange, SendResult, Target, WorkUnit
from tests.runtime.scripted import ScriptedSink
from tests.runtime.test_threads import faults_while_inserting, run_mode, stored_ids

SHM = Path("/dev/shm")
ACCOUNTS = Schema(
    (
        column("id", "bigint", "sequence"),
        column("bid", "int", "int", min=1, max=10),
        column("abalance", "int", "int", min=-5000, max=5000),
        column("filler", "text", "constant", width=84),
    )
)


def _segments(pid: int | None = None) -> set[str]:
    """This process's (or ``pid``'s) arenas present in /dev/shm."""
    prefix = f"{ARENA_PREFIX}{pid or os.getpid()}-"
    return {p.name for p in SHM.iterdir() if p.name.startswith(prefix)}


def _unit(schema: Schema, wire: str, ids: IdRange, batch: int) -> WorkUnit:
    stmt = schema.crate_insert("t") if wire == "crate_json" else ""
    return WorkUnit(11, ids, schema, Encoding(wire, stmt), batch)  # type: ignore[arg-type]


@pytest.mark.parametrize("wire", ["pg_binary", "crate_json"])
@pytest.mark.parametrize("schema", [default_schema(), default_schema(300), ACCOUNTS])
def test_slot_batches_are_byte_for_byte_the_pipe_batches(schema: Schema, wire: str) -> None:
    """A unit through a slot gives exactly w_generate_batches' batches (ids, wire, bytes)."""
    unit = _unit(schema, wire, IdRange(1000, 2500), 400)
    arena = Arena.for_units(2, unit)
    assert arena is not None
    try:
        job = arena.take(unit)
        assert job is not None
        results = w_generate_into(job)
        assert all(isinstance(r, SlotBatch) for r in results)  # everything went through memory
        got = arena.collect(job, results)
    finally:
        arena.close()
    assert got == w_generate_batches(unit)
    assert arena.overflows == 0


def test_a_unit_larger_than_its_slot_overflows_through_the_pipe_unchanged() -> None:
    """Batches that do not fit in the slot come back whole; the bytes are still identical."""
    unit = _unit(default_schema(), "crate_json", IdRange(1, 600), 100)
    arena = Arena(1, 40_000)  # room for about one 100-row batch
    try:
        job = arena.take(unit)
        assert job is not None
        results = w_generate_into(job)
        kinds = [type(r) for r in results]
        got = arena.collect(job, results)
    finally:
        arena.close()
    assert SlotBatch in kinds and EncodedBatch in kinds
    assert got == w_generate_batches(unit)
    assert arena.overflows == kinds.count(EncodedBatch)


def test_the_arena_takes_at_most_half_the_free_shared_memory() -> None:
    """Slots shrink to fit half of /dev/shm's free space; with almost none there is no arena."""
    unit = _unit(default_schema(), "crate_json", IdRange(1, 5000), 5000)
    small = Arena.for_units(4, unit, room=8 * 1024 * 1024)
    assert small is not None
    try:
        assert small.slot_bytes == 1024 * 1024  # 8 MiB free / 2 / 4 slots
    finally:
        small.close()
    assert Arena.for_units(4, unit, room=256 * 1024) is None


def test_the_arena_hands_out_each_slot_once_until_it_is_collected() -> None:
    """No slot is given twice at once; a collected slot is handed out again."""
    unit = _unit(ACCOUNTS, "pg_binary", IdRange(1, 10), 10)
    arena = Arena(2, 4096)
    try:
        a, b = arena.take(unit), arena.take(unit)
        assert a is not None and b is not None and a.offset != b.offset
        assert arena.take(unit) is None  # every slot busy: the caller uses the pipe
        arena.collect(a, w_generate_into(a))
        again = arena.take(unit)
        assert again is not None and again.offset == a.offset
    finally:
        arena.close()
    assert not _segments()


class _Recording:
    """A blocking sink keeping a copy of every first-attempt payload, by first id."""

    def __init__(self) -> None:
        self.bodies: dict[int, bytes] = {}

    def prepare(self, schema: Schema) -> Target:
        return Target(Encoding("crate_json", schema.crate_insert("t")))

    def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        self.bodies.setdefault(batch.ids.start, bytes(batch.payload))
        return SendResult(delivered=batch.row_count)

    def count(self, ids: IdRange) -> int | None:
        return None

    def close(self) -> None:
        pass


def _settings(**kw: Any) -> BenchSettings:
    base: dict[str, Any] = dict(records=30_000, batch_size=1000, concurrency=4, generators=2)
    base.update(kw)
    return BenchSettings(**base)


def test_both_runners_send_through_memory_what_inline_generation_makes() -> None:
    """Async and thread runners with 2 generator processes send inline generation's bytes."""
    inline, pooled = ScriptedSink(), ScriptedSink()

    async def both() -> None:
        async with Engine(_settings(generators=0)) as engine:
            await engine.run(Synthetic(seed=3), inline)
        async with Engine(_settings()) as engine:
            assert (await engine.run(Synthetic(seed=3), pooled)).ok

    anyio.run(both)
    threaded = _Recording()
    summary = ThreadRunner(_settings(mode="threads")).run(Synthetic(seed=3), threaded)
    assert summary.ok and summary.generators == 2
    assert len(inline.bodies) == 30
    assert inline.bodies == pooled.bodies == threaded.bodies
    assert not _segments()


async def test_retries_through_memory_deliver_every_row_once() -> None:
    """Transient errors and partial retries on shared-memory batches: every id exactly once."""
    sink = ScriptedSink(transient_first=3, partial_every=2)
    async with Engine(_settings(retry_base=0.001)) as engine:
        summary = await engine.run(Synthetic(), sink)
    assert set(sink.seen) == set(range(1, 30_001)) and max(sink.seen.values()) == 1
    assert summary.ok and summary.retries > 0
    assert not _segments()


@pytest.mark.parametrize("mode", ["threads", "async"])
def test_stand_in_faults_through_memory_store_every_id_once(mode: str) -> None:
    """Drops, 503s and per-item failures with pooled generation: every id stored once."""
    rates = dict(drop_rate=0.1, fail_rate=0.1, busy_rate=0.05, item_fail_rate=0.05)
    settings = _settings(records=6000, batch_size=100, table="t", max_retries=20,
                         retry_base=0.001)  # fmt: skip
    with CrateStandIn(StandInConfig(seed=5)) as crate:
        with faults_while_inserting(crate, 6000, **rates):
            summary = run_mode(mode, settings, crate.url)
        ids = stored_ids(crate.url)
    assert summary.ok and summary.generators == 2, summary.problems()
    assert sorted(ids) == list(range(1, 6001)) and summary.reconciled == 6000
    assert summary.retries > 0
    assert not _segments()


async def test_no_segment_is_left_after_a_fatal_error() -> None:
    """A run that fails for good still unlinks its shared memory."""
    sink = ScriptedSink(fatal_after=3)
    async with Engine(_settings()) as engine:
        with pytest.raises(LoadError):
            await engine.run(Synthetic(), sink)
    assert not _segments()


async def test_no_segment_is_left_after_an_abort() -> None:
    """An aborted run (deliveries cancelled mid-way) unlinks its shared memory."""
    sink = ScriptedSink(delay=0.05)

    async def abort_soon(engine: Engine) -> None:
        while sink.sends < 5:
            await anyio.sleep(0.01)
        assert _segments()  # the run's arena exists while it runs
        engine.abort()

    async with (
        Engine(_settings(records=None, duration=30)) as engine,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(abort_soon, engine)
        await engine.run(Synthetic(), sink)
    assert not _segments()


def test_a_killed_parent_leaves_no_segment_and_no_generator_behind(tmp_path: Path) -> None:
    """SIGKILL of a bench process: its generators exit and its segment is unlinked."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "async_etl", "bench", "--sink", "null://",
           "--duration", "60", "-j", "2", "--log-format", "json"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _segments(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, "bench never started"
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert workers
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 20
    while _segments(proc.pid) or any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, (_segments(proc.pid), workers)
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_slot_batch_pickles_to_an_equal_one() -> None:
    """SlotBatch's compact pickle gives back the same ids, wire, offset and length."""
    import pickle

    batch = SlotBatch(IdRange(2**40, 100), "crate_json", 12_345, 17_000)
    assert pickle.loads(pickle.dumps([batch, batch])) == [batch, batch]
