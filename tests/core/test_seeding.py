"""Batched seeding: the same generators as ``np.random.default_rng(key)``, key by key."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.core.generators import (
    _column,
    column_rng,
    generate_columns,
)
from async_etl.core.records import w_generate, w_generate_batches
from async_etl.core.schema import Schema, column, default_schema
from async_etl.core.seeding import Seeded, pcg64_states
from async_etl.typing import Encoding, IdRange, WorkUnit

# every word length SeedSequence sees: 0, one word, a word's edges, two words, three words
ints = st.one_of(
    st.sampled_from([0, 1, 2**32 - 1, 2**32, 2**64 - 1, 2**64]),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**80),
)
keys = st.lists(ints, min_size=0, max_size=7)


@settings(max_examples=300, deadline=None)
@given(st.lists(keys, min_size=1, max_size=12))
def test_pcg64_states_equal_default_rng_seeding(batch: list[list[int]]) -> None:
    """Each key's (state, inc) is the one ``default_rng(key)`` sets, mixed word lengths too."""
    expected = []
    for key in batch:
        state = np.random.default_rng(key).bit_generator.state["state"]
        expected.append((state["state"], state["inc"]))
    assert pcg64_states(batch) == expected


@settings(max_examples=50, deadline=None)
@given(keys, st.integers(1, 50))
def test_seeded_generator_draws_what_default_rng_draws(key: list[int], n: int) -> None:
    """The re-seeded generator gives the same integers, floats and bytes as a fresh one."""
    ref = np.random.default_rng(key)
    rng = Seeded().at(pcg64_states([key])[0])
    assert rng.integers(0, 1000, size=n).tolist() == ref.integers(0, 1000, size=n).tolist()
    assert rng.random(n).tolist() == ref.random(n).tolist()
    assert rng.bytes(n) == ref.bytes(n)


def test_negative_key_is_refused_like_seedsequence() -> None:
    """A negative key word raises ValueError, as ``SeedSequence`` does."""
    with pytest.raises(ValueError, match="non-negative"):
        pcg64_states([[1, -1]])
    with pytest.raises(ValueError):
        np.random.default_rng([1, -1])


def _reference_columns(schema: Schema, ids: IdRange, seed: int) -> list[object]:
    """A batch generated the way it was before batched seeding: one ``column_rng`` a column."""
    out: list[object] = []
    for col in schema.columns:
        rng = column_rng(seed, ids, col.name)
        out.append(_column(col, ids, rng))
        p = col.null_fraction
        out.append((rng.random(ids.count) < p).tolist() if p > 0 else None)
    return out


def _values(schema: Schema, ids: IdRange, seed: int) -> list[object]:
    cols = generate_columns(schema, ids, seed)
    out: list[object] = []
    for values, nulls in zip(cols.values, cols.nulls, strict=True):
        out.append(values)
        out.append(nulls.tolist() if nulls is not None else None)
    return out


def _same(a: list[object], b: list[object]) -> bool:
    def norm(v: object) -> object:
        if isinstance(v, np.ndarray):
            return (v.dtype.str, v.tobytes())
        strings = getattr(v, "strings", None)
        return strings() if strings is not None else v

    return [norm(v) for v in a] == [norm(v) for v in b]


NULLABLE = Schema(
    (
        column("id", "bigint", "sequence"),
        column("n", "int", "int", min=1, max=9, nullable=0.3),
        column("t", "text", "text", min_len=1, max_len=9, nullable=0.5),
    )
)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**63 - 200), st.integers(0, 120))
def test_generate_columns_equals_one_column_rng_per_column(seed: int, start: int, n: int) -> None:
    """Batched seeding changes no value: the default schema and a nullable one, any id range."""
    for schema in (default_schema(), NULLABLE):
        ids = IdRange(start, n)
        assert _same(_values(schema, ids, seed), _reference_columns(schema, ids, seed))


def test_a_unit_of_one_batch_draws_from_its_own_id_range() -> None:
    """A one-batch unit is ``w_generate`` of its ids, one ``column_rng`` stream per column."""
    schema = default_schema()
    for wire, stmt in (("crate_json", schema.crate_insert("t")), ("pg_binary", "")):
        unit = WorkUnit(7, IdRange(2**32 - 2000, 4000), schema, Encoding(wire, stmt), 4000)  # type: ignore[arg-type]
        assert w_generate_batches(unit) == [w_generate(unit)]
        assert _same(_values(schema, unit.ids, 7), _reference_columns(schema, unit.ids, 7))
