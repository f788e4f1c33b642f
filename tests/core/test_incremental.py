"""The incremental cursor: windows, their SQL per dialect, and the cursor a run commits."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core import incremental as inc
from async_etl.core import scd_sql_oracle as ora
from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import Chunk
from async_etl.core.incremental import CursorWindow, cursor_kind, run_cursor, tag, untag
from async_etl.core.scd_sql_common import Style, chunk_values
from async_etl.errors import ConfigError
from async_etl.jobs.spec import parse_job

CHUNK = Chunk(1, (10,), (20,))
WINDOW = CursorWindow("updated_at", low=100, high=250, lookback=30)

values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.text(),
)


@st.composite
def runs(draw: st.DrawFn) -> tuple[CursorWindow, int, dict[int, Any]]:
    """A window as ``CursorWindow.plan`` makes them, a chunk count, checkpoints of some chunks."""
    low = draw(st.none() | st.integers(0, 100))
    top = st.integers(low or 0, 200)  # a window is open above only while it is open below
    high = draw(top if low is not None else st.none() | top)
    n = draw(st.integers(1, 12))
    done = draw(st.sets(st.integers(0, n - 1)))
    return CursorWindow("c", low, high), n, {i: high for i in done}


def at_most(a: Any, b: Any) -> bool:
    """``a <= b`` where None is below everything."""
    return a is None or (b is not None and a <= b)


@given(runs())
def test_run_cursor_never_passes_an_unacknowledged_chunk(case: Any) -> None:
    """With any chunk uncheckpointed the run's cursor is at most the window's low."""
    window, n, done = case
    cursor = run_cursor(window, range(n), done)
    if len(done) < n:
        assert at_most(cursor, window.low)
    else:
        assert cursor == window.high
    for value in done.values():
        assert at_most(cursor, value)


@given(runs(), st.data())
def test_run_cursor_only_grows_as_chunks_commit(case: Any, data: st.DataObject) -> None:
    """Checkpointing one more chunk never lowers the run's cursor."""
    window, n, done = case
    extra = data.draw(st.integers(0, n - 1))
    before = run_cursor(window, range(n), done)
    after = run_cursor(window, range(n), {**done, extra: window.high})
    assert at_most(before, after)


def test_run_cursor_with_open_top_commits_nothing() -> None:
    """A window without a top (all cursors NULL) leaves no cursor even when every chunk is done."""
    assert run_cursor(CursorWindow("c", None, None), range(3), dict.fromkeys(range(3))) is None


@given(values)
def test_cursor_values_round_trip_exactly(value: Any) -> None:
    """A cursor stored as tagged JSON comes back equal and of the same type."""
    back = untag(tag(value))
    assert back == value and type(back) is type(value)
    window = CursorWindow("c", value, value)
    assert CursorWindow.from_json(window.to_json()) == window


def test_window_never_goes_below_the_committed_cursor() -> None:
    """A source maximum below the committed cursor (a clock set back) keeps the cursor."""
    window = CursorWindow.plan("c", 500, 420)
    assert (window.low, window.high) == (500, 500)
    assert CursorWindow.plan("c", None, 7).high == 7
    assert CursorWindow.plan("c", 9, None).high == 9
    assert CursorWindow.plan("c", None, None).predicate("q.c", _binder()) is None


def test_window_refuses_values_that_do_not_compare() -> None:
    """A committed cursor of another type than the column (type changed) is a ValueError."""
    with pytest.raises(ValueError, match="does not compare"):
        CursorWindow.plan("c", "abc", 5)
    with pytest.raises(ValueError, match="lookback"):
        CursorWindow.plan("c", "abc", "abd", lookback=5)


@pytest.mark.parametrize(
    ("low", "lookback", "start"),
    [
        (100, 30, 70),
        (Decimal("1.5"), 1, Decimal("0.5")),
        (datetime(2026, 1, 1, tzinfo=UTC), 90, datetime(2025, 12, 31, 23, 58, 30, tzinfo=UTC)),
        (date(2026, 1, 10), 3600, date(2026, 1, 9)),
        (date(2026, 1, 10), 2 * 86_400, date(2026, 1, 8)),
        ("abc", 0, "abc"),
    ],
)
def test_lookback_moves_the_start_back(low: Any, lookback: int, start: Any) -> None:
    """Lookback is seconds for times, whole days (rounded up) for dates, units for numbers."""
    assert CursorWindow("c", low, low, lookback).start == start


