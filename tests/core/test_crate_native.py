"""The CrateDB column-at-a-time check and the bulk body built a slice at a time."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.core import crate_native
from async_etl.core.batching import Columns, column_total, row_size
from async_etl.core.exact import crate_row_check, text_bound
from async_etl.core.row_codecs import encode_crate_rows

_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=5),
    st.datetimes(timezones=st.just(UTC)),
)
_rows = st.lists(st.tuples(_values, _values), max_size=30)


@given(_rows, st.integers(min_value=1, max_value=40))
def test_the_body_built_in_slices_is_the_body_dumped_at_once(
    rows: list[tuple[object, object]], every: int
) -> None:
    """``body_parts`` joined is byte for byte ``orjson.dumps`` of the whole bulk body."""
    try:
        whole = crate_native.bulk_body("INSERT INTO t (a, b) VALUES (?, ?)", rows)
    except TypeError:
        return
    parts = crate_native.body_parts("INSERT INTO t (a, b) VALUES (?, ?)", rows, every)
    assert (
        b"".join(parts)
        == whole
        == orjson.dumps({"stmt": "INSERT INTO t (a, b) VALUES (?, ?)", "bulk_args": rows})
    )


@given(_rows)
def test_a_batch_that_passes_has_no_row_the_row_check_refuses(
    rows: list[tuple[object, object]],
) -> None:
    """``plain`` True means the row-by-row check refuses none of the rows."""
    types = ("double precision", "text")
    check = crate_row_check(("a", "b"), types)
    if crate_native.plain(rows, ("double precision", "text")):
        assert not any(check(row) for row in rows)


def test_sub_millisecond_times_and_non_finite_floats_fail_the_check() -> None:
    """A microsecond time or a NaN makes the batch go row by row."""
    at = datetime(2024, 1, 1, tzinfo=UTC)
    assert crate_native.plain([(1, at)], ("bigint", "timestamp with time zone"))
    odd = at.replace(microsecond=1)
    assert not crate_native.plain([(1, at), (2, odd)], ("bigint", "timestamp with time zone"))
    assert not crate_native.plain([(math.nan, "x")], ("double precision", "text"))


_floats = st.one_of(st.floats(), st.floats(min_value=1e300), st.floats(max_value=-1e300), st.none())


@given(st.lists(_floats, min_size=1, max_size=30), st.sampled_from(["double precision", "real"]))
def test_a_float_column_passes_exactly_when_every_value_is_finite(
    column: list[float | None], base: str
) -> None:
    """The summed finiteness check answers as a check of each value (overflowing sums too)."""
    rows = [(v,) for v in column]
    floats = [v for v in column if v is not None]
    expected = not floats or (base != "real" and all(map(math.isfinite, floats)))
    assert crate_native.plain(rows, (base,)) == expected


class _Tag(str):
    """A ``str`` subclass (what a ``StrEnum`` member is)."""


class _Count(int):
    """An ``int`` subclass (what an ``IntEnum`` member is)."""


class _Index:
    """Not an integer, but with ``__index__``: ``array`` takes it, JSON cannot carry it."""

    def __index__(self) -> int:
        return 3


_BASES = (
    "bigint", "integer", "smallint", "byte", "text", "double precision", "real", "numeric",
    "timestamp with time zone", "timestamp without time zone", "",
)  # fmt: skip
_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=-200, max_value=200),
    st.integers(min_value=-(2**33), max_value=2**33).map(_Count),
    st.floats(),
    st.text(max_size=5),
    st.text(max_size=5).map(_Tag),
    st.binary(max_size=5),
    st.datetimes(timezones=st.sampled_from([UTC, None])),
    st.just(_Index()),
)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), bases=st.lists(st.sampled_from(_BASES), min_size=1, max_size=4))
def test_the_column_plan_answers_as_the_row_check_and_sizes_as_row_size(
    data: st.DataObject, bases: list[str]
) -> None:
    """``look`` is plain only when no row is refused, never stricter; its sizes are exact."""
    # columns of one value (a probe's case), one type and another, or anything
    cells = [st.one_of(st.just(data.draw(_ANY)), _ANY) for _ in bases]
    rows = data.draw(st.lists(st.tuples(*cells), min_size=1, max_size=25))
    plan = crate_native.ColumnPlan.of(bases, len(bases))
    plain, size = plan.look(rows)
    check = crate_row_check([f"c{i}" for i in range(len(bases))], bases, zones=True)
    if plain:
        assert not any(check(row) for row in rows)
    generic = Columns.of(rows, len(bases))
    if all(map(crate_native._plain_column, generic.values, generic.kinds, bases)):
        assert plain  # never stricter than the per-column check alone
    assert size == column_total(generic) == sum(map(row_size, rows))
    assert plan.look(rows, check=False) == (False, size)
    assert plan.plain(rows) == plain == crate_native.plain(rows, bases)


def test_str_subclasses_and_integers_that_fit_pass_without_a_type_count() -> None:
    """An enum's ``str`` values, ``bool`` and ``int`` subclasses in an integer column: plain."""
    rows = [(1, _Tag("a")), (True, _Tag("b")), (_Count(2**31 - 1), "c")]
    assert crate_native.plain(rows, ("integer", "text"))
    assert not crate_native.plain([*rows, (2**31, "d")], ("integer", "text"))
    assert not crate_native.plain([(2**53 + 1, "x")], ("double precision", "text"))
    assert crate_native.plain([(2**53 - 1, "x")], ("double precision", "text"))


