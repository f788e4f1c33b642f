"""``run --ray``: a job's chunks run in Ray actors; planning, checkpoints and state stay here.

Theory of operation
-------------------
The runner hands each chunk attempt to a ``ChunkExecutor`` instead of calling the target
driver itself.  ``RayChunks`` is that executor for Ray:

* **Actors** are started on the first chunk (after preflight fixed the run's context): each
  builds its own source adapter (the run's cursor window) and target driver from the picklable
  ``JobSpec``, and runs ``Target.run_chunk`` exactly as a local run would: stage, merge and
  (when the state store is the target's database) checkpoint in one transaction.
* **Budget.** The driver holds the connection tokens of a chunk (one for the source database,
  one for the target's) while an actor runs it, so the job's connection budget holds summed
  over every actor; the actors' own budgets do not limit.  Chunks in flight stay at most the
  job's ``max_workers`` (the runner's limiter).
* **Placement** is least-busy first among the live actors.
* **Death.** A chunk whose actor died is a ``TransientError``: the runner's retry policy
  re-runs it (its transaction died with the actor's connection) on another actor, and the
  dead one gets no more chunks.  Finished chunks are never re-run: their results came back.
  When no actor is left the chunk fails for good (``LoadError``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Protocol

import anyio

from async_etl.core.chunks import Chunk
from async_etl.core.incremental import CursorWindow
from async_etl.errors import AsyncEtlError, LoadError, TransientError
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ChunkResult, ConnectionMeter, JobContext
from async_etl.jobs.endpoints import make_source, make_target
from async_etl.jobs.spec import JobSpec
from async_etl.log import get_logger
from async_etl.sources.port import Source

log = get_logger(__name__)
LOCAL_FIELDS = ("hold", "stop")  # a JobContext's process-local parts, rebuilt in the actor
UNBOUNDED = 1_000_000  # the actors' own budget: the driver's tokens are the limit


class ChunkExecutor(Protocol):
    """Where a job's chunk attempts run (default: in this process, by the target driver)."""

    async def run_chunk(self, ctx: JobContext, chunk: Chunk, source: Source) -> ChunkResult:
        """Run one attempt of ``chunk``; raises the driver's (translated) errors."""
        ...

    async def aclose(self) -> None:
        """Release what the executor started."""
        ...


class ChunkActor:
    """One remote job worker: its own source adapter and target driver for the run."""

    def __init__(self, spec: JobSpec, window: CursorWindow | None) -> None:
        self._adapt(spec, window)

    def _adapt(self, spec: JobSpec, window: CursorWindow | None) -> None:
        self._run = (spec, window)
        self._source = make_source(spec, window)
        self._target = make_target(spec)

    async def run_chunk(self, fields: dict[str, Any], chunk: Chunk) -> ChunkResult:
        """Run ``chunk`` with the run context ``fields`` (all but hold and stop).

        An actor outlives a run: a later run of the executor may read another cursor window or
        load another table (a first run that built its absent target loaded ``<table>_etl_new``),
        so the adapters follow the run's own spec and window.
        """
        if (fields["spec"], fields["window"]) != self._run:
            self._adapt(fields["spec"], fields["window"])
        hold = BudgetHolder(LimiterBudget(UNBOUNDED), ConnectionMeter())
        ctx = JobContext(**fields, hold=hold, stop=anyio.Event())
        return await self._target.run_chunk(ctx, chunk, self._source)

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()


class RayChunks:
    """A ``ChunkExecutor`` over ``actors`` Ray actors at ``address`` (see module doc).

    ``reruns`` counts the chunk attempts lost with a dead actor (each re-run elsewhere).
    Raises ``ConfigError`` on the first chunk when Ray is missing or unreachable.
    """

    def __init__(self, address: str = "local", actors: int = 2, **ray_init: Any) -> None:
        if actors < 1:
            raise ValueError(f"actors must be >= 1, got {actors}")
        self.address, self.actors = address, actors
        self._init = ray_init
        self._ray: Any = None
        self._live: dict[str, Any] = {}
        self._busy: dict[str, int] = {}
        self._lock = anyio.Lock()
        self.reruns = 0
        self.pids: dict[str, int] = {}

    async def _ensure(self, ctx: JobContext) -> None:
        async with self._lock:
            if self._ray is not None:
                return
            from async_etl.runtime.ray_cluster import ACTOR_OPTIONS, connect

            ray = connect(self.address, **self._init)
            remote = ray.remote(**ACTOR_OPTIONS)(ChunkActor)
            for i in range(self.actors):
                name = f"actor-{i}"
                self._live[name] = remote.remote(ctx.spec, ctx.window)
                self._busy[name] = 0
            for name, actor in self._live.items():
                self.pids[name] = int(await actor.pid.remote())
            self._ray = ray

    async def run_chunk(self, ctx: JobContext, chunk: Chunk, source: Source) -> ChunkResult:
        """Run ``chunk`` on the least busy live actor, holding its connection tokens here."""
        await self._ensure(ctx)
        if not self._live:
            raise LoadError(f"chunk {chunk.index}: every Ray actor died")
        name = min(self._live, key=lambda n: self._busy[n])
        actor = self._live[name]
        fields = {
            f.name: getattr(ctx, f.name)
            for f in dataclasses.fields(ctx)
            if f.name not in LOCAL_FIELDS
        }
        self._busy[name] += 1
        try:
            async with ctx.hold(ctx.spec.source.url), ctx.hold(ctx.spec.target.url):
                return await actor.run_chunk.remote(fields, chunk)  # type: ignore[no-any-return]
        except Exception as exc:
            from async_etl.runtime.ray_cluster import actor_died

            cause = getattr(exc, "cause", None)  # Ray's RayTaskError wraps the actor's error
            if isinstance(exc, AsyncEtlError) and cause is None:
                raise
            if actor_died(exc):
                self._live.pop(name, None)
                self.reruns += 1
                log.warning("ray_actor_lost", actor=name, chunk=chunk.index)
                raise TransientError(f"chunk {chunk.index}: its Ray actor {name} died") from exc
            if isinstance(cause, AsyncEtlError):
                raise cause from exc
            raise LoadError(f"chunk {chunk.index}: {str(exc).splitlines()[0]}") from exc
        finally:
            self._busy[name] -= 1

    async def aclose(self) -> None:
        """Stop the actors (the Ray session itself is left to its owner)."""
        if self._ray is None:
            return
        for actor in self._live.values():
            self._ray.kill(actor)
        self._live.clear()


__all__ = ["ChunkActor", "ChunkExecutor", "RayChunks"]