@pytest.mark.parametrize(
    ("sql_type", "kind"),
    [
        ("bigint", "number"),
        ("numeric(12,2)", "number"),
        ("double precision", "number"),
        ("timestamp with time zone", "time"),
        ("timestamp(3) without time zone", "time"),
        ("date", "date"),
        ("character varying(20)", "text"),
        ("json", None),
        ("integer[]", None),
        ("time without time zone", None),
        ("boolean", None),
    ],
)
def test_cursor_kinds(sql_type: str, kind: str | None) -> None:
    """Numbers, dates, timestamps and text can be cursors; json, arrays, times, bools cannot."""
    assert cursor_kind(sql_type) == kind


def _binder() -> Any:
    from async_etl.core.scd_sql_common import Binder

    return Binder("pg")


def test_pg_extract_reads_the_window_with_nulls() -> None:
    """PostgreSQL reads `c IS NULL OR (c >= start AND c <= high)` inside the chunk's bounds."""
    st_ = pg.extract_sql(None, "src.t", ["id"], CHUNK, WINDOW)
    assert '(q."updated_at" IS NULL OR (q."updated_at" >= $3 AND q."updated_at" <= $4))' in (
        st_.text
    )
    args = st_.args({**chunk_values(CHUNK), **WINDOW.values("pg")})
    assert args == [10, 20, 70, 250]
    assert pg.extract_sql(None, "src.t", ["id"], CHUNK).params == ("lo0", "hi0")


def test_pg_window_applies_to_cuts_null_keys_and_counts() -> None:
    """Boundary sampling, NULL-key counts and the estimate all see the window only."""
    cuts = pg.boundaries_sql("SELECT * FROM s", None, ["id"], window=WINDOW)
    assert cuts.params == ("n", "cur_lo", "cur_hi") and 'q."updated_at" >= $2' in cuts.text
    relation = pg.source_relation(None, "s")
    nulls = inc.null_keys_sql("pg", relation, ["a", "b"], WINDOW)
    assert nulls.text.endswith(
        'WHERE (q."a" IS NULL OR q."b" IS NULL) AND (q."updated_at" IS NULL OR '
        '(q."updated_at" >= $1 AND q."updated_at" <= $2))'
    )
    rows = inc.null_keys_sql("pg", relation, ["a"], WINDOW, limit=10)
    assert rows.params == ("cur_lo", "cur_hi") and rows.text.endswith("LIMIT 10")
    assert inc.null_keys_sql("pg", relation, ["a"]).params == ()
    count = inc.window_count_sql("pg", relation, CursorWindow("updated_at", 5, None))
    assert count.text.endswith('WHERE (q."updated_at" IS NULL OR (q."updated_at" >= $1))')
    assert inc.max_cursor_sql("pg", relation, "updated_at").text == (
        'SELECT MAX(q."updated_at") FROM "s" AS q'
    )


def _oracle_binds_in_text_order(text: str) -> None:
    numbers = [int(n) for n in re.findall(r":(\d+)", text)]
    assert numbers == list(range(1, len(numbers) + 1))


def test_oracle_extract_reads_the_window_with_binds_in_text_order() -> None:
    """Oracle's chunk read adds the window after the expanded bounds, binds numbered in order."""
    key = Chunk(2, (1, "x"), (5, "a"))
    st_ = ora.extract_sql(None, "SRC.T", ["a", "b"], key, WINDOW)
    assert '(q."UPDATED_AT" IS NULL OR (q."UPDATED_AT" >= :' in st_.text
    _oracle_binds_in_text_order(st_.text)
    args = st_.args({**chunk_values(key), **WINDOW.values("oracle")})
    assert args[-2:] == [70, 250] and len(args) == len(st_.params)


