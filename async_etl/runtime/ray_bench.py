"""``bench --ray``: the same engine in N Ray actors, fed id-range units by one coordinator.

Theory of operation
-------------------
The driver (this process) runs ``runtime.coordinator``'s loop (prepare once, hand out units
from a ``UnitBook``, merge ``RunStats``, re-send a dead worker's units, one reconcile) with Ray
actors behind its executor seam.  Each actor is a ``UnitEngine``: its own sink connections and
its own generator processes (``--generators`` per actor, at most its node's CPU count; 0 =
inline).  ``RayWorkers`` only translates: a call on an actor that is gone (``RayActorError``,
``WorkerCrashedError``) becomes ``WorkerLostError``, and an actor's own exception is unwrapped from
Ray's ``RayTaskError``.  The local twin is ``runtime.local_workers`` (``--processes``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio

from async_etl.config import BenchSettings
from async_etl.core.stats import RunStats
from async_etl.core.summary import Summary
from async_etl.core.units import Assignment
from async_etl.errors import ConfigError
from async_etl.log import get_logger
from async_etl.runtime.coordinator import WorkerLostError, coordinate
from async_etl.runtime.engine import SnapshotHandler
from async_etl.runtime.ray_cluster import ACTOR_OPTIONS, actor_died, connect
from async_etl.runtime.unit_engine import Resending, UnitEngine, units_per_worker
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import AsyncSink, Target

log = get_logger(__name__)
units_per_actor = units_per_worker


class BenchActor(UnitEngine):
    """One Ray actor: a ``UnitEngine`` (Ray names its process ``ray::BenchActor``)."""


class RayWorkers:
    """``UnitWorkers`` over ``settings.ray_actors`` Ray actors."""

    kind = "actor"
    uvloop = False

    def __init__(self, ray: Any, settings: BenchSettings, source: Synthetic, target: Target):
        self._ray = ray
        self.names = tuple(f"actor-{i}" for i in range(settings.ray_actors))
        remote = ray.remote(**ACTOR_OPTIONS)(BenchActor)
        self._actors = {name: remote.remote(settings, source, target) for name in self.names}

    async def start(self) -> dict[str, int]:
        """Start every actor (sink connections, generator processes); their pids by name."""
        pids: dict[str, int] = {}
        try:
            for name, actor in self._actors.items():
                pids[name] = int(await actor.start.remote())
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"--ray: the actors could not start: {first}") from exc
        return pids

    async def run_unit(self, name: str, unit: Assignment) -> RunStats:
        """Run ``unit`` on actor ``name``."""
        try:
            stats: RunStats = await self._actors[name].run_unit.remote(unit)
        except Exception as exc:
            if actor_died(exc):
                raise WorkerLostError(f"{name}: {str(exc).splitlines()[0]}") from exc
            cause = getattr(exc, "cause", None)  # the actor's own exception in RayTaskError
            raise (cause if isinstance(cause, BaseException) else exc) from None
        return stats

    def pids(self) -> list[int]:
        """Actors may be on other nodes: none is counted here."""
        return []

    async def close(self, dead: frozenset[str], *, hard: bool) -> None:
        """Close each live actor's sink (unless ``hard``), then kill every actor."""
        for name, actor in self._actors.items():
            if name in dead or hard:
                continue
            try:
                await actor.close.remote()
            except Exception as exc:  # closing is best effort: the run's figures are final
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("ray_actor_close_failed", actor=name, error=first)
        for actor in self._actors.values():
            with contextlib.suppress(Exception):  # already gone
                self._ray.kill(actor)


async def run_on_ray(
    settings: BenchSettings,
    source: Synthetic,
    sink: AsyncSink,
    *,
    on_snapshot: SnapshotHandler | None = None,
    ray_init: dict[str, Any] | None = None,
    stop: anyio.Event | None = None,
    abort: anyio.Event | None = None,
) -> Summary:
    """Run a bench over ``settings.ray_actors`` Ray actors into ``sink``'s target.

    ``sink`` is the driver's own (prepare, reconcile); actors open theirs from
    ``settings.sink``.  Setting ``stop`` issues no more units; the ones out are finished;
    ``abort`` cancels those too.  Raises ``ConfigError`` (exit 2) for Ray missing or
    unreachable, or a sink unusable at start; ``LoadError`` when every actor died or one
    failed for good.
    """
    assert settings.sink is not None, "the actors need a sink URL"
    ray = connect(settings.ray or "local", **(ray_init or {}))
    return await coordinate(
        settings,
        source,
        sink,
        lambda target: RayWorkers(ray, settings, source, target),
        label="ray",
        extra={"address": settings.ray or "local"},
        on_snapshot=on_snapshot,
        stop=stop,
        abort=abort,
    )


__all__ = ["BenchActor", "RayWorkers", "Resending", "run_on_ray", "units_per_actor"]
