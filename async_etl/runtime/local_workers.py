"""``bench --processes N``: shared-nothing worker processes on this machine.

Theory of operation
-------------------
The local twin of ``--ray``: the same coordinator (``runtime.coordinator``) hands id-range
units to N spawned worker processes instead of Ray actors.  Each worker is started once for the
run with its own event loop (uvloop unless ``--no-uvloop``), its own sink connections and its
own ``UnitEngine`` (generation in the worker: P = 0 inside, on a helper thread when the sink
has a socket, so that a COPY in flight keeps being fed while the next unit generates; on the
loop itself for the null sink), and is then fed units over a pipe::

    parent (coordinator)                         worker process (w_serve, spawned)
      Process(w_serve) ───────────────────────>  own loop; UnitEngine.start(): sink prepared
      <──("ready", pid)──────────────────────────
      Assignment (unit, ids, resend) ──────────>  a task per unit: generate inline, deliver
                                                  C batches at a time over its connections
      <──("done", unit, RunStats) / ("failed", unit, error)
      None (no more units) ────────────────────>  wait for the units out, close the sink
      <──("closed",)───────────────────────────── exit

Only these small messages cross the pipe (an ``Assignment``, a unit's ``RunStats``: about a
kilobyte); no encoded byte ever reaches the parent, whose work is per unit, not per row.

* **Reading.** One reader thread per worker blocks on its pipe and hands each message to the
  loop (``call_soon_threadsafe``); a unit's caller waits on its own event.  The thread ends
  when the pipe reaches end-of-file: the worker exited, closed or was killed.
* **Death.** End-of-file before ``closed`` means the worker is gone (SIGKILL, OOM): the reader
  thread waits up to ``EXIT_WAIT_S`` for its exit code (off the loop: a worker whose pipe closed
  before its process ended would otherwise stall every task); a worker still running then
  (it closed its pipe and stayed alive: it can never answer again) is killed there and
  reported as such, so neither its units nor the close wait ``CLOSE_TIMEOUT_S`` for it; then
  every unit it held raises ``WorkerLostError``, and the coordinator re-sends them on the
  survivors (every attempt checks whether the batch landed), or fails the run with one line
  when none is left.
  A unit's own failure comes back as the worker's exception (pickled; when it cannot be, a
  ``LoadError`` naming it), and the coordinator fails the run with it.
* **Signals.** Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group; the
  parent decides: the first signal stops issuing units, the second aborts), and exit on their
  own when the parent process is gone (``w_init``'s watchdog), so none outlives a killed run.
* **Closing.** A normal end sends ``None`` to each live worker and waits for ``closed`` and its
  exit; an error, an abort or a worker that does not answer within ``CLOSE_TIMEOUT_S`` is
  killed.  Every process is joined (no zombie), every pipe and reader thread ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import pickle
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

import anyio

from async_etl.config import BenchSettings
from async_etl.core.stats import RunStats
from async_etl.core.summary import Summary
from async_etl.core.units import Assignment
from async_etl.errors import ConfigError, LoadError
from async_etl.log import configure_logging
from async_etl.runtime import loop as loops
from async_etl.runtime.coordinator import WorkerLostError, coordinate
from async_etl.runtime.engine import SnapshotHandler
from async_etl.runtime.executor import ThreadExecutor, w_init
from async_etl.runtime.unit_engine import UnitEngine
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import AsyncSink, Target

START_TIMEOUT_S: Final = 120.0
"""A worker that has not opened its sink by then fails the start (one line, exit 2)."""

CLOSE_TIMEOUT_S: Final = 30.0
"""A worker that has not closed by then after ``None`` is killed."""

EXIT_WAIT_S: Final = 0.5
"""How long the reader thread waits for a lost worker's exit code once its pipe has closed;
a worker still running after that is killed."""

LINGERED: Final = f"did not exit within {EXIT_WAIT_S:g} s of closing its pipe (killed)"
"""How a worker that closed its pipe without ``closed`` and did not exit is reported."""


def w_serve(conn: Connection, settings: BenchSettings, source: Synthetic, target: Target) -> None:
    """A worker process's main (top-level, spawned): serve units until told to close."""
    w_init(os.getppid())
    configure_logging("json" if settings.log_format == "json" else "console")
    with contextlib.suppress(EOFError, OSError):  # the parent is gone: nothing to tell
        loops.run(lambda: _serve(conn, settings, source, target), use_uvloop=settings.uvloop)


