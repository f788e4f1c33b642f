"""The writer's value types and sink ports; public as ``async_etl.typing.NAME``.

Kept apart from ``async_etl.typing`` so that a job run, which never uses them, does not create
their dataclasses at every start: ``async_etl.typing`` imports this module on the first use of
one of these names.  Import them from ``async_etl.typing``.  Nothing here does I/O; the value
types are frozen, slotted and picklable (a unit of work crosses a process boundary unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

# at run time too, so that ``typing.get_type_hints`` resolves ``wire`` as before the move
# (IdRange lives with the run's id bookkeeping, which a job's stats import without this module)
from async_etl.core.reckoning import IdRange as IdRange
from async_etl.core.wire_format import WireFormat

if TYPE_CHECKING:
    from async_etl.core.schema import Schema


@dataclass(frozen=True, slots=True)
class Encoding:
    """What a worker needs to encode a batch for one sink: the format and its statement."""

    wire: WireFormat
    stmt: str = ""


@dataclass(frozen=True, slots=True)
class WorkUnit:
    """A self-contained, picklable unit of generation work handed to an executor."""

    seed: int
    ids: IdRange
    schema: Schema
    encoding: Encoding
    batch_size: int = 0  # split the unit into batches of this many rows (0: one batch)


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """A batch already in its sink's wire format: the event loop only ships these bytes."""

    ids: IdRange
    payload: bytes
    wire: WireFormat
    rows: int = -1  # rows in payload when it is a subset of ``ids`` (a retry); -1 = ids.count
    keys: tuple[int, ...] | range | None = None  # the payload's row ids, when not its first value

    @property
    def row_count(self) -> int:
        """How many rows the payload holds."""
        if self.keys is not None:
            return len(self.keys)
        return self.ids.count if self.rows < 0 else self.rows

    def row_ids(self) -> tuple[int, ...] | range:
        """The ids of the payload's rows, in payload order (``keys``, else ``ids``)."""
        return self.keys if self.keys is not None else range(self.ids.start, self.ids.stop)


@dataclass(frozen=True, slots=True)
class RowError:
    """A row the sink refused for good, with the sink's reason."""

    row_id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one attempt to send one batch.

    ``delivered`` rows are durably in the sink; ``rejected`` rows are refused for good;
    ``retry`` is the subset worth another attempt (None when nothing is left to resend).
    """

    delivered: int
    rejected: tuple[RowError, ...] = ()
    retry: EncodedBatch | None = None
    retry_reason: str = ""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What a sink decided when it prepared: where ids start and how to encode batches."""

    encoding: Encoding
    start_id: int = 1
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class AsyncSink(Protocol):
    """A destination driven from the event loop.  One attempt per ``send``; the runner retries."""

    async def prepare(self, schema: Schema) -> Target:
        """Create the target if missing and say how batches must be encoded."""
        ...

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """Deliver one batch once; raise ``TransientLoadError`` or ``LoadError`` on failure."""
        ...

    async def count(self, ids: IdRange) -> int | None:
        """Rows of ``ids`` present in the target (after a refresh), or None if unknowable."""
        ...

    async def aclose(self) -> None:
        """Release connections; safe to call twice."""
        ...


class ManagedAsyncSink(AsyncSink, Protocol):
    """An ``AsyncSink`` that is also an async context manager (``async with`` closes it)."""

    async def __aenter__(self) -> Any:
        """Return the sink itself."""
        ...

    async def __aexit__(self, *exc: object) -> None:
        """Close the sink (``aclose``)."""
        ...


class BlockingSink(Protocol):
    """The blocking twin of ``AsyncSink``, used by the thread runner."""

    def prepare(self, schema: Schema) -> Target:
        """Create the target if missing and say how batches must be encoded."""
        ...

    def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """Deliver one batch once; raise ``TransientLoadError`` or ``LoadError`` on failure."""
        ...

    def count(self, ids: IdRange) -> int | None:
        """Rows of ``ids`` present in the target (after a refresh), or None if unknowable."""
        ...

    def close(self) -> None:
        """Release connections; safe to call twice."""
        ...
