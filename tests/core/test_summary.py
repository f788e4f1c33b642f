from __future__ import annotations

from typing import Any

import pytest

from async_etl.core.summary import Summary, settle
from tests.keys import SUMMARY_KEYS


def _summary(**over: Any) -> Summary:
    base: dict[str, Any] = dict(
        sink="null://",
        mode="async",
        records=1000,
        generated=1000,
        seconds=2.0,
        batches=1,
        batch_size=1000,
        concurrency=1,
        generators=1,
        errors=0,
        retries=0,
        rejected=0,
        undelivered=0,
        latency_ms={"p50": 1.0, "p95": 2.0, "p99": 3.0},
        cpu_percent=50.0,
        peak_rss_mb=40.0,
    )
    base.update(over)
    return Summary(**base)


def test_json_form_has_the_documented_keys() -> None:
    """to_dict carries every key the issue promises, with rows_per_s computed."""
    data = _summary().to_dict()
    assert data.keys() >= SUMMARY_KEYS
    assert data["rows_per_s"] == 500.0
    assert set(data["latency_ms"]) == {"p50", "p95", "p99"}


def test_ok_only_when_every_row_is_accounted_for_and_reconciled() -> None:
    """Rejections, give-ups, gaps or a reconcile mismatch make the run not ok."""
    assert _summary().ok and _summary(reconciled=1000).ok
    assert not _summary(rejected=1, records=999).ok
    assert not _summary(undelivered=5, records=995).ok
    assert not _summary(reconciled=999).ok
    assert _summary(reconciled=999).problems() == [
        "target holds 999 rows of the run, 1000 reported"
    ]


def test_ray_runs_show_actors_losses_and_rows_per_actor() -> None:
    """A --ray summary prints the actors, the lost ones, re-sent units and rows/s per actor."""
    ray = {
        "actors": 3,
        "lost_actors": ["actor-1"],
        "resent_units": 2,
        "rows_per_s_by_actor": {"actor-0": 1234.4, "actor-2": 99.0},
    }
    rows = dict(_summary(extra={"ray": ray}).table_rows())
    assert rows["ray actors (lost / units re-sent)"] == "3 (1 / 2)"
    assert rows["rows/s by actor"] == "actor-0 1,234, actor-2 99"


def test_rejected_rows_problem_names_the_first_reasons() -> None:
    """The rejected-rows line carries the sink's first reasons, not only a count."""
    reasons = {"value too long for type character varying(3)": 900, "a": 60, "b": 30, "c": 10}
    summary = _summary(records=0, generated=1000, rejected=1000, reasons=reasons)
    assert summary.problems()[0] == (
        "1000 rows rejected by the sink: 900 x value too long for type character varying(3); "
        "60 x a; 30 x b"
    )


@pytest.mark.parametrize(("counts", "found", "expected"), [
    ((1000, 600, 0, 0), 0, (0, 400)),  # the count finds none of the 400: all undelivered
    ((1000, 600, 0, 0), 100, (100, 300)),  # 100 cancelled in flight did land: delivered
    ((1000, 600, 50, 10), None, (0, 340)),  # no count: none confirmed
    ((1000, 600, 0, 0), 2000, (400, 0)),  # a count past every row left confirms at most them
    ((1000, 990, 0, 10), 0, (0, 0)),  # every row has an outcome already
])  # fmt: skip
def test_settle_gives_every_row_an_abort_left_an_outcome(
    counts: tuple[int, int, int, int], found: int | None, expected: tuple[int, int]
) -> None:
    """Rows without an answer: landed when the count of their ids finds them, else undelivered."""
    assert settle(*counts, found)[:2] == expected


def test_settle_keeps_a_landed_given_up_batch_apart_from_never_sent_rows() -> None:
    """2,000 given up but landed, 4,000 never sent: those are delivered, none of these is."""
    # 10,000 generated, 4,000 answered delivered, 2,000 given up (their COMMIT landed, the
    # answer was lost), 4,000 never sent (an abort).  The target holds 6,000 of the run's ids:
    # the old rule (reconciled - delivered = 2,000 'landed' of the 4,000 left) claimed 2,000
    # never-sent rows delivered and left the landed 2,000 undelivered.
    decided = settle(10_000, 4_000, 0, 2_000, found=0, found_given_up=2_000)
    assert decided == (0, 4_000, 2_000)
    assert (decided.landed, decided.unconfirmed, decided.recovered) == (0, 4_000, 2_000)
    assert settle(10_000, 4_000, 0, 2_000, found=0, found_given_up=None).recovered == 0
    assert settle(10_000, 4_000, 0, 2_000, found=0, found_given_up=9_999).recovered == 2_000


def test_an_aborted_runs_undelivered_rows_say_why() -> None:
    """Rows an abort left unconfirmed are told apart from those whose retries ran out."""
    summary = _summary(records=600, undelivered=400, interrupted=300, reconciled=600)
    problems = summary.problems()
    assert problems[0] == "100 rows not delivered after retries"
    assert problems[1].startswith("300 rows not delivered: the run was aborted before the sink")
    assert len(problems) == 2 and not summary.ok


def test_rows_the_recount_did_not_reach_are_undelivered_and_said_so() -> None:
    """Uncounted rows stay undelivered, and the problems name them and why."""
    summary = _summary(records=600, undelivered=400, interrupted=300, uncounted=250)
    problems = summary.problems()
    assert problems[2].startswith("250 of the undelivered rows were not looked up: the end-of")
    assert "request_timeout" in problems[2] and not summary.ok
    assert summary.to_dict()["uncounted"] == 250