def test_the_one_pass_probes_answer_at_every_edge_as_the_row_check() -> None:
    """Integer widths at their range edges, float and datetime columns: plain as the row check."""
    at = datetime(2024, 1, 1, tzinfo=UTC)
    naive = at.replace(tzinfo=None)
    edges = {"byte": 8, "smallint": 16, "integer": 32, "bigint": 64}
    cases: list[tuple[str, list[object]]] = []
    for base, bits in edges.items():
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        cases += [(base, [0, low, high]), (base, [0, high + 1]), (base, [0, low - 1])]
        cases += [(base, [1, True, _Count(high), _Index()]), (base, [1, 2.0]), (base, [1, None])]
    cases += [
        ("double precision", [0.5, 1.5]), ("double precision", [0.5, math.inf]),
        ("double precision", [0.5, math.nan]), ("real", [0.5, 1.5]), ("double precision", [0.5, 2]),
        ("double precision", [1e308, 1e308]), ("numeric", [0.5, None]),
        ("timestamp with time zone", [at, at.replace(microsecond=3000)]),
        ("timestamp with time zone", [at, at.replace(microsecond=3001)]),
        ("timestamp with time zone", [at, None]), ("text", [at, at.replace(microsecond=1)]),
        ("timestamp with time zone", [at, naive]), ("timestamp without time zone", [naive, None]),
        ("timestamp without time zone", [naive, at]), ("timestamp without time zone", [at, at]),
    ]  # fmt: skip
    for base, values in cases:
        rows = [(v, "x") for v in values]
        plan = crate_native.ColumnPlan.of((base, "text"), 2)
        refused = any(map(crate_row_check(("a", "b"), (base, "text"), zones=True), rows))
        seen = Columns.of(rows, 2)
        expected = all(map(crate_native._plain_column, seen.values, seen.kinds, (base, "text")))
        plain, size = plan.look(rows)
        assert not (plain and refused), (base, values)  # never looser than the row check
        assert plain or not expected, (base, values)  # never stricter than the column check
        if base != "real" and not {int, float} <= set(map(type, values)):  # else "not sure"
            assert plain == (not refused), (base, values)
        assert size == sum(map(row_size, rows)), (base, values)


def test_a_text_past_varchar_n_is_not_plain_and_the_row_check_refuses_it() -> None:
    """VARCHAR(3): plain only when no str is longer than 3 (str probe or mixed column)."""
    plan = crate_native.ColumnPlan.of(("bigint", "character varying"), 2, (None, 3))
    for notes, plain in [
        (["abc", "é€x", "ab "], True), (["abc", "abc  "], False), (["abcd", "a"], False),
        ([None, "abc"], True), ([None, "abcd"], False), ([1, "abcd"], False),
    ]:  # fmt: skip
        rows = [(i, v) for i, v in enumerate(notes)]
        assert plan.look(rows)[0] == plain == crate_native.plain(rows, plan.bases, (None, 3))
        enc = encode_crate_rows("INSERT", rows, ("id", "note"), ("bigint", "character varying(3)"))
        longer = [i for i, v in enumerate(notes) if isinstance(v, str) and len(v) > 3]
        assert [pos for pos, why in enc.refused if "VARCHAR(3)" in why] == longer
        assert plain == (not longer) or 1 in notes
    assert crate_native.ColumnPlan.of(("text",), 1, (None,)).lengths == ()  # none checked


