"""CrateDB HTTP protocol, sans I/O: endpoints, bodies, every response shape, bulk verdicts."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.crate_protocol import (
    NO_DETAIL,
    BulkVerdict,
    CrateTable,
    Endpoint,
    ItemResult,
    Response,
    build_request,
    error_of,
    judge_bulk,
    mask_url,
    maybe_gzip,
    parse_response,
    parse_retry_after,
    send_result,
    server_version_of,
    subset_body,
    verdict_for,
)
from async_etl.errors import (
    ConfigError,
    DataError,
    ErrorKind,
    LoadError,
    TransientLoadError,
)
from async_etl.typing import EncodedBatch, IdRange, RowError, SendResult

# -- endpoint ---------------------------------------------------------------------------------


def test_endpoint_full_url() -> None:
    """User, password, port and ?schema= are all taken from the URL."""
    ep = Endpoint.parse("https://crate:s%40cret@db.example:4201/?schema=bench")
    assert (ep.scheme, ep.host, ep.port) == ("https", "db.example", 4201)
    assert (ep.user, ep.password, ep.schema) == ("crate", "s@cret", "bench")
    assert ep.sql_url == "https://db.example:4201/_sql"
    assert ep.display == "https://crate@db.example:4201"
    headers = ep.headers()
    assert headers["Default-Schema"] == "bench"
    assert base64.b64decode(headers["Authorization"].removeprefix("Basic ")) == b"crate:s@cret"


def test_endpoint_defaults() -> None:
    """crate:// means http, the port defaults to 4200, no auth or schema header by default."""
    ep = Endpoint.parse("crate://localhost")
    assert ep.base_url == "http://localhost:4200"
    assert "Authorization" not in ep.headers()
    assert "Default-Schema" not in ep.headers()


def test_endpoint_user_without_password() -> None:
    """A user without a password authenticates as ``user:`` (CrateDB's default superuser)."""
    ep = Endpoint.parse("http://crate@h")
    assert base64.b64decode(ep.headers()["Authorization"][6:]) == b"crate:"


def test_endpoint_ipv6() -> None:
    """An IPv6 host is bracketed again in the request URL."""
    assert Endpoint.parse("http://[::1]:4300").sql_url == "http://[::1]:4300/_sql"


def test_endpoint_repr_hides_password() -> None:
    """Neither repr nor display contains the password."""
    ep = Endpoint.parse("http://u:hunter2@h:1")
    assert "hunter2" not in repr(ep)
    assert "hunter2" not in ep.display


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:hunter2@h:5432",
        "http://u:hunter2@h:notaport",
        "http://u:hunter2@h:99999",
        "http://u:hunter2@h:0",
        "http://u:hunter2@:4200",
        "http://u:hunter2@h:4200?schema=a&foo=1",
        "http://u:hunter2@h:4200?schema=",
        "http://u:hunter2@h:4200?schema=a&schema=b",
        "http://u:hun/ter2@h:4200",
        "u:hunter2@h:4200",
    ],
)
def test_endpoint_rejects_bad_urls_with_masked_password(url: str) -> None:
    """A malformed URL raises ConfigError naming the URL with the password masked."""
    with pytest.raises(ConfigError) as info:
        Endpoint.parse(url)
    message = info.value.message
    assert "hunter2" not in message
    assert "hun/" not in message
    assert "***" in message
    assert "\n" not in message


def test_mask_url_cases() -> None:
    """mask_url hides the password and leaves password-less URLs alone."""
    assert mask_url("http://u:pw@h:1/x?schema=s") == "http://u:***@h:1/x?schema=s"
    assert mask_url("http://u@h:1") == "http://u@h:1"
    assert mask_url("http://h:4200") == "http://h:4200"
    assert mask_url("http://u:p@w@h") == "http://u:***@h"


# -- requests ---------------------------------------------------------------------------------