def test_oracle_window_applies_to_cuts_null_keys_and_counts() -> None:
    """Oracle's NTILE cuts bind n first, then the window; counts and NULL keys see the window."""
    cuts = ora.boundaries_sql(None, "SRC.T", ["id"], WINDOW)
    assert cuts.params == ("n", "cur_lo", "cur_hi")
    _oracle_binds_in_text_order(cuts.text)
    assert cuts.text.index("NTILE(:1)") < cuts.text.index('"UPDATED_AT" >= :2')
    relation = ora.source_relation(None, "SRC.T")
    for sql in (
        inc.null_keys_sql("oracle", relation, ["id"], WINDOW),
        inc.null_keys_sql("oracle", relation, ["id"], WINDOW, limit=7),
        inc.window_count_sql("oracle", relation, WINDOW),
    ):
        assert sql.params == ("cur_lo", "cur_hi")
        _oracle_binds_in_text_order(sql.text)
    rows = inc.null_keys_sql("oracle", relation, ["id"], limit=7)
    assert rows.text.endswith("FETCH FIRST 7 ROWS ONLY")
    assert inc.max_cursor_sql("oracle", "(SELECT * FROM t) q", "updated_at").text == (
        'SELECT MAX(q."UPDATED_AT") FROM (SELECT * FROM t) q'
    )


JOB = """
name = "j"
[source]
url = "postgresql://u@h/db"
table = "s"
key = ["id"]
{extra}
[target]
url = "postgresql://u@h/db"
table = "t"
[scd]
type = {kind}
{scd}
"""


@pytest.mark.parametrize(
    ("extra", "kind", "scd", "needle"),
    [
        ('incremental = "ts"', 2, 'deletes = "expire"', "[scd] deletes: 'expire' cannot be used"),
        ('incremental = "ts"', 1, 'deletes = "delete"', "[scd] deletes: 'delete' cannot be used"),
        ("lookback = 10", 2, "", "[source] lookback: only with [source] incremental"),
        ('incremental = "ts"\nlookback = -1', 2, "", "[source] lookback: must be >= 0"),
    ],
)
def test_job_file_refuses_incremental_misuse(extra: str, kind: int, scd: str, needle: str) -> None:
    """Deletes with incremental, a lookback without one or below 0: one line naming the key."""
    with pytest.raises(ConfigError) as info:
        parse_job(JOB.format(extra=extra, kind=kind, scd=scd), env={})
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_job_file_keeps_incremental_settings() -> None:
    """`incremental` and `lookback` reach the spec."""
    spec = parse_job(JOB.format(extra='incremental = "ts"\nlookback = 60', kind=2, scd=""), env={})
    assert (spec.source.incremental, spec.source.lookback) == ("ts", 60)


@pytest.mark.parametrize("dialect", ["pg", "oracle"])
def test_window_reads_keep_a_commented_query_verbatim(dialect: Style) -> None:
    """Window counts and NULL-key reads put a query with a trailing comment in on its own lines."""
    query = "SELECT id, updated_at FROM s -- all rows"
    relation = (pg if dialect == "pg" else ora).source_relation(query, None)
    for sql in (
        inc.window_count_sql(dialect, relation, WINDOW),
        inc.null_keys_sql(dialect, relation, ["id"], WINDOW, limit=3),
    ):
        assert f"(\n{query}\n)" in sql.text
        assert sql.text.index("WHERE", sql.text.index("\n)")) > 0


def test_text_window_top_is_the_databases_maximum() -> None:
    """A text cursor's top is the source's max as its collation orders it, not Python's max."""
    window = CursorWindow.plan("c", "b", "B")  # en-x-icu: 'b' < 'B'; code points: 'B' < 'b'
    assert (window.low, window.high) == ("b", "B")
    with pytest.raises(ValueError, match="does not compare"):
        CursorWindow.plan("c", 5, "abc")


def test_text_run_cursor_stays_low_until_every_chunk_commits() -> None:
    """Collation order unlike code points: one chunk uncheckpointed keeps the cursor at low."""
    window = CursorWindow("c", "b", "B")
    assert run_cursor(window, range(3), {0: "B", 2: "B"}) == "b"
    assert run_cursor(window, range(3), dict.fromkeys(range(3), "B")) == "B"


