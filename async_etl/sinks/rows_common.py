"""What the writer's sinks share: ``columns=`` (``Declared``), a batch sent as its rows.

``RecordsBatch`` is a batch that travels as its rows (a driver encodes them: asyncpg's C COPY
encoders, or ``orjson`` for CrateDB), and ``encoded_again`` the answer when the driver refuses
one of its values on the client: a retry of the batch encoded by the reference encoders,
which refuse the bad rows with their reasons.  The sinks: ``sinks.postgres_rows``,
``sinks.cratedb_rows`` and ``sinks.rows`` (the null sink and the ``RowsSink`` union).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from async_etl.core.row_codecs import Encoded
from async_etl.errors import ConfigError
from async_etl.typing import EncodedBatch, RowError, SendResult, WireFormat

Declared = Mapping[str, str] | Sequence[str] | None
"""``columns=``: name -> SQL type (create the table if missing), names to fill, or None (all)."""


def split_declared(columns: Declared) -> tuple[Mapping[str, str] | None, Sequence[str] | None]:
    """``columns=`` as (name -> type to create the table with, or None; names to fill, or None).

    Raises ``ConfigError`` for a bare string.
    """
    if columns is None:
        return None, None
    if isinstance(columns, Mapping):
        return columns, tuple(columns)
    if isinstance(columns, str):
        raise ConfigError("columns: give a sequence of names or a mapping name -> type")
    return None, tuple(columns)


@dataclass(frozen=True, slots=True)
class RecordsBatch(EncodedBatch):
    """A batch sent as its rows (``payload`` empty): the driver encodes them (asyncpg, orjson)."""

    records: Sequence[tuple[Any, ...]] = ()


DRIVER_REFUSED = "the driver refused a value: batch encoded again, row by row"
"""The retry reason when asyncpg refused a value of a ``RecordsBatch`` on the client."""


def encoded_again(batch: RecordsBatch, encoded: Encoded, wire: WireFormat) -> SendResult:
    """The answer for a ``RecordsBatch`` the driver refused: a retry of its ``encoded`` rows.

    The rows the reference encoders refused are rejected with their reasons.
    """
    ids = batch.row_ids()
    rejected = tuple(RowError(ids[pos], why) for pos, why in encoded.refused)
    if not encoded.kept:
        return SendResult(delivered=0, rejected=rejected)
    keys = tuple(ids[pos] for pos in encoded.kept)
    retry = EncodedBatch(batch.ids, encoded.payload, wire, keys=keys)
    return SendResult(0, rejected, retry=retry, retry_reason=DRIVER_REFUSED)


__all__ = ["DRIVER_REFUSED", "Declared", "RecordsBatch", "encoded_again", "split_declared"]