def test_build_request_shapes() -> None:
    """Bodies carry stmt plus args or bulk_args, never both non-empty."""
    assert orjson.loads(build_request("SELECT 1")) == {"stmt": "SELECT 1"}
    assert orjson.loads(build_request("SELECT ?", [1])) == {"stmt": "SELECT ?", "args": [1]}
    bulk = orjson.loads(build_request("INSERT", bulk_args=[[1], [2]]))
    assert bulk == {"stmt": "INSERT", "bulk_args": [[1], [2]]}
    with pytest.raises(ValueError):
        build_request("x", [1], [[1]])


def test_maybe_gzip_threshold() -> None:
    """Bodies at or above the threshold are gzipped with a Content-Encoding header."""
    small = b"x" * 100
    assert maybe_gzip(small, 101) == (small, {})
    body, headers = maybe_gzip(small, 100)
    assert headers == {"Content-Encoding": "gzip"}
    assert gzip.decompress(body) == small
    assert maybe_gzip(small, 0) == (small, {})


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("3", 3.0), (" 1.5 ", 1.5), ("-4", 0.0), ("soon", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    """Retry-After as delta-seconds is read, nonsense ignored."""
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    """Retry-After as an HTTP date is relative to now."""
    now = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now=now) == 10.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT") is None


# -- responses --------------------------------------------------------------------------------


def _parse(status: int, doc: Any, ctype: str = "application/json") -> Response:
    return parse_response(status, orjson.dumps(doc), ctype)


def test_parse_normal_result() -> None:
    """A normal result gives cols, rows, rowcount and duration, and is not a failure."""
    r = _parse(200, {"cols": ["id", "n"], "col_types": [10, 4], "rows": [[1, "a"]],
                     "rowcount": 1, "duration": 1.93})  # fmt: skip
    assert (r.cols, r.rows, r.rowcount, r.duration_ms) == (("id", "n"), ((1, "a"),), 1, 1.93)
    assert r.results is None
    assert not r.failed
    assert r.kind is None
    assert error_of(r, "x") is None


def test_parse_bulk_every_item_shape() -> None:
    """Bulk items: ok, bare -2, -2 with error object, -2 with legacy error_message."""
    r = _parse(200, {"cols": [], "duration": 2.1, "results": [
        {"rowcount": 1},
        {"rowcount": -2},
        {"rowcount": -2, "error": {"code": 4091, "message": "DuplicateKeyException[A]"}},
        {"rowcount": -2, "error_message": "DuplicateKeyException[B]"},
        {"rowcount": -2, "error_message": "UnavailableShardsException[C]"},
        {"rowcount": -2, "error_message": "SomethingElse[D]"},
    ]})  # fmt: skip
    assert not r.failed
    assert r.results == (
        ItemResult(1),
        ItemResult(-2),
        ItemResult(-2, 4091, "DuplicateKeyException[A]"),
        ItemResult(-2, 4091, "DuplicateKeyException[B]"),
        ItemResult(-2, 5002, "UnavailableShardsException[C]"),
        ItemResult(-2, None, "SomethingElse[D]"),
    )


def test_parse_empty_bulk() -> None:
    """An empty bulk answers an empty results list."""
    r = _parse(200, {"cols": [], "duration": 0.1, "results": []})
    assert r.results == ()


TOP_LEVEL = [
    (400, 4000, ErrorKind.DB_PERMANENT, LoadError),
    (400, 4001, ErrorKind.DB_PERMANENT, LoadError),
    (401, 4011, ErrorKind.DB_PERMANENT, LoadError),
    (403, 4031, ErrorKind.DB_PERMANENT, LoadError),
    (404, 4041, ErrorKind.DB_PERMANENT, LoadError),
    (404, 4045, ErrorKind.DB_PERMANENT, LoadError),
    (409, 4091, ErrorKind.DATA, DataError),
    (409, 4093, ErrorKind.DB_PERMANENT, LoadError),
    (429, 4290, ErrorKind.DB_TRANSIENT, TransientLoadError),
    (500, 5000, ErrorKind.DB_TRANSIENT, TransientLoadError),
    (500, 5002, ErrorKind.DB_TRANSIENT, TransientLoadError),
    (500, 5003, ErrorKind.DB_TRANSIENT, TransientLoadError),
    (503, 5030, ErrorKind.DB_TRANSIENT, TransientLoadError),
    (503, 5033, ErrorKind.DB_TRANSIENT, TransientLoadError),
]