@pytest.mark.parametrize(
    ("low", "lookback"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), 70_000_000_000),  # past year 1
        (datetime(2026, 1, 1, tzinfo=UTC), 99_999_999_999_999),  # past any timedelta
        (date(2026, 1, 1), 99_999_999_999_999),
    ],
)
def test_lookback_past_year_1_is_a_value_error_naming_it(low: Any, lookback: int) -> None:
    """A lookback moving a date or time cursor before year 1: ValueError, no OverflowError."""
    with pytest.raises(
        ValueError, match=f"lookback {lookback} s moves the cursor .* before year 1"
    ):
        CursorWindow.plan("ts", low, low, lookback)


@pytest.mark.parametrize("kind", ["timestamptz", "date"])
def test_lookback_longer_than_any_date_span_is_refused_up_front(kind: str) -> None:
    """lookback 99999999999999 on a date / time cursor: ConfigError naming [source] lookback."""
    from async_etl.jobs.cursor import check_cursor

    text = JOB.format(extra='incremental = "ts"\nlookback = 99999999999999', kind=2, scd="")
    spec = parse_job(text, env={})
    with pytest.raises(ConfigError, match=r"job j: \[source\] lookback: 99999999999999 s is more"):
        check_cursor(spec, (("id", "integer"), ("ts", kind)))


MAX_TIME = datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "shown", "endless"),
    [
        (float("nan"), None, True),
        (float("inf"), None, True),
        (float("-inf"), None, False),  # sorts first: a cursor there moves on
        (1e308, None, False),
        (Decimal("NaN"), None, True),
        (Decimal("Infinity"), None, True),
        (Decimal("-Infinity"), None, False),
        (Decimal("1e999"), None, False),
        (date.max, "infinity", True),
        (date.max, "9999-12-31", False),  # asyncpg reads both as date.max
        (date.max, None, False),
        (date.min, "-infinity", False),
        (datetime.max, "infinity", True),
        (MAX_TIME, "9999-12-31 23:59:59.999999+00", False),
        ("infinity", "infinity", False),  # a text cursor is never endless
        (2**63 - 1, None, False),
        (None, None, False),
    ],
)
def test_is_endless_tells_nan_and_infinity_from_the_largest_values(
    value: Any, shown: str | None, endless: bool
) -> None:
    """NaN and +infinity are endless; -infinity, 9999-12-31 and text 'infinity' are not."""
    assert inc.is_endless(value, shown) is endless


def test_endless_text_spells_the_cursor_as_postgresql_does() -> None:
    """NaN, Infinity for numbers; infinity for dates and times."""
    shown = [float("nan"), Decimal("NaN"), float("inf"), Decimal("Infinity"), date.max, MAX_TIME]
    assert [inc.endless_text(v) for v in shown] == ["NaN"] * 2 + ["Infinity"] * 2 + ["infinity"] * 2


@pytest.mark.parametrize("top", [float("nan"), Decimal("NaN"), date.max])
def test_an_endless_top_is_the_window_top_above_any_committed_cursor(top: Any) -> None:
    """Python's max keeps 5 over a NaN (a decimal NaN raises): an endless top wins, and is kept."""
    low = date(2026, 1, 1) if isinstance(top, date) else type(top)(5)
    window = CursorWindow.plan("c", low, top, top_endless=True)
    assert window.high is top and window.endless and window.low == low
    data = window.to_json()
    assert data["endless"] is True
    back = CursorWindow.from_json(data)
    assert back.endless and back.low == low and str(back.high) == str(top)


def test_a_window_stored_before_endless_was_kept_knows_a_nan_top_by_its_value() -> None:
    """Old plans: a NaN / infinite number top is endless; a date.max top cannot be told."""
    old = {"column": "c", "low": None, "high": ["float", "nan"], "lookback": 0}
    assert CursorWindow.from_json(old).endless
    old["high"] = ["date", "9999-12-31"]
    assert not CursorWindow.from_json(old).endless
    sentinel = CursorWindow.plan("c", date(2026, 1, 1), date.max)  # 9999-12-31: no top_endless
    assert not sentinel.endless and "endless" not in sentinel.to_json()


