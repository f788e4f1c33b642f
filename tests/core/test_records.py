"""Record generation and wire encoding: determinism, ranges, NULLs, and payloads that decode."""

from __future__ import annotations

import pickle
import re
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.core.encoders import PG_COPY_HEADER, PG_COPY_TRAILER
from async_etl.core.generators import uuid_hex
from async_etl.core.packing import Part, const, pack_rows
from async_etl.core.records import (
    encode_crate_json,
    encode_pg_binary,
    generate_columns,
    rows,
    w_generate,
)
from async_etl.core.schema import Column, Schema, column, default_schema
from async_etl.errors import ConfigError
from async_etl.typing import Encoding, IdRange, Row, WorkUnit

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)

# every generator, so random schemas cover every encoder path
CATALOGUE: tuple[Column, ...] = (
    column("uid", "uuid", "uuid"),
    column("uid_text", "text", "uuid"),
    column("small", "int", "int", min=-5, max=5),
    column("big", "bigint", "int", min=-(2**62), max=2**62),
    column("amount", "double", "uniform", min=-1, max=1, decimals=3),
    column("status", "text", "choice", values=["a", "bé", "ccc"]),
    column("level", "int", "choice", values=[1, 2, 3]),
    column("ratio", "double", "choice", values=[0.5, 1.25]),
    column("note", "text", "text", min_len=0, max_len=12),
    column("name", "text", "name"),
    column("city", "text", "city"),
    column("email", "text", "email"),
    column("ts", "timestamptz", "timestamp", days=30),
    column("flag", "bool", "bool", p=0.3),
    column("attrs", "json", "json"),
    column("fixed", "text", "text", min_len=7, max_len=7),
    column("filler", "text", "constant", width=9),
    column("motto", "text", "constant", value="hé\t€", width=2),
    column("blank", "char", "constant", width=84),
    column("pad", "char", "constant", value="hé €", width=7),
    column("tight", "char", "constant", value="x  ", width=3),
)

ID_COL = column("id", "bigint", "sequence")


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    picked = draw(st.lists(st.sampled_from(CATALOGUE), unique=True, max_size=len(CATALOGUE)))
    cols = [ID_COL]
    for col in picked:
        p = draw(st.sampled_from([0.0, 0.0, 0.25, 1.0]))
        cols.append(
            Column(col.name, col.type, col.gen, (*col.params, ("nullable", p)) if p else col.params)
        )
    return Schema(tuple(cols))


id_ranges = st.builds(IdRange, st.integers(0, 2**50), st.integers(0, 120))
seeds = st.integers(-(2**63), 2**64)


def decode_pg_binary(schema: Schema, payload: bytes) -> list[Row]:
    """A small, independent decoder of PostgreSQL binary COPY (the format spec, by hand)."""
    assert payload[:11] == b"PGCOPY\n\xff\r\n\x00"
    flags, ext = struct.unpack_from(">ii", payload, 11)
    assert flags == 0
    pos = 19 + ext
    out: list[Row] = []
    while True:
        (nfields,) = struct.unpack_from(">h", payload, pos)
        pos += 2
        if nfields == -1:
            break
        assert nfields == len(schema.columns)
        row: list[Any] = []
        for col in schema.columns:
            (size,) = struct.unpack_from(">i", payload, pos)
            pos += 4
            if size == -1:
                row.append(None)
                continue
            raw = payload[pos : pos + size]
            pos += size
            if col.type == "char":  # what the server stores: the value padded to character(n)
                assert not raw.endswith(b" "), "a char value's trailing blanks are not sent"
                row.append(raw.decode("utf-8").ljust(int(col.param("width", 1))))
            else:
                row.append(_decode_field(col.type, raw))
        out.append(tuple(row))
    assert pos == len(payload)
    return out


def _decode_field(type_: str, raw: bytes) -> Any:
    if type_ == "bigint":
        return struct.unpack(">q", raw)[0]
    if type_ == "int":
        return struct.unpack(">i", raw)[0]
    if type_ == "double":
        return struct.unpack(">d", raw)[0]
    if type_ == "bool":
        assert raw in (b"\x00", b"\x01")
        return raw == b"\x01"
    if type_ == "timestamptz":
        return PG_EPOCH + timedelta(microseconds=struct.unpack(">q", raw)[0])
    if type_ == "uuid":
        return uuid.UUID(bytes=raw)
    if type_ == "json":
        assert raw[0] == 1
        return orjson.loads(raw[1:])
    return raw.decode("utf-8")