@pytest.mark.parametrize(("status", "code", "kind", "exc"), TOP_LEVEL)
def test_top_level_errors(status: int, code: int, kind: ErrorKind, exc: type[LoadError]) -> None:
    """A top-level error object at each status classifies and becomes the right exception."""
    message = "SQLParseException[line 1:1: mismatched\ninput]"
    r = _parse(status, {"error": {"message": message, "code": code}, "error_trace": "x"})
    assert r.failed
    assert (r.error_code, r.kind) == (code, kind)
    err = error_of(r, "CrateDB http://u@h:4200")
    assert type(err) is exc
    assert err.kind is kind
    assert err.message == f"CrateDB http://u@h:4200: {status} {code} {' '.join(message.split())}"


def test_plain_text_401() -> None:
    """The plain-text 401 becomes a permanent error with its text on one line."""
    r = parse_response(401, b'trust authentication failed for user "bob"\n', "text/plain")
    assert r.failed
    assert r.kind is ErrorKind.DB_PERMANENT
    assert r.reason == '401 trust authentication failed for user "bob"'


def test_proxy_html_page() -> None:
    """A proxy's HTML error page becomes one transient line with its status."""
    page = b"<html><head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>"
    r = parse_response(502, page, "text/html")
    assert r.kind is ErrorKind.DB_TRANSIENT
    assert r.reason == "502 502 Bad Gateway nginx"


def test_retry_after_carried() -> None:
    """retry_after given to parse_response ends up on the transient error."""
    r = parse_response(503, b"", "", retry_after=2.5)
    err = error_of(r, "w")
    assert isinstance(err, TransientLoadError)
    assert err.retry_after == 2.5
    assert "503 empty body" in err.message


def test_non_json_200_is_a_failure() -> None:
    """A 200 whose body is not JSON is a permanent failure, not a success."""
    r = parse_response(200, b"OK", "text/plain")
    assert r.failed
    assert r.kind is ErrorKind.DB_PERMANENT


def test_json_error_without_detail() -> None:
    """A non-200 JSON answer without an error object still fails with its status."""
    r = _parse(503, {"ok": False})
    assert r.reason == "503 HTTP 503 without error detail"


# -- bulk verdicts ----------------------------------------------------------------------------

DUP = ItemResult(-2, 4091, "DuplicateKeyException[x]")
SHARD = ItemResult(-2, 5002, "UnavailableShardsException[x]")
BARE = ItemResult(-2)
OK = ItemResult(1)
ZERO = ItemResult(0)
CHECK = ItemResult(-2, 4000, "CHECK failed")


def _bulk(*items: ItemResult) -> Response:
    return Response(status=200, results=items)


def test_all_delivered() -> None:
    """Every rowcount 1 (or -1, unknown) is delivered."""
    v = judge_bulk(3, _bulk(OK, OK, ItemResult(-1)), attempt=1, upsert=False)
    assert (v.delivered, v.retry, v.rejected) == (3, (), ())


def test_transient_items_retry() -> None:
    """Items failing with 5002/5003/503x are retried with a reason naming the code."""
    v = judge_bulk(4, _bulk(OK, SHARD, ItemResult(-2, 5031, "no master"), OK),
                   attempt=1, upsert=False)  # fmt: skip
    assert (v.delivered, v.retry, v.rejected) == (2, (1, 2), ())
    assert v.retry_reason.startswith("2 of 4 items failed transiently: 5002")


def test_duplicate_first_attempt_rejected() -> None:
    """A duplicate key on attempt 1 is rejected with its code and message."""
    v = judge_bulk(2, _bulk(OK, DUP), attempt=1, upsert=False)
    assert v.rejected == ((1, "4091 DuplicateKeyException[x]"),)
    assert v.delivered == 1


def test_duplicate_on_resend_counts_delivered() -> None:
    """On attempt > 1 a duplicate key is our own earlier write: delivered."""
    v = judge_bulk(2, _bulk(DUP, DUP), attempt=2, upsert=False)
    assert (v.delivered, v.retry, v.rejected) == (2, (), ())