@pytest.mark.parametrize("top", [float("nan"), Decimal("NaN"), date.max])
def test_an_endless_run_is_stuck_only_once_every_chunk_is_committed(top: Any) -> None:
    """stuck: all chunks checkpointed under an endless top; run_cursor: that top, else low."""
    low = None if isinstance(top, date) else type(top)(5)
    window = CursorWindow("c", low, top, endless=True)
    every = dict.fromkeys(range(3), top)
    assert inc.stuck(window, range(3), every) and run_cursor(window, range(3), every) is top
    some = {0: top, 2: top}
    assert not inc.stuck(window, range(3), some) and run_cursor(window, range(3), some) == low
    assert not inc.stuck(window, range(0), {})  # no chunk: the cursor did not move
    assert not inc.stuck(CursorWindow("c", low, date.max), range(3), every)


def test_postgresql_max_cursor_can_bring_its_text() -> None:
    """The max with its text: what tells infinity from 9999-12-31; Oracle's stays one column."""
    relation = pg.source_relation(None, "s")
    assert inc.max_cursor_sql("pg", relation, "d", shown=True).text == (
        'SELECT MAX(q."d"), MAX(q."d")::text FROM "s" AS q'
    )
    assert inc.max_cursor_sql("oracle", "T q", "d", shown=True).text == 'SELECT MAX(q."D") FROM T q'


def test_cursor_text_shows_an_endless_top_as_postgresql_does() -> None:
    """An endless top reads 'infinity', not 9999-12-31; other cursors as str gives them."""
    window = CursorWindow("c", date(2026, 1, 1), date.max, endless=True)
    assert inc.cursor_text(window, window.high) == "infinity"
    assert inc.cursor_text(window, window.low) == "2026-01-01"
    assert inc.cursor_text(CursorWindow("c", None, date.max), date.max) == "9999-12-31"


MAX_UTC = datetime.max.replace(tzinfo=UTC)
MIN_UTC = datetime.min.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("low", "high", "cast", "sent"),
    [
        (date(2024, 1, 1), date.max, "date", ("2024-01-01", "9999-12-31")),
        (datetime(2024, 1, 1), datetime.max, "timestamp",
         ("2024-01-01T00:00:00", "9999-12-31T23:59:59.999999")),
        (datetime(2024, 1, 1, tzinfo=UTC), MAX_UTC, "timestamptz",
         ("2024-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00")),
        (date.max, date.max, "date", ("9999-12-31", "9999-12-31")),
        (date.min, date.min, "date", ("-infinity", "0001-01-01")),
        (datetime.min, datetime.min, "timestamp", ("-infinity", "0001-01-01T00:00:00")),
        (MIN_UTC, MIN_UTC, "timestamptz", ("-infinity", "0001-01-01T00:00:00+00:00")),
    ],
)  # fmt: skip
def test_postgresql_gets_date_and_time_bounds_as_text_never_as_infinity(
    low: Any, high: Any, cast: str, sent: tuple[str, str]
) -> None:
    """9999-12-31 is sent as its text (asyncpg binds date.max as 'infinity'), cast to its type."""
    window = CursorWindow.plan("c", low, high)
    st_ = inc.window_count_sql("pg", pg.source_relation(None, "s"), window)
    assert st_.text.endswith(f'(q."c" >= $1::text::{cast} AND q."c" <= $2::text::{cast}))')
    assert st_.args(window.values("pg")) == list(sent)
    assert window.values("oracle") == {"cur_lo": low, "cur_hi": high}
    ora_ = inc.window_count_sql("oracle", "T q", window)
    assert "::" not in ora_.text and ora_.args(window.values("oracle")) == [low, high]


def test_an_endless_top_is_sent_as_infinity_and_numbers_as_they_are() -> None:
    """Only an endless window's top is 'infinity'; numbers and text keep their value."""
    endless = CursorWindow.plan("c", date.max, date.max, top_endless=True)
    assert endless.values("pg") == {"cur_lo": "9999-12-31", "cur_hi": "infinity"}
    assert WINDOW.values("pg") == {"cur_lo": 70, "cur_hi": 250}
    assert WINDOW.predicate("q.c", _binder()) == "(q.c IS NULL OR (q.c >= $1 AND q.c <= $2))"
    text = CursorWindow("c", "a", "b")
    assert text.values("pg") == {"cur_lo": "a", "cur_hi": "b"}
    assert "::" not in (text.predicate("q.c", _binder()) or "")


