"""The null sink: discards every batch.  Measures the generator + engine ceiling."""

from __future__ import annotations

from typing import TYPE_CHECKING

from async_etl.sinks.closing import ClosingSink
from async_etl.typing import EncodedBatch, Encoding, IdRange, SendResult, Target, WireFormat

if TYPE_CHECKING:
    from async_etl.core.schema import Schema


class NullSink(ClosingSink):
    """An ``AsyncSink`` (and ``BlockingSink``) that accepts everything and keeps nothing."""

    def __init__(self, *, wire: WireFormat = "crate_json") -> None:
        # workers still encode each batch (CrateDB JSON by default), so the null sink measures
        # the real generation + encoding + engine ceiling; wire="none" skips the encoding
        self._wire: WireFormat = wire

    def describe(self) -> str:
        """A human-readable name for reports."""
        return f"null://?wire={self._wire}"

    def _target(self, schema: Schema) -> Target:
        stmt = schema.crate_insert("null_sink") if self._wire == "crate_json" else ""
        return Target(Encoding(self._wire, stmt), description=self.describe())

    async def prepare(self, schema: Schema) -> Target:
        """Nothing to create; batches need no encoding unless ``encode`` was asked for."""
        return self._target(schema)

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """Count the batch as delivered."""
        return SendResult(delivered=batch.row_count)

    async def count(self, ids: IdRange) -> int | None:
        """Unknowable: nothing is kept."""
        return None

    async def aclose(self) -> None:
        """Nothing to release."""


class BlockingNullSink(NullSink):
    """The blocking twin of ``NullSink`` for the thread runner."""

    def prepare(self, schema: Schema) -> Target:  # type: ignore[override]
        """Nothing to create."""
        return self._target(schema)

    def send(self, batch: EncodedBatch, attempt: int) -> SendResult:  # type: ignore[override]
        """Count the batch as delivered."""
        return SendResult(delivered=batch.row_count)

    def count(self, ids: IdRange) -> int | None:  # type: ignore[override]
        """Unknowable: nothing is kept."""
        return None

    def close(self) -> None:
        """Nothing to release."""