def _as_crate(type_: str, value: Any) -> Any:
    """What a Python value of ``rows()`` looks like in the CrateDB JSON body."""
    if value is None:
        return None
    if type_ == "uuid":
        return str(value)
    if type_ == "timestamptz":
        return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return value


@settings(max_examples=60, deadline=None)
@given(schema=schemas(), ids=id_ranges, seed=seeds)
def test_rows_cover_exactly_the_range(schema: Schema, ids: IdRange, seed: int) -> None:
    """rows() has ids.count rows whose ids are exactly the range, in order."""
    got = rows(schema, ids, seed)
    assert [r[0] for r in got] == list(range(ids.start, ids.stop))
    assert all(len(r) == len(schema.columns) for r in got)


@settings(max_examples=40, deadline=None)
@given(schema=schemas(), ids=id_ranges, seed=seeds)
def test_generation_is_deterministic(schema: Schema, ids: IdRange, seed: int) -> None:
    """The same (schema, ids, seed) always gives the same rows and the same payloads."""
    assert rows(schema, ids, seed) == rows(schema, ids, seed)
    a, b = generate_columns(schema, ids, seed), generate_columns(schema, ids, seed)
    assert encode_pg_binary(schema, a) == encode_pg_binary(schema, b)


@settings(max_examples=40, deadline=None)
@given(ids=id_ranges.filter(lambda r: r.count > 0), seed=seeds, other=seeds)
def test_different_seeds_differ(ids: IdRange, seed: int, other: int) -> None:
    """Two different seeds produce different data for the same ids."""
    if seed % 2**64 == other % 2**64:
        return
    assert rows(default_schema(), ids, seed) != rows(default_schema(), ids, other)


@settings(max_examples=30, deadline=None)
@given(start=st.integers(0, 2**40), count=st.integers(1, 200), seed=seeds)
def test_batches_never_share_a_stream(start: int, count: int, seed: int) -> None:
    """Adjacent batches of one run (as two workers would make them) have no uuid in common."""
    first = rows(default_schema(), IdRange(start, count), seed)
    second = rows(default_schema(), IdRange(start + count, count), seed)
    assert not {r[1] for r in first} & {r[1] for r in second}


@settings(max_examples=30, deadline=None)
@given(ids=id_ranges, seed=seeds)
def test_uuids_are_distinct_v4(ids: IdRange, seed: int) -> None:
    """Every uuid is a distinct RFC 4122 version-4 uuid."""
    uids = [r[1] for r in rows(default_schema(), ids, seed)]
    assert len(set(uids)) == len(uids)
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in uids)


@settings(max_examples=60, deadline=None)
@given(raw=st.lists(st.binary(min_size=16, max_size=16), max_size=40))
def test_uuid_hex_is_the_canonical_text_plain_and_quoted(raw: list[bytes]) -> None:
    """uuid_hex rows are str(uuid.UUID(bytes=...)), and with quoted=True that string in JSON."""
    mat = np.frombuffer(b"".join(raw), dtype=np.uint8).reshape(len(raw), 16)
    expected = [str(uuid.UUID(bytes=b)) for b in raw]
    plain, quoted = uuid_hex(mat), uuid_hex(mat, quoted=True)
    assert plain.shape == (len(raw), 36) and quoted.shape == (len(raw), 38)
    assert [bytes(r).decode() for r in plain] == expected
    assert [orjson.loads(bytes(r)) for r in quoted] == expected


@settings(max_examples=80, deadline=None)
@given(schema=schemas(), ids=id_ranges, seed=seeds)
def test_pg_binary_decodes_to_rows(schema: Schema, ids: IdRange, seed: int) -> None:
    """The binary COPY payload decodes, field by field, to exactly rows()."""
    payload = encode_pg_binary(schema, generate_columns(schema, ids, seed))
    assert decode_pg_binary(schema, payload) == rows(schema, ids, seed)