def test_duplicate_under_upsert_retries() -> None:
    """Under an upsert a duplicate key is a concurrent-insert race: retry."""
    v = judge_bulk(1, _bulk(DUP), attempt=2, upsert=True)
    assert v.retry == (0,)


def test_rowcount_zero() -> None:
    """rowcount 0 (ON CONFLICT DO NOTHING) is 'already present' on attempt 1, delivered after."""
    assert judge_bulk(1, _bulk(ZERO), attempt=1, upsert=True).rejected == (
        (0, "already present (rowcount 0)"),
    )
    assert judge_bulk(1, _bulk(ZERO), attempt=3, upsert=True).delivered == 1


def test_bare_minus_two_rules() -> None:
    """A bare -2 is retried beside a transient sibling, and otherwise left undecided."""
    assert judge_bulk(3, _bulk(SHARD, BARE, OK), attempt=1, upsert=False).retry == (0, 1)
    resent = judge_bulk(2, _bulk(DUP, BARE), attempt=2, upsert=False)
    assert (resent.delivered, resent.retry, resent.undecided) == (1, (), (1,))
    alone = judge_bulk(2, _bulk(OK, BARE), attempt=2, upsert=False)
    assert (alone.rejected, alone.undecided) == ((), (1,))
    first = judge_bulk(2, _bulk(DUP, BARE), attempt=1, upsert=False)
    assert first.rejected == ((0, "4091 DuplicateKeyException[x]"),)
    assert first.undecided == (1,) and not first.complete


def test_idempotent_reads_zero_and_duplicates_as_applied() -> None:
    """idempotent=True: rowcount 0 and a duplicate key are delivered on the first attempt."""
    v = judge_bulk(3, _bulk(ZERO, DUP, OK), attempt=1, upsert=False, idempotent=True)
    assert (v.delivered, v.retry, v.rejected, v.undecided) == (3, (), (), ())


def test_other_codes_and_rowcounts_rejected() -> None:
    """Permanent item codes and impossible rowcounts are rejected with a reason."""
    v = judge_bulk(2, _bulk(CHECK, ItemResult(-7)), attempt=1, upsert=False)
    assert v.rejected == ((0, "4000 CHECK failed"), (1, "unexpected rowcount -7"))


def test_legacy_single_item_409() -> None:
    """Before 5.10.11 a failed single-item bulk answered a top-level 409/4091."""
    r = _parse(409, {"error": {"code": 4091, "message": "DuplicateKeyException[x]"}})
    assert judge_bulk(1, r, attempt=1, upsert=False).rejected == (
        (0, "4091 DuplicateKeyException[x]"),
    )
    assert judge_bulk(1, r, attempt=2, upsert=False).delivered == 1
    assert error_of(r, "w", bulk_rows=1) is None
    assert isinstance(error_of(r, "w", bulk_rows=2), DataError)


def test_legacy_single_item_not_null() -> None:
    """Before 5.10.11 a single-item NOT NULL failure is a top-level 400/4003: read as the item."""
    message = "ColumnValidationException[Validation failed for note: Cannot insert null]"
    r = _parse(400, {"error": {"code": 4003, "message": message}})
    assert error_of(r, "w", bulk_rows=1) is None
    assert judge_bulk(1, r, attempt=1, upsert=False).rejected == ((0, f"4003 {message}"),)
    assert error_of(r, "w", bulk_rows=2) is not None
    analysis = _parse(400, {"error": {"code": 4000, "message": "SQLParseException[x]"}})
    assert error_of(analysis, "w", bulk_rows=1) is not None


def test_judge_refuses_non_bulk_and_mismatch() -> None:
    """judge_bulk raises on a whole-request failure or a wrong number of results."""
    with pytest.raises(ValueError, match="not a bulk response"):
        judge_bulk(2, _parse(400, {"error": {"code": 4000, "message": "m"}}), attempt=1,
                   upsert=False)  # fmt: skip
    with pytest.raises(ValueError, match="2 results for 3 rows"):
        judge_bulk(3, _bulk(OK, OK), attempt=1, upsert=False)