def test_a_window_stored_before_bounds_went_as_text_sends_them_as_text() -> None:
    """A run's plan as stored today (tagged values) resumes with its bounds sent as text."""
    stored = {"column": "c", "low": ["date", "9999-12-31"], "high": ["date", "9999-12-31"],
              "lookback": 0}  # fmt: skip
    window = CursorWindow.from_json(stored)
    assert window.values("pg") == {"cur_lo": "9999-12-31", "cur_hi": "9999-12-31"}
    assert "$1::text::date" in (window.predicate("q.c", _binder()) or "")


def _node(kind: str, *children: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A plan node as ``EXPLAIN (FORMAT JSON)`` writes it (PostgreSQL 15)."""
    node: dict[str, Any] = {"Node Type": kind, **fields}
    if children:
        node["Plans"] = list(children)
    return node


def _under(side: str, node: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``node`` as a child on ``side`` (its ``Parent Relationship``)."""
    return {**node, "Parent Relationship": side, **fields}


def _plan(root: dict[str, Any]) -> list[dict[str, Any]]:
    """The EXPLAIN document of a plan whose root is ``root``."""
    return [{"Plan": root}]


SCAN = _node("Seq Scan", **{"Relation Name": "ev"})
LIMITED = _node("Limit", _under("Outer", _node("Sort", _under("Outer", SCAN))))

CAPPED_PLANS = [  # the plans PostgreSQL 15 makes of the queries in the comments
    # SELECT * FROM (SELECT * FROM ev ORDER BY id LIMIT 5) s
    (_plan(LIMITED), "a LIMIT / OFFSET / FETCH FIRST"),
    # SELECT * FROM ev TABLESAMPLE SYSTEM (50)
    (_plan(_node("Sample Scan", **{"Relation Name": "ev"})), "a TABLESAMPLE on ev"),
    # WITH f AS MATERIALIZED (... LIMIT 5) SELECT * FROM f
    (
        _plan(
            _node(
                "CTE Scan",
                _under("InitPlan", LIMITED, **{"Subplan Name": "CTE f"}),
                **{"CTE Name": "f"},
            )
        ),
        "a LIMIT / OFFSET / FETCH FIRST",
    ),
    # SELECT s.* FROM (... LIMIT 1000) s JOIN d USING (id): a merge join's outer side
    (
        _plan(
            _node(
                "Merge Join",
                _under("Outer", _node("Sort", _under("Outer", LIMITED))),
                _under("Inner", _node("Sort", _under("Outer", SCAN))),
            )
        ),
        "a LIMIT / OFFSET / FETCH FIRST",
    ),
    # SELECT * FROM ev WHERE id IN (SELECT id FROM ev ORDER BY c LIMIT 100): a hash's side
    (
        _plan(
            _node(
                "Hash Join",
                _under("Outer", SCAN),
                _under(
                    "Inner",
                    _node(
                        "Hash", _under("Outer", _node("Subquery Scan", _under("Subquery", LIMITED)))
                    ),
                ),
            )
        ),
        "a LIMIT / OFFSET / FETCH FIRST",
    ),
    # SELECT * FROM ev UNION ALL SELECT * FROM (... LIMIT 3) s
    (
        _plan(_node("Append", _under("Member", SCAN), _under("Member", LIMITED))),
        "a LIMIT / OFFSET / FETCH FIRST",
    ),
]


@pytest.mark.parametrize(("plan", "named"), CAPPED_PLANS)
def test_row_cap_finds_a_limit_or_sample_the_output_rows_come_through(
    plan: list[dict[str, Any]], named: str
) -> None:
    """A Limit / Sample Scan under a subquery, a CTE, a join side or an append is a cap."""
    assert inc.row_cap(plan) == named
    assert inc.row_cap(json.dumps(plan)) == named


UNCAPPED_PLANS = [
    _plan(SCAN),  # SELECT * FROM ev, and (SELECT * FROM ev OFFSET 0) s: no Limit node
    # SELECT ... FROM ev CROSS JOIN LATERAL (SELECT ... WHERE d.id = ev.id ... LIMIT 1) l
    _plan(_node("Nested Loop", _under("Outer", SCAN), _under("Inner", LIMITED))),
    # SELECT ev.*, (SELECT d.x FROM d WHERE d.id = ev.id LIMIT 1) FROM ev
    _plan(_node("Seq Scan", _under("SubPlan", LIMITED, **{"Subplan Name": "SubPlan 1"}))),
    # a materialized CTE read only by a scalar subquery: its body is no path of the output
    _plan(
        _node(
            "Seq Scan",
            _under("InitPlan", LIMITED, **{"Subplan Name": "CTE f"}),
            _under("SubPlan", _node("CTE Scan", **{"CTE Name": "g"})),
        )
    ),
]


@pytest.mark.parametrize("plan", UNCAPPED_PLANS)
def test_row_cap_ignores_per_row_limits(plan: list[dict[str, Any]]) -> None:
    """A LATERAL or scalar per-row LIMIT, or no Limit node at all, caps nothing."""
    assert inc.row_cap(plan) is None


@pytest.mark.parametrize("doc", [[], "not json", [{"no plan": 1}], None, 7])
def test_row_cap_of_an_unknown_document_is_none(doc: Any) -> None:
    """A document that is not PostgreSQL's plan is not read as a cap (nor an error)."""
    assert inc.row_cap(doc) is None


def test_capped_refusal_names_the_cap_the_column_and_the_way_out() -> None:
    """One line: what picks the rows, the cursor column, and what to do instead."""
    line = inc.capped_refusal("updated_at", "a TABLESAMPLE on ev")
    assert "\n" not in line and line.startswith("[source] incremental: ")
    assert "a TABLESAMPLE on ev" in line and "window on updated_at" in line
    assert "remove it" in line and "LATERAL" in line


HIGHEST = [date.max, datetime.max, datetime.max.replace(tzinfo=UTC)]


@pytest.mark.parametrize("top", HIGHEST)
def test_a_window_says_whether_its_9999_12_31_top_was_infinity(top: Any) -> None:
    """A date or time top at the maximum is stored as endless or finite, never neither."""
    real = CursorWindow.plan("c", None, top).to_json()
    endless = CursorWindow.plan("c", None, top, top_endless=True).to_json()
    assert real.get("finite") is True and "endless" not in real
    assert endless.get("endless") is True and "finite" not in endless
    assert not inc.unsure(real, top) and not inc.unsure(endless, top)
    assert CursorWindow.from_json(real) == CursorWindow.plan("c", None, top)
    assert "finite" not in CursorWindow.plan("c", None, date(2026, 1, 1)).to_json()


@pytest.mark.parametrize("top", HIGHEST)
def test_a_9999_12_31_cursor_stored_by_older_code_is_unsure(top: Any) -> None:
    """Stored without endless / finite (before 2b4cc23), 9999-12-31 may have been infinity."""
    old = {"column": "c", "low": None, "high": tag(top), "lookback": 0}
    assert inc.unsure(old, untag(old["high"]))
    assert not inc.unsure(old, date(2026, 1, 1)) and not inc.unsure(old, 5)
    assert not inc.unsure(old, datetime(9999, 12, 31))


@pytest.mark.parametrize(
    ("value", "cast", "bound"),
    [(date.max, "date", "9999-12-31"), (datetime.max, "timestamp", "9999-12-31T23:59:59.999999"),
     (datetime.max.replace(tzinfo=UTC), "timestamptz", "9999-12-31T23:59:59.999999+00:00")],
)  # fmt: skip
def test_holds_sql_binds_the_value_as_its_text(value: Any, cast: str, bound: str) -> None:
    """The look-up compares with the value's own text, never asyncpg's 'infinity'."""
    st, values = inc.holds_sql('"src"."ev" AS q', "c", value)
    assert (
        st.text == f'SELECT EXISTS (SELECT 1 FROM "src"."ev" AS q WHERE q."c" = $1::text::{cast})'
    )
    assert st.args(values) == [bound]
