"""Public value types and ports (Protocols) shared by every layer.

Nothing here does I/O.  Value types are frozen, slotted and picklable, so a unit of work can
cross a process (or, later, a Ray actor) boundary unchanged.

The writer's value types and sink ports (``IdRange``, ``Encoding``, ``WorkUnit``,
``EncodedBatch``, ``RowError``, ``SendResult``, ``Target``, ``AsyncSink``,
``ManagedAsyncSink``, ``BlockingSink``) are defined in ``async_etl.core.writer_types`` and
imported from there on first use of the name here (PEP 562 ``__getattr__``): a job run never
uses them, and creating their seven dataclasses was about 2-3 ms of every job's start.
``from async_etl.typing import EncodedBatch`` works as before; their ``__module__`` is
``async_etl.core.writer_types`` (so pickles name that module).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, TypeVar

from async_etl.core.wire_format import WireFormat as WireFormat

if TYPE_CHECKING:
    from async_etl.core.writer_types import AsyncSink as AsyncSink
    from async_etl.core.writer_types import BlockingSink as BlockingSink
    from async_etl.core.writer_types import EncodedBatch as EncodedBatch
    from async_etl.core.writer_types import Encoding as Encoding
    from async_etl.core.writer_types import IdRange as IdRange
    from async_etl.core.writer_types import ManagedAsyncSink as ManagedAsyncSink
    from async_etl.core.writer_types import RowError as RowError
    from async_etl.core.writer_types import SendResult as SendResult
    from async_etl.core.writer_types import Target as Target
    from async_etl.core.writer_types import WorkUnit as WorkUnit

Row: TypeAlias = tuple[Any, ...]
"""One record, in schema column order."""


Mode: TypeAlias = Literal["async", "threads"]

Holder: TypeAlias = Callable[[str], AbstractAsyncContextManager[None]]
"""Takes a budget token for one connection to a URL for the duration of a block."""

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event of a running job."""

    job: str
    run_id: str
    chunks_done: int
    chunks_total: int
    rows_read: int
    rows_per_s: float
    eta_s: float | None


class AsyncExecutor(Protocol):
    """The executor seam: runs a picklable top-level function on a picklable argument.

    A process pool today; a pool of Ray actors tomorrow.
    """

    def run(self, fn: Callable[[T], R], arg: T) -> Awaitable[R]:
        """Run ``fn(arg)`` somewhere and return its result."""
        ...


class Limit(Protocol):
    """A runtime-adjustable concurrency limit (anyio.CapacityLimiter fits)."""

    total_tokens: float


_WRITER_TYPES = frozenset(
    {
        "AsyncSink",
        "BlockingSink",
        "EncodedBatch",
        "Encoding",
        "IdRange",
        "ManagedAsyncSink",
        "RowError",
        "SendResult",
        "Target",
        "WorkUnit",
    }
)


__all__ = [  # the writer's types too, so that ``import *`` imports them on first use
    "AsyncExecutor",
    "Holder",
    "Limit",
    "Mode",
    "Progress",
    "Row",
    "WireFormat",
    *sorted(_WRITER_TYPES),
]


def __dir__() -> list[str]:
    """The module's names, the writer's types included before their first use."""
    return sorted({*globals(), *_WRITER_TYPES})


def __getattr__(name: str) -> Any:
    """The writer's types, imported on first use (see the module's docstring).

    Raises ``AttributeError`` for any other name, as a module does.
    """
    if name in _WRITER_TYPES:
        from async_etl.core import writer_types

        value = getattr(writer_types, name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
