"""Generated batches come back from the generator processes through shared memory, not a pipe.

Theory of operation
-------------------
Profiled (py-spy, null sink, P = 2): a quarter of the parent's samples were the process pool's
result thread reading pickled batches out of the pipe (``Connection._recv``): every encoded byte
was pickled by the worker, copied into a 64 KiB pipe and out again in ping-pong with the
parent, and unpickled.  Here the bytes go through one ``multiprocessing.shared_memory``
segment instead, and only a few small descriptors cross the pipe::

    parent: Arena (one segment, K slots of slot_bytes)      worker (spawned, pool process)
      take a free slot ──SlotJob(unit, arena, offset, size)──> attach the segment (once)
                                                                encode each batch of the unit
                                                                straight into the slot
      <──[SlotBatch(ids, wire, start, length) ...]───────────── (small: pickled as before)
      copy each payload out of the slot (one memcpy), give the slot back

* **One slot per unit in flight.**  K = the generation window (``core.plan``), which already
  bounds how many units generate at once, so a free slot is there for every unit; if the
  window was raised while running, or a unit encodes to more than its slot holds (the size is
  ``payload_bound``, an upper bound from the schema, capped at ``SLOT_CAP`` and at half the
  free space of ``/dev/shm``), that unit or its last batches come back through the pipe as
  before: slower, never wrong.  No room at all (a tiny container ``/dev/shm``): no arena.
* **A slot is given back only after its result arrived.**  A unit whose call failed or was
  cancelled keeps its slot (the worker may still be writing into it) until the arena closes.
* **The parent copies the payload out** into ``bytes`` right away: a sink may keep a payload
  as long as it likes (retries, bodies of re-sends, test fakes), and the slot is free for the
  next unit at once.  One memcpy instead of pickle + two kernel copies + unpickle.
* **Lifetime.**  The runner creates an arena per run and closes it in ``finally``: ``close``
  unmaps and unlinks the segment (no ``/dev/shm`` entry outlives a run, normal end, error or
  abort).  Workers keep only the newest arena mapped.  If the parent is killed, its workers
  notice their parent is gone (``w_init``'s watchdog) and exit, and the multiprocessing
  resource tracker then unlinks the segment it was told about.
* **A dead worker** (SIGKILL, OOM) breaks the pool: the call raises ``BrokenProcessPool``,
  which is translated here into one ``LoadError`` line; nothing of the lost unit was sent, so
  no row is lost or duplicated, and the run fails loudly.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Final

from async_etl.core.records import encode_batches, payload_bound, w_generate_batches
from async_etl.errors import LoadError
from async_etl.runtime.executor import InlineExecutor, ProcessExecutor
from async_etl.typing import EncodedBatch, IdRange, WireFormat, WorkUnit

SLOT_CAP: Final = 64 * 1024 * 1024
"""At most this many bytes per slot; larger units send their overflow through the pipe."""

MIN_SLOT: Final = 64 * 1024
"""Below this many bytes per slot shared memory is not worth it: the run uses the pipe."""

SHM_DIR: Final = "/dev/shm"

ARENA_PREFIX: Final = "aetl-gen-"
"""Shared memory segment names start with this, then the parent's pid."""

WORKER_DIED: Final = (
    "a generator process died (killed or out of memory): the run stops; "
    "every batch it reported delivered is in the sink, nothing was sent twice"
)


@dataclass(frozen=True, slots=True)
class SlotJob:
    """A unit to generate into ``size`` bytes at ``offset`` of the segment ``arena``."""

    unit: WorkUnit
    arena: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class SlotBatch:
    """One encoded batch lying at ``start`` (``length`` bytes) in the arena."""

    ids: IdRange
    wire: WireFormat
    start: int
    length: int

    def __reduce__(self) -> tuple[object, tuple[int, int, WireFormat, int, int]]:
        """Pickle as five plain values (the dataclass' default state took ~7x as long)."""
        return _slot_batch, (self.ids.start, self.ids.count, self.wire, self.start, self.length)


def _slot_batch(start_id: int, count: int, wire: WireFormat, start: int, length: int) -> SlotBatch:
    return SlotBatch(IdRange(start_id, count), wire, start, length)


_mapped: dict[str, shared_memory.SharedMemory] = {}


def _attach(name: str) -> shared_memory.SharedMemory:
    """The segment ``name``, mapped once per worker; older arenas are unmapped."""
    shm = _mapped.get(name)
    if shm is None:
        for old in list(_mapped):
            _mapped.pop(old).close()
        shm = _mapped[name] = shared_memory.SharedMemory(name=name)
    return shm


def w_generate_into(job: SlotJob) -> list[SlotBatch | EncodedBatch]:
    """Encode each batch of ``job.unit`` into its slot (top-level, picklable pool function).

    A batch that no longer fits comes back whole, as an ``EncodedBatch``.  The bytes are
    exactly ``w_generate_batches(job.unit)``'s.
    """
    buf = _attach(job.arena).buf
    assert buf is not None
    pos, end = job.offset, job.offset + job.size
    out: list[SlotBatch | EncodedBatch] = []
    wire = job.unit.encoding.wire
    for ids, payload in encode_batches(job.unit):
        n = len(payload)
        if pos + n > end:
            data = payload if isinstance(payload, bytes) else payload.tobytes()
            out.append(EncodedBatch(ids, data, wire))
            continue
        buf[pos : pos + n] = payload if isinstance(payload, bytes) else payload.data
        out.append(SlotBatch(ids, wire, pos, n))
        pos += n
    return out