async def _serve(
    conn: Connection, settings: BenchSettings, source: Synthetic, target: Target
) -> None:
    # a sink with a socket generates on a helper thread: the loop keeps the COPY / request in
    # flight fed meanwhile; the null sink has none, and generates on the loop (no thread hop)
    helper = None if (settings.sink or "").startswith("null:") else ThreadExecutor()
    engine = UnitEngine(settings, source, target, generate_on=helper)
    try:
        pid = await engine.start()
    except Exception as exc:
        conn.send(("failed", None, portable(exc)))
        return
    conn.send(("ready", pid))
    one = anyio.CapacityLimiter(1)
    try:
        async with anyio.create_task_group() as tg:
            while (unit := await anyio.to_thread.run_sync(conn.recv, limiter=one)) is not None:
                tg.start_soon(_unit, engine, conn, unit)
    finally:
        with anyio.CancelScope(shield=True):
            await engine.close()
    conn.send(("closed",))


async def _unit(engine: UnitEngine, conn: Connection, unit: Assignment) -> None:
    try:
        stats = await engine.run_unit(unit)
    except Exception as exc:
        conn.send(("failed", unit.unit, portable(exc)))
        return
    conn.send(("done", unit.unit, stats))


def portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a ``LoadError`` naming it (first line)."""
    try:
        copy = pickle.loads(pickle.dumps(exc))
    except Exception:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return LoadError(f"{type(exc).__name__}: {first}".rstrip(": "))
    return copy if isinstance(copy, BaseException) else LoadError(str(exc))


@dataclasses.dataclass(slots=True)
class _Waiter:
    """One unit's caller, waiting for its answer."""

    event: anyio.Event
    stats: RunStats | None = None
    error: BaseException | None = None