def test_a_text_not_of_char_n_length_is_not_plain_and_the_row_check_refuses_it() -> None:
    """CHARACTER(3): plain only when every str has exactly 3 characters (str probe or mixed)."""
    bound = text_bound("character(3)")
    plan = crate_native.ColumnPlan.of(("bigint", "character"), 2, (None, bound))
    for codes, plain in [
        (["abc", "é€x", "ab "], True), (["abc", "abc  "], False), (["abcd", "abc"], False),
        (["abc", "ab"], False), ([None, "abc"], True), ([None, "a"], False), ([1, "a"], False),
    ]:  # fmt: skip
        rows = [(i, v) for i, v in enumerate(codes)]
        assert plan.look(rows)[0] == plain == crate_native.plain(rows, plan.bases, (None, bound))
        enc = encode_crate_rows("INSERT", rows, ("id", "code"), ("bigint", "character(3)"))
        off = [i for i, v in enumerate(codes) if isinstance(v, str) and len(v) != 3]
        assert [pos for pos, why in enc.refused if "CHARACTER(3)" in why] == off
        assert plain == (not off) or 1 in codes


_ZONES = st.sampled_from(
    [UTC, None, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
"""Whole-minute offsets: an offset with seconds is written inexactly by orjson and msgspec alike
(orjson rounds it to the minute, msgspec cuts it), and is not this comparison's question."""
_SENT = st.one_of(
    _ANY,
    st.datetimes(timezones=_ZONES).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
    ),
    st.dates(),
    st.uuids(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


def _read_alike(ours: object, theirs: object) -> bool:
    """One value of ``dump_plain``'s body read as the same as orjson's.

    Equal and of the same type (a float by its repr: -0.0 is not 0.0), but for a UTC offset
    written ``Z`` where orjson writes ``+00:00``.
    """
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(map(_read_alike, ours, theirs))
    if type(ours) is not type(theirs):
        return False
    if isinstance(ours, float):
        return repr(ours) == repr(theirs)
    if isinstance(ours, str) and isinstance(theirs, str) and ours != theirs:
        return theirs.endswith("+00:00") and ours == theirs.removesuffix("+00:00") + "Z"
    return ours == theirs


@settings(max_examples=400, deadline=None)
@given(data=st.data(), bases=st.lists(st.sampled_from(_BASES), min_size=1, max_size=4))
def test_a_plain_batch_dumped_by_msgspec_reads_as_the_orjson_body(
    data: st.DataObject, bases: list[str]
) -> None:
    """Every batch ``plain`` passes: msgspec's body reads as orjson's, or both raise TypeError."""
    cells = [st.one_of(st.just(data.draw(_SENT)), _SENT) for _ in bases]
    rows = data.draw(st.lists(st.tuples(*cells), min_size=1, max_size=25))
    if not crate_native.plain(rows, bases):
        return
    stmt = "INSERT INTO t (a) VALUES (?)"
    try:
        theirs = orjson.loads(crate_native.bulk_body(stmt, rows))
    except TypeError:
        with pytest.raises(TypeError):
            crate_native.bulk_body(stmt, rows, crate_native.dump_plain)
        return
    ours = crate_native.bulk_body(stmt, rows, crate_native.dump_plain)
    assert orjson.loads(ours)["stmt"] == theirs["stmt"] == stmt
    assert _read_alike(orjson.loads(ours)["bulk_args"], theirs["bulk_args"])
    every = data.draw(st.integers(min_value=1, max_value=30))
    assert b"".join(crate_native.body_parts(stmt, rows, every, crate_native.dump_plain)) == ours


def test_msgspec_writes_utc_as_z_and_subclasses_as_their_builtin_values() -> None:
    """UTC as ``Z``, other offsets and ms as orjson; subclasses' own values, not overrides."""

    class Loud(str):
        def __str__(self) -> str:
            return "LOUD"

    class Off(int):
        def __int__(self) -> int:
            return 0

        def __index__(self) -> int:
            return 0

    at = datetime(2024, 1, 1, 1, 2, 3, 45000, tzinfo=UTC)
    india = at.astimezone(timezone(timedelta(hours=5, minutes=30)))
    row = (Off(7), Loud("quiet"), 1e64, at, india, at.replace(tzinfo=None), date(2024, 1, 1))
    assert crate_native.dump_plain([row]) == (
        b'[[7,"quiet",1e64,"2024-01-01T01:02:03.045000Z","2024-01-01T06:32:03.045000+05:30",'
        b'"2024-01-01T01:02:03.045000","2024-01-01"]]'
    )
    assert orjson.dumps([row[:3]]) == b'[[7,"quiet",1e+64]]'


def test_a_value_json_cannot_carry_raises_type_error_from_msgspec_as_from_orjson() -> None:
    """An object with ``__index__``, a lone surrogate, a float subclass: TypeError from both."""

    class Real(float):
        """A float subclass (orjson refuses it)."""

    for value in (_Index(), "a\ud800", Real(1.5)):
        with pytest.raises(TypeError):
            orjson.dumps([value])
        with pytest.raises(TypeError):
            crate_native.dump_plain([value])


def test_values_msgspec_writes_and_orjson_refuses_are_never_plain() -> None:
    """bytes, a Decimal, a set, a timedelta: msgspec writes them, orjson refuses; never plain."""
    from decimal import Decimal

    odd = (b"x", bytearray(b"x"), Decimal("1.5"), {1}, timedelta(seconds=1))
    for value in odd:
        with pytest.raises(TypeError):
            orjson.dumps([value])
        crate_native.dump_plain([value])
        for base in _BASES:
            assert not crate_native.plain([(value,)], (base,)), (value, base)
            assert not crate_native.plain([(1,), (value,)], (base,)), (value, base)
            assert not crate_native.plain([("a",), (value,)], (base,)), (value, base)


_ODD = timezone(timedelta(hours=-5, minutes=-30, seconds=-30))
_LMT = ZoneInfo("Europe/Amsterdam")  # local mean time +00:19:32 (+01:19:32 in summer) until 1937
_ODD_AT = [
    datetime(2024, 1, 1, 12, 0, tzinfo=_ODD),
    datetime(1920, 6, 1, 12, 0, tzinfo=_LMT),
    datetime(1920, 1, 1, 12, 0, 0, 5000, tzinfo=_LMT),
    datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=1, microseconds=250_000))),
]
_ODD_IDS = ["seconds", "lmt-summer", "lmt-winter-ms", "whole-ms-micro-offset"]