ITEMS = st.sampled_from(
    [OK, ItemResult(-1), ZERO, DUP, SHARD, BARE, CHECK, ItemResult(-2, 5003, "f"),
     ItemResult(-2, None, "legacy"), ItemResult(-5)]
)  # fmt: skip


@given(st.lists(ITEMS, max_size=60), st.integers(1, 4), st.booleans())
def test_verdict_partitions_the_batch(items: list[ItemResult], attempt: int, upsert: bool) -> None:
    """For any item mix, delivered + retried + rejected + undecided == rows, indices disjoint."""
    v = judge_bulk(len(items), _bulk(*items), attempt=attempt, upsert=upsert)
    retry, rejected, undecided = set(v.retry), {i for i, _ in v.rejected}, set(v.undecided)
    assert v.delivered + len(v.retry) + len(v.rejected) + len(v.undecided) == len(items)
    assert len(retry) == len(v.retry)
    assert len(rejected) == len(v.rejected)
    assert not retry & rejected and not undecided & (retry | rejected)
    assert retry | rejected | undecided <= set(range(len(items)))
    assert list(v.retry) == sorted(v.retry)
    assert bool(v.retry_reason) == bool(v.retry)


# -- subsets ----------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 19), unique=True).map(sorted))
def test_subset_body_selects_exactly(indices: list[int]) -> None:
    """subset_body keeps the statement and exactly the chosen items, with their ids."""
    rows = [[100 + i, f"n{i}", i * 0.5, {"k": [i]}] for i in range(20)]
    payload = orjson.dumps({"stmt": "INSERT INTO t VALUES (?, ?, ?, ?)", "bulk_args": rows})
    body, ids = subset_body(payload, indices)
    doc = orjson.loads(body)
    assert doc == {"stmt": "INSERT INTO t VALUES (?, ?, ?, ?)",
                   "bulk_args": [rows[i] for i in indices]}  # fmt: skip
    assert ids == tuple(100 + i for i in indices)


@pytest.mark.parametrize("indices", [[5], [-1]])
def test_subset_body_out_of_range(indices: list[int]) -> None:
    """An index outside the batch raises ValueError."""
    payload = orjson.dumps({"stmt": "s", "bulk_args": [[1], [2]]})
    with pytest.raises(ValueError):
        subset_body(payload, indices)


def test_subset_body_not_bulk() -> None:
    """A payload that is not a bulk body raises ValueError."""
    with pytest.raises(ValueError):
        subset_body(b'{"stmt": "s"}', [0])


# -- the sink's decisions ---------------------------------------------------------------------


def _payload(ids: list[int]) -> EncodedBatch:
    body = orjson.dumps({"stmt": "INSERT INTO t (id) VALUES (?)", "bulk_args": [[i] for i in ids]})
    return EncodedBatch(IdRange(ids[0], len(ids)), body, "crate_json")


def test_verdict_for_raises_whole_request_errors() -> None:
    """verdict_for raises error_of's error, and LoadError for a non-bulk answer."""
    with pytest.raises(TransientLoadError, match=r"^w: 503 5030 "):
        verdict_for(1, _parse(503, {"error": {"code": 5030, "message": "m"}}), where="w",
                    attempt=1, upsert=False)  # fmt: skip
    with pytest.raises(LoadError, match=r"^w: bulk response has 1 results for 2 rows"):
        verdict_for(2, _bulk(OK), where="w", attempt=1, upsert=False)
    assert verdict_for(1, _bulk(OK), where="w", attempt=1, upsert=False).complete


def test_send_result_builds_retry_and_rejections() -> None:
    """send_result resends exactly the retry items and names the rejected ids."""
    batch = _payload([10, 11, 12, 13])
    verdict = judge_bulk(4, _bulk(OK, SHARD, CHECK, SHARD), attempt=1, upsert=False)
    result = send_result(batch, verdict, 1.5)
    assert result.delivered == 1
    assert result.retry is not None
    assert result.retry.rows == 2
    assert result.retry.ids == batch.ids
    assert orjson.loads(result.retry.payload)["bulk_args"] == [[11], [13]]
    assert result.rejected == (RowError(12, "4000 CHECK failed"),)
    assert (result.retry_after, result.retry_reason) == (1.5, verdict.retry_reason)
    assert send_result(batch, BulkVerdict(4)) == SendResult(delivered=4)