@settings(max_examples=80, deadline=None)
@given(schema=schemas(), ids=id_ranges, seed=seeds)
def test_crate_json_parses_to_rows(schema: Schema, ids: IdRange, seed: int) -> None:
    """The CrateDB body parses to the statement and bulk_args equal to rows()."""
    stmt = schema.crate_insert("doc.t")
    body = orjson.loads(encode_crate_json(stmt, schema, generate_columns(schema, ids, seed)))
    types = [c.type for c in schema.columns]
    expected = [
        [_as_crate(t, v) for t, v in zip(types, row, strict=True)]
        for row in rows(schema, ids, seed)
    ]
    assert body == {"stmt": stmt, "bulk_args": expected}


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_null_masks_honoured(p: float) -> None:
    """nullable=p makes about p of the values NULL, on the wire and in rows()."""
    schema = Schema(
        (ID_COL, *(Column(c.name, c.type, c.gen, (*c.params, ("nullable", p))) for c in CATALOGUE))
    )
    ids = IdRange(1, 2000)
    got = rows(schema, ids, 7)
    for index in range(1, len(schema.columns)):
        share = sum(r[index] is None for r in got) / len(got)
        assert share == pytest.approx(p, abs=0.05)
    assert (
        decode_pg_binary(schema, encode_pg_binary(schema, generate_columns(schema, ids, 7))) == got
    )
    assert all(r[0] is not None for r in got)


def test_value_ranges() -> None:
    """Generated values respect each generator's parameters."""
    names = ("id", *(c.name for c in CATALOGUE))
    got = [
        dict(zip(names, r, strict=True))
        for r in rows(Schema((ID_COL, *CATALOGUE)), IdRange(10, 3000), 1)
    ]
    assert {r["small"] for r in got} == set(range(-5, 6))
    assert all(-1 <= r["amount"] <= 1 and round(r["amount"], 3) == r["amount"] for r in got)
    assert {r["status"] for r in got} == {"a", "bé", "ccc"}
    assert {r["level"] for r in got} == {1, 2, 3}
    assert {r["ratio"] for r in got} == {0.5, 1.25}
    assert {len(r["note"]) for r in got} == set(range(13))
    assert all(r["note"].isalpha() or r["note"] == "" for r in got)
    assert all(len(r["fixed"]) == 7 for r in got)
    assert all(EPOCH - timedelta(days=30) < r["ts"] <= EPOCH for r in got)
    assert all(r["ts"].microsecond % 1000 == 0 for r in got)  # ms precision: CrateDB keeps it
    assert sum(r["flag"] for r in got) / len(got) == pytest.approx(0.3, abs=0.05)
    assert all(str(uuid.UUID(r["uid_text"])) == r["uid_text"] for r in got)
    assert all(set(r["attrs"]) == {"source", "score", "tags"} for r in got)
    assert len({r["name"] for r in got}) > 1000
    assert len({r["city"] for r in got}) > 20


def test_emails_are_plausible_and_unique() -> None:
    """E-mails look like first.last<id>@domain, ASCII only, one per id."""
    schema = Schema((ID_COL, column("email", "text", "email")))
    got = rows(schema, IdRange(0, 2000), 3)
    pattern = re.compile(r"^[a-z]+\.[a-z]+(\d+)@[a-z.]+$")
    for row_id, email in got:
        match = pattern.match(email)
        assert match is not None, email
        assert int(match.group(1)) == row_id
    assert len({e for _, e in got}) == len(got)


def test_default_schema_values() -> None:
    """The default schema's columns carry the documented kinds of values."""
    got = rows(default_schema(64), IdRange(1, 1000), 11)
    assert {r[6] for r in got} == {"new", "paid", "shipped", "cancelled", "returned"}
    assert all(1 <= r[5] <= 100 for r in got)
    assert all(0 <= r[4] <= 10000 for r in got)
    assert all(len(r[10]) == 64 and r[10].isascii() and r[10].isalpha() for r in got)
    assert all(isinstance(r[9], bool) and isinstance(r[8], dict) for r in got)
    assert all(r[7].tzinfo is not None for r in got)


def test_adding_a_column_keeps_the_others() -> None:
    """Each column has its own stream: adding one does not change existing values."""
    ids = IdRange(5, 50)
    narrow = rows(default_schema(), ids, 9)
    wide = rows(default_schema(16), ids, 9)
    assert [r[:-1] for r in wide] == narrow