def shm_room() -> int:
    """Bytes free in the shared memory file system (``/dev/shm``); 0 when there is none."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


class Arena:
    """``slots`` slots of ``slot_bytes`` in one shared memory segment (parent side)."""

    def __init__(self, slots: int, slot_bytes: int) -> None:
        if slots < 1 or slot_bytes < 1:
            raise ValueError(f"need slots >= 1 and slot_bytes >= 1, got {slots}, {slot_bytes}")
        self.slot_bytes = slot_bytes
        name = f"{ARENA_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._shm = shared_memory.SharedMemory(name=name, create=True, size=slots * slot_bytes)
        self._free = list(range(slots - 1, -1, -1))
        self._lock = threading.Lock()  # the thread runner takes and gives from two threads
        self.overflows = 0  # batches that came back through the pipe

    @classmethod
    def for_units(cls, slots: int, unit: WorkUnit, room: int | None = None) -> Arena | None:
        """An arena sized for units like ``unit`` (the largest unit of the run), or None.

        ``room`` is the free space of the shared memory file system (measured when None): the
        arena takes at most half of it, since writing past a full tmpfs kills the writer
        (SIGBUS).  None when not even ``MIN_SLOT`` bytes per slot fit (a small container
        ``/dev/shm``): the run then uses the pipe, as before.
        """
        room = shm_room() if room is None else room
        size = min(SLOT_CAP, payload_bound(unit), room // (2 * max(1, slots)))
        return cls(slots, max(MIN_SLOT, size)) if size >= MIN_SLOT else None

    @property
    def name(self) -> str:
        """The segment's name (under ``/dev/shm`` on Linux)."""
        return self._shm.name

    def take(self, unit: WorkUnit) -> SlotJob | None:
        """A job generating ``unit`` into a free slot, or None when every slot is in use."""
        with self._lock:
            if not self._free:
                return None
            slot = self._free.pop()
        return SlotJob(unit, self.name, slot * self.slot_bytes, self.slot_bytes)

    def collect(self, job: SlotJob, results: list[SlotBatch | EncodedBatch]) -> list[EncodedBatch]:
        """A finished job's batches, payloads copied out of the slot; gives the slot back."""
        buf = self._shm.buf
        assert buf is not None
        out = [
            EncodedBatch(r.ids, bytes(buf[r.start : r.start + r.length]), r.wire)
            if isinstance(r, SlotBatch)
            else r
            for r in results
        ]
        self.overflows += sum(1 for r in results if isinstance(r, EncodedBatch))
        with self._lock:
            self._free.append(job.offset // self.slot_bytes)
        return out

    def close(self) -> None:
        """Unmap and unlink the segment (idempotent)."""
        with contextlib.suppress(BufferError):  # a view still exported: unlink all the same
            self._shm.close()
        with contextlib.suppress(FileNotFoundError):
            self._shm.unlink()


async def generate(
    executor: ProcessExecutor | InlineExecutor, arena: Arena | None, unit: WorkUnit
) -> list[EncodedBatch]:
    """The batches of ``unit``, through a slot of ``arena`` when one is free, else the pipe.

    Raises ``LoadError`` when a generator process died.
    """
    job = arena.take(unit) if arena is not None else None
    try:
        if job is None or arena is None:
            return await executor.run(w_generate_batches, unit)
        results = await executor.run(w_generate_into, job)
    except BrokenProcessPool as exc:
        raise LoadError(WORKER_DIED) from exc
    return arena.collect(job, results)


class Pending:
    """A unit submitted to a process pool by the thread runner; ``result()`` waits for it."""

    def __init__(self, pool: ProcessPoolExecutor | None, arena: Arena | None, unit: WorkUnit):
        self._arena = arena
        self._job = arena.take(unit) if arena is not None else None
        self._done: Future[list[EncodedBatch]] = Future()
        self._slots: Future[list[SlotBatch | EncodedBatch]] | None = None
        if pool is None:  # inline: generate now
            self._done.set_result(w_generate_batches(unit))
            return
        try:
            if self._job is None:
                self._done = pool.submit(w_generate_batches, unit)
            else:
                self._slots = pool.submit(w_generate_into, self._job)
        except BrokenProcessPool as exc:  # a worker died before: fail when the result is due
            self._done.set_exception(exc)

    def result(self) -> list[EncodedBatch]:
        """The unit's batches (blocks).  Raises ``LoadError`` when a generator process died."""
        try:
            if self._slots is not None and self._job is not None and self._arena is not None:
                return self._arena.collect(self._job, self._slots.result())
            return self._done.result()
        except BrokenProcessPool as exc:
            raise LoadError(WORKER_DIED) from exc


__all__ = [
    "ARENA_PREFIX",
    "Arena",
    "Pending",
    "SlotBatch",
    "SlotJob",
    "generate",
    "w_generate_into",
]
