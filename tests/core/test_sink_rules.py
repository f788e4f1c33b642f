"""The decisions both twins of a sink share (core.sink_rules)."""

from __future__ import annotations

import pytest

from async_etl.core import sink_rules
from async_etl.errors import DataError, LoadError, TransientLoadError
from async_etl.typing import EncodedBatch, IdRange, RowError, SendResult


def test_only_a_later_attempt_asks_the_ledger() -> None:
    """Attempt 1 writes straight away; any later one may follow a lost commit: ask first."""
    assert [sink_rules.ask_ledger(a) for a in (1, 2, 3)] == [False, True, True]


def test_a_landed_batch_counts_its_payload_rows_delivered() -> None:
    """The ledger says it committed: report the payload's rows delivered (a subset's count)."""
    batch = EncodedBatch(IdRange(10, 5), b"", "pg_binary", keys=(11, 13))
    assert sink_rules.landed(batch) == SendResult(delivered=2)


def test_a_data_error_rejects_every_row_of_the_payload_by_its_id() -> None:
    """A refused COPY rejects each payload row, by the subset's own ids when it is a retry."""
    subset = EncodedBatch(IdRange(10, 5), b"", "pg_binary", keys=(11, 13))
    got = sink_rules.outcome(subset, DataError("value too long"))
    assert got == SendResult(0, (RowError(11, "value too long"), RowError(13, "value too long")))
    whole = EncodedBatch(IdRange(1, 3), b"", "pg_binary")
    assert [r.row_id for r in sink_rules.refused(whole, "x").rejected] == [1, 2, 3]


@pytest.mark.parametrize("err", [LoadError("no table"), TransientLoadError("reset")])
def test_any_other_error_is_raised_not_turned_into_rejections(err: LoadError) -> None:
    """Permanent and transient failures are for the caller to raise (None: no refusal)."""
    assert sink_rules.outcome(EncodedBatch(IdRange(1, 3), b"", "pg_binary"), err) is None


def test_a_new_run_starts_after_the_ledger_else_the_table_else_at_one() -> None:
    """Ledgered batches decide first, then the table's ids; an empty table starts at id 1."""
    assert sink_rules.start_after(501, 9) == 501
    assert sink_rules.start_after(None, 42) == 42
    assert sink_rules.start_after(None, None) == 1


def test_a_closed_sink_is_one_load_error_line() -> None:
    """Used after close: a LoadError naming the sink, never an assert."""
    err = sink_rules.closed("PostgreSQL postgresql://u:***@h/db table t")
    assert type(err) is LoadError and err.message.endswith("table t: sink is closed")
    assert "\n" not in err.message


def test_a_resend_names_the_primary_key_else_the_id_column() -> None:
    """A CrateDB resend's ON CONFLICT names the writer's key when it has one."""
    assert sink_rules.resend_key((), "id") == ("id",)
    assert sink_rules.resend_key(("a", "b"), "id") == ("a", "b")
