"""CrateDB JSON of random letters: fragments cut from the byte matrix, byte-for-byte as before."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.encoders import json_string_fragments
from async_etl.core.generators import Columns, Text, compose, generate_columns
from async_etl.core.records import encode_crate_json
from async_etl.core.schema import Column, Schema, column, default_schema
from async_etl.typing import IdRange

seeds = st.integers(0, 2**64 - 1)


def _reference_body(stmt: str, schema: Schema, cols: Columns) -> bytes:
    """The body as the encoder wrote it before: text columns through Python ``str``s."""
    plain = tuple(replace(v, json_safe=False) if isinstance(v, Text) else v for v in cols.values)
    return encode_crate_json(stmt, schema, Columns(cols.ids, plain, cols.nulls))


@given(
    lo=st.integers(0, 300),
    extra=st.integers(0, 300),
    count=st.integers(0, 60),
    nullable=st.sampled_from([0.0, 0.3, 1.0]),
    seed=seeds,
)
def test_letters_body_matches_str_encoding(
    lo: int, extra: int, count: int, nullable: float, seed: int
) -> None:
    """A letters column of any width range encodes to the same bytes as via Python strings."""
    params: tuple[tuple[str, object], ...] = (("max_len", lo + extra), ("min_len", lo))
    if nullable:
        params = (*params, ("nullable", nullable))
    schema = Schema((column("id", "bigint", "sequence"), Column("note", "text", "text", params)))
    cols = generate_columns(schema, IdRange(5, count), seed)
    assert isinstance(cols.values[1], Text) and cols.values[1].json_safe
    stmt = "INSERT INTO t (id, note) VALUES (?, ?)"
    assert encode_crate_json(stmt, schema, cols) == _reference_body(stmt, schema, cols)


@given(seed=seeds, count=st.integers(1, 20))
def test_bench_payload_body_matches_str_encoding(seed: int, count: int) -> None:
    """The bench schema with a 2,000-byte payload encodes exactly as before, same seed."""
    schema = default_schema(2000)
    cols = generate_columns(schema, IdRange(0, count), seed)
    stmt = "INSERT INTO t VALUES (?)"
    assert encode_crate_json(stmt, schema, cols) == _reference_body(stmt, schema, cols)


@given(rows=st.lists(st.text(alphabet="abcXYZ", max_size=50), max_size=30))
def test_fragments_are_quoted_rows(rows: list[str]) -> None:
    """Each fragment serialises as the JSON string of its row, empty rows included."""
    raw = [r.encode() for r in rows]
    lens = np.array([len(r) for r in raw], dtype=np.int64)
    flat = np.frombuffer(b"".join(raw), dtype=np.uint8)
    text = Text.from_flat(flat, lens, ascii=True)
    assert orjson.dumps(json_string_fragments(text)) == orjson.dumps(rows)


def test_only_letters_and_their_compositions_skip_escaping() -> None:
    """Text that may hold a quote or backslash is not json_safe; letters composed stay safe."""
    quoted = Text.from_flat(np.frombuffer(b'a"\\', dtype=np.uint8), np.array([3]), ascii=True)
    assert not quoted.json_safe
    letters = Text(np.array([[97, 98]], dtype=np.uint8), np.array([2]), ascii=True, json_safe=True)
    assert compose([letters, letters]).json_safe
    assert not compose([letters, quoted]).json_safe
    choice = column("s", "text", "choice", values=['say "hi"', "back\\slash"])
    schema = Schema((column("id", "bigint", "sequence"), choice))
    cols = generate_columns(schema, IdRange(0, 50), 3)
    assert encode_crate_json("x", schema, cols) == _reference_body("x", schema, cols)
