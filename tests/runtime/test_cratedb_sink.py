"""CrateDBSink and CrateDBClient against the CrateDB stand-in, over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import orjson
import pytest

from async_etl.core.records import w_generate
from async_etl.core.schema import Schema, column, default_schema
from async_etl.drivers.cratedb import CrateDBClient
from async_etl.errors import ErrorKind, LoadError, TransientLoadError
from async_etl.sinks.cratedb import CrateDBSink
from async_etl.sinks.cratedb_sync import BlockingCrateDBSink
from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.typing import EncodedBatch, IdRange, RowError, SendResult, Target, WorkUnit

SMALL = Schema(
    (
        column("id", "bigint", "sequence"),
        column("name", "text", "name"),
        column("amount", "double", "uniform", min=0, max=100, decimals=2),
    )
)


def _url(crate: CrateStandIn, *, user: str = "", password: str = "", query: str = "") -> str:
    base = crate.url.rstrip("/")
    if user:
        base = base.replace("://", f"://{user}:{password}@", 1)
    return f"{base}{query}"


@pytest.fixture
async def crate() -> AsyncIterator[CrateStandIn]:
    """A fault-free stand-in."""
    async with CrateStandIn(StandInConfig(seed=7)) as server:
        yield server


def batch_for(target: Target, start: int, count: int, schema: Schema = SMALL) -> EncodedBatch:
    """Generate one encoded batch of ``count`` rows from id ``start``."""
    return w_generate(WorkUnit(1, IdRange(start, count), schema, target.encoding))


def raw_batch(stmt: str, rows: Sequence[Sequence[Any]]) -> EncodedBatch:
    """A hand-built bulk body, for statements the schema would never produce."""
    payload = orjson.dumps({"stmt": stmt, "bulk_args": rows})
    return EncodedBatch(IdRange(1, len(rows)), payload, "crate_json")


async def deliver(
    sink: CrateDBSink, batch: EncodedBatch, max_attempts: int = 200
) -> tuple[int, list[RowError]]:
    """Send and resend as the engine does until nothing is left; return delivered, rejected."""
    delivered, rejected = 0, list[RowError]()
    current: EncodedBatch | None = batch
    attempt = 1
    while current is not None:
        assert attempt <= max_attempts, "did not converge"
        try:
            result = await sink.send(current, attempt)
        except TransientLoadError:
            attempt += 1
            continue
        delivered += result.delivered
        rejected.extend(result.rejected)
        current = result.retry
        attempt += 1
    return delivered, rejected


async def ids_in(client: CrateDBClient, table: str) -> list[int]:
    """All ids of ``table`` after a refresh."""
    await client.execute(f"REFRESH TABLE {table}")
    response = await client.execute(f"SELECT id FROM {table} ORDER BY id")
    return [row[0] for row in response.rows]


async def test_prepare_creates_table_and_start_id_advances(crate: CrateStandIn) -> None:
    """prepare creates the table and each run starts after the highest id already there."""
    sink = CrateDBSink(crate.url, table="t", concurrency=2)
    target = await sink.prepare(SMALL)
    assert target.start_id == 1
    assert target.encoding.wire == "crate_json"
    assert target.encoding.stmt.startswith('INSERT INTO "t"')
    assert target.description.endswith(" doc.t")
    assert target.extra["version"]
    assert (await sink.send(batch_for(target, 1, 50), 1)).delivered == 50
    await sink.aclose()
    again = CrateDBSink(crate.url, table="t", concurrency=2)
    try:
        assert (await again.prepare(SMALL)).start_id == 51
    finally:
        await again.aclose()


async def test_send_delivers_and_count_matches(crate: CrateStandIn) -> None:
    """A clean send delivers every row and count sees exactly the range."""
    sink = CrateDBSink(crate.url, table="t", concurrency=4)
    try:
        target = await sink.prepare(default_schema())
        batch = batch_for(target, target.start_id, 300, default_schema())
        assert await sink.send(batch, 1) == SendResult(delivered=300)
        assert await sink.count(IdRange(target.start_id, 300)) == 300
        assert await sink.count(IdRange(target.start_id + 1, 10)) == 10
        assert await sink.count(IdRange(1000, 10)) == 0
    finally:
        await sink.aclose()


async def test_gzip_bodies_accepted(crate: CrateStandIn) -> None:
    """Bodies above the gzip threshold are sent compressed and still land in full."""
    sink = CrateDBSink(crate.url, table="t", concurrency=2, gzip_threshold=1)
    try:
        target = await sink.prepare(SMALL)
        assert (await sink.send(batch_for(target, 1, 500), 1)).delivered == 500
        assert await sink.count(IdRange(1, 500)) == 500
    finally:
        await sink.aclose()


async def test_item_failures_retry_exactly_the_failed_items() -> None:
    """With per-item 5002s the retry holds exactly the rows not written, and resending converges."""
    async with CrateStandIn(StandInConfig(item_fail_rate=0.3, seed=3)) as crate:
        sink = CrateDBSink(crate.url, table="t", concurrency=2)
        try:
            target = await sink.prepare(SMALL)
            first = await sink.send(batch_for(target, 1, 200), 1)
            assert first.retry is not None
            assert first.retry_reason.startswith(f"{first.retry.rows} of 200 items")
            assert first.delivered + first.retry.rows == 200
            assert first.rejected == ()
            retry_ids = [row[0] for row in orjson.loads(first.retry.payload)["bulk_args"]]
            written = await ids_in(sink.client, "t")
            assert sorted(set(written) | set(retry_ids)) == list(range(1, 201))
            assert not set(written) & set(retry_ids)
            delivered, rejected = await deliver(sink, first.retry)
            assert (first.delivered + delivered, rejected) == (200, [])
            assert await sink.count(IdRange(1, 200)) == 200
        finally:
            await sink.aclose()


KINDS = ("fail", "busy", "item_fail", "drop_before", "drop_after")


@pytest.mark.parametrize("version", ["5.10.11", "5.10.0"])
async def test_drops_never_lose_or_duplicate(version: str) -> None:
    """Drops before and after apply, 503s, 429s and item faults: every row is counted once."""
    async with CrateStandIn(StandInConfig(version=version, seed=11)) as crate:
        sink = CrateDBSink(crate.url, table="t", concurrency=4, timeout=10)
        try:
            target = await sink.prepare(SMALL)
            crate.schedule_faults(*KINDS)  # each kind surely occurs, whatever the draws
            crate.drop_rate, crate.fail_rate, crate.busy_rate = 0.3, 0.1, 0.1
            crate.item_fail_rate = 0.1
            total = 0
            for start in range(1, 1201, 100):
                delivered, rejected = await deliver(sink, batch_for(target, start, 100))
                assert rejected == []
                total += delivered
            crate.drop_rate = crate.fail_rate = crate.busy_rate = crate.item_fail_rate = 0.0
            assert total == 1200
            assert await sink.count(IdRange(1, 1200)) == 1200
            faults = crate.counters.faults
            assert all(faults[kind] > 0 for kind in KINDS), faults
        finally:
            await sink.aclose()


async def test_large_resend_after_apply_counts_bare_minus_two_delivered(
    crate: CrateStandIn,
) -> None:
    """A re-sent batch that had landed answers coded and bare -2 duplicates: all delivered."""
    sink = CrateDBSink(crate.url, table="t", concurrency=2)
    try:
        target = await sink.prepare(SMALL)
        batch = batch_for(target, 1, 400)
        assert (await sink.send(batch, 1)).delivered == 400
        assert await sink.send(batch, 2) == SendResult(delivered=400)
        first = await sink.send(batch, 1)
        assert first.delivered == 0
        assert len(first.rejected) == 400
        assert {e.row_id for e in first.rejected} == set(range(1, 401))
        assert first.rejected[0].reason.startswith("4091 ")
        assert await sink.count(IdRange(1, 400)) == 400
    finally:
        await sink.aclose()


async def test_pre_5_10_bare_failures_are_resolved_not_rejected() -> None:
    """Before 5.10.0 failed items carry no detail: resent alone they show a transient 5002."""
    async with CrateStandIn(StandInConfig(version="5.9.0", seed=5)) as crate:
        sink = CrateDBSink(crate.url, table="t", concurrency=1)
        try:
            target = await sink.prepare(SMALL)
            crate.item_fail_rate = 0.3
            result = await sink.send(batch_for(target, 1, 100), 1)
            crate.item_fail_rate = 0.0
            assert result.rejected == ()
            assert result.retry is not None and result.retry.rows > 0
            assert result.delivered + result.retry.rows == 100
            assert "5002" in result.retry_reason
            assert await sink.count(IdRange(1, 100)) == result.delivered
            again = await sink.send(result.retry, 2)
            assert again == SendResult(delivered=result.retry.rows)
            assert await sink.count(IdRange(1, 100)) == 100
        finally:
            await sink.aclose()


async def test_legacy_single_item_409() -> None:
    """Before 5.10.11 a single-item duplicate is a top-level 409, read as that item."""
    async with CrateStandIn(StandInConfig(version="5.10.0")) as crate:
        sink = CrateDBSink(crate.url, table="t", concurrency=1)
        try:
            target = await sink.prepare(SMALL)
            batch = batch_for(target, 1, 1)
            assert (await sink.send(batch, 1)).delivered == 1
            assert (await sink.send(batch, 2)).delivered == 1
            again = await sink.send(batch, 1)
            assert [e.row_id for e in again.rejected] == [1]
        finally:
            await sink.aclose()


async def test_bad_credentials_401_masks_password() -> None:
    """Wrong credentials fail for good with a 401 message that never shows the password."""
    async with CrateStandIn(StandInConfig(user="crate", password="right")) as crate:
        sink = CrateDBSink(_url(crate, user="crate", password="s3cr3t"), table="t", concurrency=1)
        try:
            with pytest.raises(LoadError) as info:
                await sink.prepare(SMALL)
        finally:
            await sink.aclose()
        assert not isinstance(info.value, TransientLoadError)
        assert "s3cr3t" not in info.value.message
        assert info.value.message.startswith("CrateDB http://crate@")
        assert ": 401 " in info.value.message
        good = CrateDBSink(_url(crate, user="crate", password="right"), table="t", concurrency=1)
        try:
            assert (await good.prepare(SMALL)).start_id == 1
        finally:
            await good.aclose()


async def test_unknown_table_404(crate: CrateStandIn) -> None:
    """Inserting into or counting a table that does not exist is a permanent 404."""
    sink = CrateDBSink(crate.url, table="missing", concurrency=1)
    try:
        with pytest.raises(LoadError, match=r": 404 4041 ") as info:
            await sink.count(IdRange(1, 10))
        assert info.value.kind is ErrorKind.DB_PERMANENT
        with pytest.raises(LoadError, match=r": 404 4041 "):
            await sink.send(raw_batch("INSERT INTO nowhere (id) VALUES (?)", [[1]]), 1)
    finally:
        await sink.aclose()


async def test_analysis_error_400(crate: CrateStandIn) -> None:
    """A statement the server cannot analyse fails the whole request with a 400 LoadError."""
    sink = CrateDBSink(crate.url, table="t", concurrency=1)
    try:
        await sink.prepare(SMALL)
        with pytest.raises(LoadError, match=r": 400 400\d ") as info:
            await sink.send(raw_batch("INSERT INTO t (id, amount) VALUES (?, ?)", [[1, "x"]]), 1)
        assert not isinstance(info.value, TransientLoadError)
        with pytest.raises(LoadError, match=r": 400 4000 "):
            await sink.send(raw_batch("INSERT INTO t VALUES (?", [[1]]), 1)
        with pytest.raises(LoadError, match=r": 404 4043 "):
            await sink.send(raw_batch("INSERT INTO t (id, nope) VALUES (?, ?)", [[1, 2]]), 1)
        assert await sink.count(IdRange(1, 10)) == 0
    finally:
        await sink.aclose()


async def test_default_schema_from_url(crate: CrateStandIn) -> None:
    """?schema= becomes Default-Schema: the table lands in that schema."""
    sink = CrateDBSink(_url(crate, query="?schema=bench"), table="t", concurrency=2)
    try:
        target = await sink.prepare(SMALL)
        assert target.description.endswith(" bench.t")
        assert (await sink.send(batch_for(target, 1, 20), 1)).delivered == 20
    finally:
        await sink.aclose()
    async with CrateDBClient(crate.url) as client:
        assert len(await ids_in(client, "bench.t")) == 20
        with pytest.raises(LoadError, match="404"):
            await client.execute("SELECT count(*) FROM doc.t")


async def test_unavailable_and_busy_are_transient() -> None:
    """503 and 429 raise TransientLoadError; nothing is written."""
    async with CrateStandIn(StandInConfig(seed=1)) as crate:
        sink = CrateDBSink(crate.url, table="t", concurrency=1)
        try:
            target = await sink.prepare(SMALL)
            crate.fail_rate = 1.0
            with pytest.raises(TransientLoadError, match=": 503 503"):
                await sink.send(batch_for(target, 1, 5), 1)
            crate.fail_rate, crate.busy_rate = 0.0, 1.0
            with pytest.raises(TransientLoadError, match=": 429 4290 "):
                await sink.send(batch_for(target, 1, 5), 1)
            crate.busy_rate = 0.0
            assert await sink.count(IdRange(1, 5)) == 0
        finally:
            await sink.aclose()


async def test_connection_refused_is_network() -> None:
    """No server at all is a transient NETWORK error naming the endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = CrateDBSink(f"http://u:pw@127.0.0.1:{port}", table="t", concurrency=1)
    try:
        with pytest.raises(TransientLoadError) as info:
            await sink.prepare(SMALL)
        assert info.value.kind is ErrorKind.NETWORK
        assert info.value.message.startswith(f"CrateDB http://u@127.0.0.1:{port}: ")
        assert "pw" not in info.value.message
    finally:
        await sink.aclose()
        await sink.aclose()