def test_empty_batch_payloads() -> None:
    """A batch of zero rows encodes to a bare COPY header+trailer and empty bulk_args."""
    schema = default_schema()
    cols = generate_columns(schema, IdRange(5, 0), 1)
    assert encode_pg_binary(schema, cols) == PG_COPY_HEADER + PG_COPY_TRAILER
    assert orjson.loads(encode_crate_json("s", schema, cols)) == {"stmt": "s", "bulk_args": []}


@pytest.mark.parametrize("nullable", [0.0, 0.4])
@pytest.mark.parametrize("value", ["", "ab", "hé €  "])
def test_char_constant_travels_without_its_blanks(value: str, nullable: float) -> None:
    """A char(n) constant's COPY bytes are those of its unpadded text; its rows are padded."""
    params: dict[str, Any] = {"nullable": nullable} if nullable else {}
    as_char = Schema((ID_COL, column("f", "char", "constant", value=value, width=84, **params)))
    bare = value.rstrip(" ")
    as_text = Schema((ID_COL, column("f", "text", "constant", value=bare, **params)))
    ids = IdRange(7, 300)
    char_cols, text_cols = generate_columns(as_char, ids, 3), generate_columns(as_text, ids, 3)
    assert encode_pg_binary(as_char, char_cols) == encode_pg_binary(as_text, text_cols)
    got = {r[1] for r in rows(as_char, ids, 3)} - {None}
    assert got == {value.ljust(84)}


def test_pgbench_accounts_rows_are_34_bytes_with_a_char_filler() -> None:
    """pgbench_accounts-shaped rows: 34 bytes each on the wire with char(84), 118 with text."""
    ints = (ID_COL, column("bid", "int", "int"), column("abalance", "int", "int"))
    char = Schema((*ints, column("filler", "char", "constant", width=84)))
    text = Schema((*ints, column("filler", "text", "constant", width=84)))
    ids = IdRange(1, 1000)
    frame = len(PG_COPY_HEADER + PG_COPY_TRAILER)
    assert len(encode_pg_binary(char, generate_columns(char, ids, 1))) == frame + 34 * 1000
    assert len(encode_pg_binary(text, generate_columns(text, ids, 1))) == frame + 118 * 1000
    assert rows(char, ids, 1) == rows(text, ids, 1)


def test_w_generate_dispatches_on_wire() -> None:
    """w_generate returns each wire's payload for the unit's ids; 'none' ships no bytes."""
    schema, ids = default_schema(), IdRange(100, 25)
    cols = generate_columns(schema, ids, 5)
    stmt = schema.crate_insert("t")
    pg = w_generate(WorkUnit(5, ids, schema, Encoding("pg_binary")))
    crate = w_generate(WorkUnit(5, ids, schema, Encoding("crate_json", stmt)))
    none = w_generate(WorkUnit(5, ids, schema, Encoding("none")))
    assert (pg.payload, pg.wire, pg.ids, pg.row_count) == (
        encode_pg_binary(schema, cols),
        "pg_binary",
        ids,
        25,
    )
    assert crate.payload == encode_crate_json(stmt, schema, cols)
    assert (none.payload, none.row_count) == (b"", 25)


def test_w_generate_rejects_bad_encodings() -> None:
    """A CrateDB encoding without a statement, or an unknown wire, raises ConfigError."""
    schema, ids = default_schema(), IdRange(1, 2)
    with pytest.raises(ConfigError, match="statement"):
        w_generate(WorkUnit(1, ids, schema, Encoding("crate_json")))
    with pytest.raises(ConfigError, match="wire"):
        w_generate(WorkUnit(1, ids, schema, Encoding("xml")))  # type: ignore[arg-type]


def test_work_unit_round_trips_through_pickle() -> None:
    """The worker function and its argument survive pickling (a process pool needs both)."""
    unit = WorkUnit(3, IdRange(1, 10), default_schema(8), Encoding("pg_binary"))
    fn, arg = pickle.loads(pickle.dumps((w_generate, unit)))
    assert fn(arg) == w_generate(unit)


