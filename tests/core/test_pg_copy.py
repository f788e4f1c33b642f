"""Taking a binary COPY payload apart into rows and putting some of them back together."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.pg_copy import copy_payload, copy_rows
from async_etl.core.row_codecs import PgColumn, encode_pg_rows

COLUMNS = (PgColumn("id", "int8", False, -1), PgColumn("v", "text", True, -1))
ROWS = st.lists(
    st.tuples(
        st.integers(-(2**63), 2**63 - 1),
        # text PostgreSQL can hold: no NUL, no lone surrogate (the encoder refuses both, row by row)
        st.none() | st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",))),
    ),
    max_size=40,
)


@given(ROWS, st.data())
def test_a_subset_of_rows_is_the_payload_of_that_subset(
    rows: list[tuple[int, str | None]], data: st.DataObject
) -> None:
    """Rows split from a payload and rejoined at some positions equal those rows encoded."""
    payload = encode_pg_rows(COLUMNS, rows).payload
    parts = copy_rows(payload)
    assert len(parts) == len(rows)
    assert copy_payload(parts) == payload
    picked = data.draw(st.lists(st.sampled_from(range(len(rows))), unique=True)) if rows else []
    expected = encode_pg_rows(COLUMNS, [rows[i] for i in picked]).payload
    assert copy_payload(parts[i] for i in picked) == expected


@pytest.mark.parametrize("payload", [b"", b"COPY", b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\x00"])
def test_what_is_not_a_copy_payload_raises_value_error(payload: bytes) -> None:
    """A bad signature or a truncated row is a ValueError, not a wrong split."""
    with pytest.raises(ValueError, match="not a binary COPY payload"):
        copy_rows(payload)