def _signal_name(signum: int) -> str:
    """A signal's name: ``SIGKILL`` for 9, ``signal 35`` for a number without a member.

    ``signal.Signals`` has no member for the real-time signals between ``SIGRTMIN`` and
    ``SIGRTMAX``; raising there would end the reader thread before it reports the worker gone.
    """
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _Channel:
    """The parent's end of one worker: its process, pipe, reader thread and waiting units."""

    def __init__(self, name: str, process: BaseProcess, conn: Connection) -> None:
        self.name = name
        self.process = process
        self.conn = conn
        self.ready = anyio.Event()
        self.closed = anyio.Event()
        self.start_error: BaseException | None = None
        self.gone: str | None = None
        self.pid = 0
        self._waiting: dict[int, _Waiter] = {}
        self._loop = asyncio.get_running_loop()
        self._reaping = threading.Lock()  # one join at a time: two waitpid calls race for a code
        self._reader = threading.Thread(target=self._read, name=f"aetl-{name}-pipe", daemon=True)
        self._reader.start()

    async def call(self, unit: Assignment) -> RunStats:
        """Send ``unit`` and wait for its counters; ``WorkerLostError`` when the worker is gone."""
        if self.gone is not None:
            raise WorkerLostError(f"{self.name} {self.gone}")
        waiter = self._waiting[unit.unit] = _Waiter(anyio.Event())
        try:
            with contextlib.suppress(OSError):  # the pipe broke: the reader reports the exit
                self.conn.send(unit)
            await waiter.event.wait()
        finally:
            self._waiting.pop(unit.unit, None)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.stats is not None
        return waiter.stats

    def reap(self, timeout: float | None) -> int | None:
        """Join the process for up to ``timeout`` s (blocking: never on the loop); its exit code."""
        with self._reaping:
            self.process.join(timeout)
            return self.process.exitcode

    def _read(self) -> None:
        """The reader thread: every message to the loop, then end-of-file (the worker exited).

        A message that cannot be unpickled ends the reading: the worker is killed (it could
        never be heard again) and reported gone, as a worker that exited is.
        """
        closed = False
        try:
            while True:
                msg = self.conn.recv()
                closed = closed or msg[0] == "closed"
                self._post(self._on_message, msg)
        except (EOFError, OSError):
            pass
        except Exception as exc:  # an unreadable message: the pipe cannot be read past it
            self.kill()
            self.reap(EXIT_WAIT_S * 10)
            why = f"sent a message the parent could not read ({type(exc).__name__}: {exc}; killed)"
            self._post(self._on_exit, why)
            return
        self._post(self._on_exit, None if closed else self._gone_why())

    def _gone_why(self) -> str:
        """End-of-file before ``closed``: why the worker is gone (killed here if still running).

        Its exit code is due now; a process still running after ``EXIT_WAIT_S`` closed its pipe
        and lingers, and can never answer: it is killed now rather than waited for.
        """
        code = self.reap(EXIT_WAIT_S)
        if code is None:
            self.kill()
            self.reap(EXIT_WAIT_S * 10)
            return LINGERED
        if code < 0:
            return f"was killed ({_signal_name(-code)})"
        return f"exited (exit code {code})"

    def _post(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody waits
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_message(self, msg: tuple[Any, ...]) -> None:
        what = msg[0]
        if what == "ready":
            self.pid = int(msg[1])
            self.ready.set()
        elif what == "closed":
            self.closed.set()
        elif msg[1] is None:  # ("failed", None, error): the start failed
            self.start_error = msg[2]
            self.ready.set()
        elif (waiter := self._waiting.get(msg[1])) is not None:
            if what == "done":
                waiter.stats = msg[2]
            else:
                waiter.error = msg[2]
            waiter.event.set()

    def _on_exit(self, why: str | None) -> None:
        if self.closed.is_set() or why is None:
            return
        self.gone = why
        for waiter in self._waiting.values():
            waiter.error = WorkerLostError(f"{self.name} {self.gone}")
            waiter.event.set()
        self.ready.set()
        self.closed.set()

    def kill(self) -> None:
        """Kill the process (idempotent)."""
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()


class LocalWorkers:
    """``UnitWorkers`` over ``settings.processes`` spawned worker processes on this machine."""

    kind = "worker"

    def __init__(self, settings: BenchSettings, source: Synthetic, target: Target) -> None:
        self._settings = settings.replace(generators=0)  # generation inline in each worker
        self._source = source
        self._target = target
        self.names = tuple(f"worker-{i}" for i in range(settings.processes))
        self.uvloop = settings.uvloop and loops.uvloop_available()
        self._channels: dict[str, _Channel] = {}

    async def start(self) -> dict[str, int]:
        """Spawn every worker and wait until each has prepared its sink; pids by name.

        Raises ``ConfigError`` (one line) when one could not start.
        """
        ctx = multiprocessing.get_context("spawn")
        for name in self.names:
            parent_end, child_end = ctx.Pipe(duplex=True)
            process = ctx.Process(
                target=w_serve,
                args=(child_end, self._settings, self._source, self._target),
                name=f"aetl-{name}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self._channels[name] = _Channel(name, process, parent_end)
        with anyio.move_on_after(START_TIMEOUT_S):
            for channel in self._channels.values():
                await channel.ready.wait()
        for channel in self._channels.values():
            why = _start_failure(channel)
            if why is not None:
                raise ConfigError(f"--processes: {channel.name} could not start: {why}")
        return {name: c.pid for name, c in self._channels.items()}

    async def run_unit(self, name: str, unit: Assignment) -> RunStats:
        """Run ``unit`` on worker ``name``."""
        return await self._channels[name].call(unit)

    def pids(self) -> list[int]:
        """The worker processes' pids."""
        return [c.pid for c in self._channels.values() if c.pid]

    async def close(self, dead: frozenset[str], *, hard: bool) -> None:
        """Close every worker (kill them when ``hard``), join them, end their pipes."""
        live = [c for c in self._channels.values() if c.gone is None]
        if hard:
            for channel in live:
                channel.kill()
        else:
            for channel in live:
                with contextlib.suppress(OSError):
                    channel.conn.send(None)
            with anyio.move_on_after(CLOSE_TIMEOUT_S):
                for channel in live:
                    await channel.closed.wait()
            for channel in live:
                if not channel.closed.is_set():
                    channel.kill()
        await anyio.to_thread.run_sync(self._join, limiter=anyio.CapacityLimiter(1))

    def _join(self) -> None:
        for channel in self._channels.values():
            if channel.reap(CLOSE_TIMEOUT_S) is None:
                channel.kill()
                channel.reap(None)
            channel.conn.close()


def _start_failure(channel: _Channel) -> str | None:
    """Why ``channel``'s worker did not start, or None when it is ready."""
    if channel.start_error is not None:
        err = channel.start_error
        return str(getattr(err, "message", None) or err).splitlines()[0]
    if channel.gone is not None:
        return channel.gone
    return None if channel.pid else f"no answer within {START_TIMEOUT_S:.0f} s"


async def run_on_processes(
    settings: BenchSettings,
    source: Synthetic,
    sink: AsyncSink,
    *,
    on_snapshot: SnapshotHandler | None = None,
    stop: anyio.Event | None = None,
    abort: anyio.Event | None = None,
) -> Summary:
    """Run a bench over ``settings.processes`` local worker processes into ``sink``'s target.

    ``sink`` is this process's own (prepare, reconcile); each worker opens its own from
    ``settings.sink``.  ``stop`` issues no more units (the ones out are finished); ``abort``
    cancels those too.  Raises ``ConfigError`` (exit 2) for a sink unusable at start or a
    worker that cannot start; ``LoadError`` when every worker died or a unit failed for good.
    """
    assert settings.sink is not None, "the workers need a sink URL"
    return await coordinate(
        settings.replace(generators=0),
        source,
        sink,
        lambda target: LocalWorkers(settings, source, target),
        label="processes",
        extra={},
        on_snapshot=on_snapshot,
        stop=stop,
        abort=abort,
    )


__all__ = ["LocalWorkers", "portable", "run_on_processes", "w_serve"]