@pytest.mark.parametrize("at", _ODD_AT, ids=_ODD_IDS)
@pytest.mark.parametrize("base", ["timestamp with time zone", ""])
def test_an_offset_not_of_whole_minutes_is_never_plain(at: datetime, base: str) -> None:
    """JSON encoders write HH:MM offsets: such a datetime is checked row by row, not dumped."""
    rows = [(1, datetime(2024, 1, 1, tzinfo=UTC)), (2, at)]
    assert not crate_native.plain(rows, ["bigint", base] if base else [])


@pytest.mark.parametrize("at", _ODD_AT, ids=_ODD_IDS)
def test_a_zoned_column_sends_an_odd_offset_as_its_utc_instant(at: datetime) -> None:
    """An offset of seconds (or whole-ms microseconds) goes as the same instant in UTC."""
    rows = [(1, datetime(2024, 1, 1, tzinfo=UTC)), (2, at)]
    encoded = encode_crate_rows("INSERT", rows, ["id", "at"], ["bigint", "timestamptz"])
    assert (encoded.kept, encoded.refused) == ((0, 1), ())
    sent = orjson.loads(encoded.payload)["bulk_args"][1][1]
    assert datetime.fromisoformat(sent) == at
    assert sent.endswith("+00:00")


def test_an_offset_with_sub_millisecond_microseconds_is_refused() -> None:
    """+01:00:00.0005 makes an instant CrateDB cannot keep (milliseconds): the row is refused."""
    odd = datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=1, microseconds=500)))
    rows = [(1, datetime(2024, 1, 1, tzinfo=UTC)), (2, odd)]
    encoded = encode_crate_rows("INSERT", rows, ["id", "at"], ["bigint", "timestamptz"])
    assert encoded.kept == (0,)
    assert [(p, "milliseconds" in why) for p, why in encoded.refused] == [(1, True)]