@settings(max_examples=60, deadline=None)
@given(
    rows_=st.lists(
        st.tuples(st.binary(max_size=5), st.binary(min_size=3, max_size=3)), max_size=200
    ),
    sep=st.binary(max_size=2),
)
def test_pack_rows_matches_a_python_join(rows_: list[tuple[bytes, bytes]], sep: bytes) -> None:
    """pack_rows of variable, constant and fixed parts equals the plain per-row join."""
    n = len(rows_)
    var = np.zeros((n, 5), dtype=np.uint8)
    for i, (v, _) in enumerate(rows_):
        var[i, : len(v)] = np.frombuffer(v, dtype=np.uint8)
    fixed = np.frombuffer(b"".join(f for _, f in rows_), dtype=np.uint8).reshape(n, 3)
    used = np.array([len(v) for v, _ in rows_], dtype=np.int64)
    parts = [Part(var, used), const(sep), const(b"|"), Part(fixed)]
    got = pack_rows(parts, n, b"<", b">").tobytes()
    assert got == b"<" + b"".join(v + sep + b"|" + f for v, f in rows_) + b">"


UNIT_SCHEMAS = (
    default_schema(),
    Schema(
        (
            column("id", "bigint", "sequence"),
            column("note", "text", "text", min_len=0, max_len=30, nullable=0.3),
            column("mail", "text", "email", nullable=0.2),
            column("tag", "char", "constant", value="x", width=3),
            column("u", "uuid", "uuid", nullable=0.5),
            column("j", "json", "json", nullable=0.4),
        )
    ),
)


def _tuples(wire: str, payload: bytes) -> list[Any]:
    """The rows of one batch's payload: CrateDB's bulk_args, or the COPY tuple stream's bytes."""
    if wire == "crate_json":
        return list(orjson.loads(payload)["bulk_args"])
    head, tail = len(PG_COPY_HEADER), len(PG_COPY_TRAILER)
    assert payload[:head] == PG_COPY_HEADER and payload[-tail:] == PG_COPY_TRAILER
    return list(payload[head:-tail])


@settings(max_examples=25, deadline=None)
@given(
    start=st.integers(min_value=1, max_value=10**9),
    count=st.integers(min_value=1, max_value=700),
    size=st.integers(min_value=1, max_value=300),
    wire=st.sampled_from(["crate_json", "pg_binary"]),
    which=st.sampled_from([0, 1]),
)
def test_a_units_batches_are_the_unit_generated_whole_cut_in_order(
    start: int, count: int, size: int, wire: str, which: int
) -> None:
    """A multi-batch unit's batches hold exactly the unit's rows as one batch, in order, by size."""
    from dataclasses import replace

    from async_etl.core.records import w_generate, w_generate_batches

    schema = UNIT_SCHEMAS[which]
    enc = Encoding(wire, schema.crate_insert("t") if wire == "crate_json" else "")  # type: ignore[arg-type]
    unit = WorkUnit(3, IdRange(start, count), schema, enc, batch_size=size)
    grouped = w_generate_batches(unit)
    whole = w_generate(replace(unit, batch_size=0))
    assert [b.ids for b in grouped] == [
        IdRange(s, min(size, start + count - s)) for s in range(start, start + count, size)
    ]
    assert {b.wire for b in grouped} == {wire}
    if wire == "crate_json":
        assert all(orjson.loads(b.payload)["stmt"] == enc.stmt for b in grouped)
    assert [x for b in grouped for x in _tuples(wire, b.payload)] == _tuples(wire, whole.payload)
    assert sum(b.row_count for b in grouped) == count


def test_parts_and_bodies_refuse_rows_outside_the_batch() -> None:
    """Columns.part and crate_json_bodies raise ValueError for rows the batch does not have."""
    from async_etl.core.encoders import crate_json_bodies

    schema = default_schema()
    cols = generate_columns(schema, IdRange(10, 5), 1)
    assert len(cols.part(2, 3)) == 3 and cols.part(2, 3).ids == IdRange(12, 3)
    with pytest.raises(ValueError, match="not inside"):
        cols.part(3, 3)
    with pytest.raises(ValueError, match="do not cut"):
        crate_json_bodies("INSERT", schema, cols, [2, 2])
