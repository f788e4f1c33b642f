"""An in-process scripted sink for runtime tests: records what arrives, fails on cue."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import anyio
import orjson

from async_etl.core.schema import Schema
from async_etl.errors import LoadError, TransientLoadError
from async_etl.typing import EncodedBatch, Encoding, IdRange, RowError, SendResult, Target


@dataclass
class ScriptedSink:
    """Keeps every id it accepts (CrateDB JSON bodies); scripted faults by batch and attempt.

    - ``transient_first``: the first attempt of every Nth batch raises a transient error;
    - ``transient_always``: every attempt of every batch raises a transient error;
    - ``partial_every``: every Nth batch has its odd rows sent back for a retry once;
    - ``reject_ids``: ids refused for good; ``fatal_after``: a fatal error after N sends;
    - ``delay``: seconds each send takes (to build up concurrency).
    """

    transient_first: int = 0
    transient_always: bool = False
    partial_every: int = 0
    reject_ids: frozenset[int] = frozenset()
    fatal_after: int = 0
    delay: float = 0.0
    start_id: int = 1
    seen: collections.Counter[int] = field(default_factory=collections.Counter)
    bodies: dict[int, bytes] = field(default_factory=dict)  # first attempt's payload per batch
    attempts: dict[int, list[int]] = field(default_factory=dict)  # batch start id -> attempts
    sends: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    closed: bool = False

    async def prepare(self, schema: Schema) -> Target:
        """Ask for CrateDB-style JSON bodies so the ids can be read back."""
        return Target(Encoding("crate_json", schema.crate_insert("t")), start_id=self.start_id)

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """Accept the batch, or fail as scripted."""
        self.sends += 1
        self.attempts.setdefault(batch.ids.start, []).append(attempt)
        if attempt == 1:
            self.bodies[batch.ids.start] = batch.payload
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await anyio.sleep(self.delay)
            if self.fatal_after and self.sends > self.fatal_after:
                raise LoadError("scripted: table t is read-only")
            if self.transient_always:
                raise TransientLoadError("scripted: 503 unavailable")
            batch_no = batch.ids.start // max(batch.ids.count, 1)
            if self.transient_first and attempt == 1 and batch_no % self.transient_first == 0:
                raise TransientLoadError("scripted: 503 unavailable")
            items = orjson.loads(batch.payload)["bulk_args"]
            keep, again, rejected = [], [], []
            for i, row in enumerate(items):
                if row[0] in self.reject_ids:
                    rejected.append(RowError(row[0], "scripted: value too long"))
                elif (
                    self.partial_every
                    and attempt == 1
                    and batch_no % self.partial_every == 0
                    and i % 2
                ):
                    again.append(row)
                else:
                    keep.append(row)
            for row in keep:
                self.seen[row[0]] += 1
            retry = None
            if again:
                body = orjson.dumps({"stmt": "x", "bulk_args": again})
                retry = EncodedBatch(batch.ids, body, "crate_json", rows=len(again))
            return SendResult(
                delivered=len(keep),
                rejected=tuple(rejected),
                retry=retry,
                retry_reason="scripted: shard unavailable" if again else "",
            )
        finally:
            self.in_flight -= 1

    async def count(self, ids: IdRange) -> int | None:
        """How many distinct ids of the range arrived."""
        return sum(1 for i in range(ids.start, ids.stop) if self.seen[i])

    async def aclose(self) -> None:
        """Remember that we were closed."""
        self.closed = True