def test_a_retry_subset_names_its_own_row_ids() -> None:
    """The retry batch of ids 11 and 13 says so (row_ids), not the whole batch's range."""
    batch = _payload([10, 11, 12, 13])
    verdict = judge_bulk(4, _bulk(OK, SHARD, CHECK, SHARD), attempt=1, upsert=False)
    retry = send_result(batch, verdict).retry
    assert retry is not None and retry.row_count == 2
    assert tuple(retry.row_ids()) == (11, 13)


def test_send_result_never_drops_an_undecided_item() -> None:
    """An item left undecided becomes a NO_DETAIL reject: every row is counted somewhere."""
    batch = _payload([10, 11, 12])
    result = send_result(batch, BulkVerdict(1, retry=(0,), retry_reason="r", undecided=(2,)))
    assert result.delivered == 1
    assert result.retry is not None and result.retry.rows == 1
    assert result.rejected == (RowError(12, NO_DETAIL),)


def test_server_version_of() -> None:
    """The version number comes out of GET /, or ValueError."""
    assert server_version_of(b'{"ok": true, "version": {"number": "5.10.11"}}') == "5.10.11"
    with pytest.raises(ValueError):
        server_version_of(b"<html>")


def test_crate_table_statements() -> None:
    """CrateTable quotes its identifiers and resolves the default schema."""
    table = CrateTable("t", "pk")
    assert table.refresh == 'REFRESH TABLE "t"'
    assert table.max_id == 'SELECT max("pk") FROM "t"'
    assert table.count_range == 'SELECT count(*) FROM "t" WHERE "pk" >= ? AND "pk" < ?'
    assert (table.qualified(None), table.qualified("s")) == ("doc.t", "s.t")
    assert CrateTable("a.b").qualified("s") == "a.b"
    with pytest.raises(ConfigError):
        CrateTable("t; DROP TABLE x")


def test_endpoint_qualifies_a_table_in_its_default_schema() -> None:
    """``Endpoint.qualify``: the URL's ``?schema=``, else ``doc``; a qualified name is kept."""
    assert Endpoint.parse("http://h:4200").qualify("t") == "doc.t"
    assert Endpoint.parse("http://h:4200/?schema=s").qualify("t") == "s.t"
    assert Endpoint.parse("http://h:4200/?schema=s").qualify("a.b") == "a.b"


def test_resends_are_idempotent_inserts() -> None:
    """Every attempt after the first posts the INSERT with ON CONFLICT (pk) DO NOTHING."""
    from async_etl.core.crate_protocol import attempt_body

    stmt = 'INSERT INTO "t" ("id", "v") VALUES (?, ?)'
    body = orjson.dumps({"stmt": stmt, "bulk_args": [[1, "a"]]})
    assert attempt_body(body, 1, stmt, ("id",)) == body
    again = attempt_body(body, 2, stmt, ("id",))
    assert orjson.loads(again)["stmt"] == stmt + ' ON CONFLICT ("id") DO NOTHING'
    assert orjson.loads(again)["bulk_args"] == [[1, "a"]]
    assert attempt_body(again, 3, stmt, ("id",)) == again  # a retry of a retry
    upsert = stmt + " ON CONFLICT (id) DO UPDATE SET v = excluded.v"
    assert attempt_body(body, 2, upsert, ("id",)) == body


def test_checked_version_returns_raises_or_explains() -> None:
    """GET / gives the version, the server's error, or a one-line LoadError without one."""
    from async_etl.core.crate_protocol import checked_version

    ok = orjson.dumps({"ok": True, "version": {"number": "5.10.11"}})
    assert checked_version(parse_response(200, ok), ok, "CrateDB h") == "5.10.11"
    denied = b"trust authentication failed for user"
    with pytest.raises(LoadError, match="401"):
        checked_version(parse_response(401, denied, "text/plain"), denied, "CrateDB h")
    bare = orjson.dumps({"ok": True})
    with pytest.raises(LoadError, match="CrateDB h: GET / answered no version number"):
        checked_version(parse_response(200, bare), bare, "CrateDB h")