@pytest.mark.parametrize("at", _ODD_AT, ids=_ODD_IDS)
@pytest.mark.parametrize("pg_type", ["", "object", "text"])
def test_an_odd_offset_outside_a_zoned_column_is_refused(at: datetime, pg_type: str) -> None:
    """Where no UTC conversion is the column's rule (untyped, nested, text) the row is refused."""
    value: object = {"when": at} if pg_type == "object" else at
    types = ["bigint", pg_type] if pg_type else []
    encoded = encode_crate_rows("INSERT", [(1, value)], ["id", "v"], types)
    assert encoded.kept == ()
    assert "not a whole number of minutes" in encoded.refused[0][1]


def test_a_zoned_array_sends_odd_offsets_as_utc() -> None:
    """timestamptz[] elements with an offset of seconds go as their UTC instants."""
    at = _ODD_AT[0]
    encoded = encode_crate_rows(
        "INSERT", [(1, [at, None])], ["id", "a"], ["bigint", "timestamptz[]"]
    )
    assert encoded.refused == ()
    sent = orjson.loads(encoded.payload)["bulk_args"][0][1]
    assert datetime.fromisoformat(sent[0]) == at and sent[1] is None


_INTAKE = [  # base type, a value both writers take, one the PostgreSQL writer refuses, why
    ("timestamp with time zone", datetime(2024, 1, 1, tzinfo=UTC), date(2024, 1, 1),
     "timestamptz needs a timezone-aware datetime"),
    ("timestamp without time zone", datetime(2024, 1, 1), date(2024, 1, 1),
     "timestamp (without time zone) needs a naive datetime"),
    ("integer", 1, 1.0, "expected an integer, got float"),
    ("bigint", 2, 2.0, "expected an integer, got float"),
    ("smallint", 3, -0.0, "expected an integer, got float"),
]  # fmt: skip


@pytest.mark.parametrize(("base", "good", "bad", "why"), _INTAKE, ids=[b for b, *_ in _INTAKE])
def test_a_date_for_a_timestamp_or_a_float_for_an_integer_is_refused_per_row(
    base: str, good: object, bad: object, why: str
) -> None:
    """The CrateDB writer refuses what the PostgreSQL writer does: a date as a timestamp, 1.0."""
    rows = [(1, good), (2, bad), (3, None)]
    assert crate_native.plain([(1, good), (3, None)], ("bigint", base))
    for batch in (rows, [(2, bad)], [(2, bad), (3, None)]):
        assert not crate_native.plain(batch, ("bigint", base)), batch  # before: plain
    got = encode_crate_rows("INSERT INTO t (id, v) VALUES (?, ?)", rows, ["id", "v"],
                            ["bigint", base])  # fmt: skip
    assert (got.kept, got.refused) == ((0, 2), ((1, f"column v: {why}"),)), got
    arrays = encode_crate_rows("INSERT INTO t (id, v) VALUES (?, ?)", [(1, [good, bad])],
                               ["id", "v"], ["bigint", f"{base}[]"])  # fmt: skip
    assert arrays.refused == ((0, f"column v: array element: {why}"),), arrays


def test_an_integer_past_a_real_s_exact_range_is_not_plain() -> None:
    """2**24 + 1 in a REAL column goes to the row check (which refuses it); 2**24 - 1 is plain."""
    assert crate_native.plain([(2**24 - 1,), (-(2**24),)], ("real",))
    for rows in ([(2**24 + 1,)], [(1,), (16777217,)], [(-(2**24) - 1,)]):
        assert not crate_native.plain(rows, ("real",))
        size = sum(map(row_size, rows))
        assert crate_native.ColumnPlan.of(["real"], 1).look(rows) == (False, size)