async def test_client_execute_and_bulk(crate: CrateStandIn) -> None:
    """The ad-hoc client runs statements with args and bulk_args."""
    async with CrateDBClient(crate.url, concurrency=2) as client:
        await client.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT)")
        bulk = await client.bulk("INSERT INTO kv (k, v) VALUES (?, ?)", [["a", 1], ["b", 2]])
        assert bulk.results is not None
        assert [r.rowcount for r in bulk.results] == [1, 1]
        await client.execute("REFRESH TABLE kv")
        got = await client.execute("SELECT v FROM kv WHERE k = ?", ["b"])
        assert got.rows == ((2,),)
        assert got.cols == ("v",)


NULLABLE = Schema(
    (
        column("id", "bigint", "sequence"),
        column("note", "text", "name", nullable=0.5),
    )
)


def _blocking_send(url: str) -> tuple[EncodedBatch, SendResult]:
    """Prepare a blocking sink on ``t`` and send 400 NULLABLE rows once (in a thread)."""
    sync = BlockingCrateDBSink(url, table="t", concurrency=1)
    try:
        batch = batch_for(sync.prepare(NULLABLE), 1, 400, NULLABLE)
        return batch, sync.send(batch, 1)
    finally:
        sync.close()


@pytest.mark.parametrize("version", ["5.10.11", "5.9.0"])
@pytest.mark.parametrize("blocking", [False, True])
async def test_not_null_refusals_beyond_the_detail_cap_are_rejected_with_reason(
    version: str, blocking: bool
) -> None:
    """Half the rows NULL into NOT NULL on 4 shards: each is rejected with CrateDB's reason."""
    async with CrateStandIn(StandInConfig(version=version)) as crate:
        async with CrateDBClient(crate.url) as client:
            await client.execute(
                'CREATE TABLE "t" ("id" BIGINT PRIMARY KEY, "note" TEXT NOT NULL) '
                "CLUSTERED INTO 4 SHARDS"
            )
        if blocking:
            batch, result = await anyio.to_thread.run_sync(_blocking_send, crate.url)
        else:
            sink = CrateDBSink(crate.url, table="t", concurrency=1)
            target = await sink.prepare(NULLABLE)
            batch = batch_for(target, 1, 400, NULLABLE)
            result = await sink.send(batch, 1)
            await sink.aclose()
    doc = orjson.loads(batch.payload)
    nulls = {row[0] for row in doc["bulk_args"] if row[1] is None}
    assert len(nulls) > 4 * 10
    assert result.retry is None
    assert {e.row_id for e in result.rejected} == nulls
    assert all("Cannot insert null into 'note'" in e.reason for e in result.rejected)
    assert result.delivered == 400 - len(nulls)


async def test_single_row_not_null_before_5_10_11_is_a_reject() -> None:
    """A one-row batch refused NOT NULL answers a top-level 400/4003 on 5.10.0: a reject."""
    async with CrateStandIn(StandInConfig(version="5.10.0")) as crate:
        async with CrateDBClient(crate.url) as client:
            await client.execute('CREATE TABLE "t" ("id" BIGINT PRIMARY KEY, "note" TEXT NOT NULL)')
        sink = CrateDBSink(crate.url, table="t", concurrency=1)
        try:
            target = await sink.prepare(NULLABLE)
            batch = raw_batch(target.encoding.stmt, [[1, None]])
            result = await sink.send(batch, 1)
        finally:
            await sink.aclose()
    assert result.delivered == 0 and result.retry is None
    assert [(e.row_id, e.reason[:5]) for e in result.rejected] == [(1, "4003 ")]
    assert "Cannot insert null into 'note'" in result.rejected[0].reason