bulk_items = st.lists(
    st.one_of(
        st.just({"rowcount": 1}),
        st.just({"rowcount": 0}),
        st.just({"rowcount": -2, "error": {"code": 4091, "message": "dup ]"}}),
    ),
    max_size=40,
)


@given(items=bulk_items, spaced=st.booleans(), decoy=st.booleans(), last=st.booleans())
def test_bulk_answers_read_the_same_with_or_without_the_all_ok_shortcut(
    items: list[dict[str, Any]], spaced: bool, decoy: bool, last: bool
) -> None:
    """Compact all-OK results are read without parsing each item; every answer reads alike."""
    import json

    doc: dict[str, Any] = {"cols": []}
    if decoy:  # a nested "results" array of OK items, before the real one
        doc["rows"] = [[{"results": [{"rowcount": 1}] * 3}]]
    if last:  # CrateDB's order; the stand-in writes the duration last
        doc["duration"] = 2.5
    doc["results"] = items
    doc["duration"] = 2.5
    body = json.dumps(doc).encode() if spaced else orjson.dumps(doc)
    got = parse_response(200, body, "application/json")
    errors = [i.get("error", {}) for i in items]
    expected = tuple(
        ItemResult(i["rowcount"], e.get("code"), e.get("message", ""))
        for i, e in zip(items, errors, strict=True)
    )
    assert got.results == expected
    assert got.duration_ms == 2.5 and got.status == 200 and got.error_message == ""
    assert len(got.rows) == (1 if decoy else 0)


@pytest.mark.parametrize(
    "items",
    [
        b'{"rowcount":1}{"rowcount":1}x',  # the length of two items and a comma, no comma
        b'{"rowcount":1},{"rowcount":1},',
        b'{"rowcount":1},{"rowcount":0}',
        b',{"rowcount":1}{"rowcount":1}',
        b'{"rowcount":1} ,{"rowcount":1}',
    ],
)
def test_results_that_only_look_all_ok_are_parsed_item_by_item(items: bytes) -> None:
    """The all-OK shortcut takes only ``{"rowcount":1}`` items joined by commas, nothing like it."""
    from async_etl.core.crate_protocol import _without_ok_results

    ok = b'{"cols":[],"results":[' + b",".join([b'{"rowcount":1}'] * 3) + b'],"duration":1.5}'
    assert _without_ok_results(ok) == (b'{"cols":[],"results":[],"duration":1.5}', 3)
    assert _without_ok_results(b'{"cols":[],"results":[' + items + b"]}") is None


def _failed(message: str, code: int = 4000) -> dict[str, Any]:
    return {"rowcount": -2, "error": {"code": code, "message": message}}


def test_one_analysis_error_on_every_item_reads_as_the_whole_request_refused() -> None:
    """CrateDB 5.10.9's 200 with one cast error on every item (crate#18067) is read as a 400."""
    cast = "SQLParseException[Cannot cast value `abc` to type `integer`]"
    r = _parse(200, {"cols": [], "results": [_failed(cast)] * 3})
    assert (r.status, r.error_code, r.error_message, r.results) == (400, 4000, cast, None)
    assert r.reason == f"400 4000 {cast}"


@pytest.mark.parametrize(
    "items",
    [
        [_failed("SQLParseException[Cannot cast value `abc` to type `integer`]")],
        [_failed("SQLParseException[Cannot cast value `a`]"), _failed("SQLParseException[b]")],
        [_failed("IllegalArgumentException[Failed CONSTRAINT c for values: [1]]")] * 2,
        [_failed("SQLParseException[x]"), {"rowcount": 1}],
    ],
    ids=["one-item", "two-messages", "not-analysis", "one-landed"],
)
def test_item_errors_that_are_not_one_request_wide_analysis_error_stay_per_item(
    items: list[dict[str, Any]],
) -> None:
    """A single item, differing messages, a runtime error or a landed item stay bulk results."""
    r = _parse(200, {"cols": [], "results": items})
    assert r.status == 200 and r.results is not None and len(r.results) == len(items)
