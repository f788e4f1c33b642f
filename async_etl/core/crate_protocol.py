"""CrateDB HTTP ``/_sql`` protocol, sans I/O: endpoints, request bodies, responses, bulk verdicts.

Theory of operation
-------------------
The adapter (``async_etl.sinks.cratedb``) does the HTTP; everything it must *decide* lives here
and is tested without a socket.  One bulk attempt goes:

1. ``maybe_gzip`` the body (CrateDB always accepts ``Content-Encoding: gzip``);
2. ``parse_response`` turns status + body into a ``Response`` whatever the server version;
3. ``error_of`` says whether the whole request failed (raise it: transient or not, by
   ``classify_crate``), except for the one legacy shape ``judge_bulk`` accepts;
4. ``judge_bulk`` splits the items into delivered / retry / rejected;
5. ``subset_body`` rebuilds the body of the retry from exactly the items to retry.

Per-item rules of ``judge_bulk`` (one item = one row; ``attempt`` counts from 1)
-----------------------------------------------------------------------------------
* ``rowcount >= 1`` or ``-1`` (unknown, but the statement succeeded): delivered.
* ``rowcount == 0`` (``ON CONFLICT DO NOTHING`` met an existing row): on attempt 1 rejected
  "already present"; on attempt > 1 delivered, because the row may be our own earlier write.
* ``-2`` with a transient code (``5002``/``5003``/``503x``, ``4290``): retry.
* ``-2`` with ``4091`` duplicate key: retry under an upsert (a concurrent-insert race, the
  reference's one exception); else on attempt > 1 **delivered**; else rejected.
* ``-2`` with any other code: rejected with "code message".
* bare ``-2`` (no detail: CrateDB reports only the first 10 errors per shard, versions before
  5.10 none): retry if some other item of the same response was retried (it may be the same
  transient fault); else **undecided**.  An undecided item is never guessed at: the caller
  resolves it (``core.crate_resolve``) by resending it in bulks small enough that every
  failure carries its error, then alone, and judges those answers with these same rules.

``idempotent=True`` (the mapper: every statement converges when repeated) reads ``rowcount 0``
and a duplicate key as already applied on every attempt, as attempts after the first do.

Re-sends are idempotent: an attempt whose connection dropped may have been applied in full
before the drop, so the sinks send every attempt after the first with ``ON CONFLICT (pk) DO
NOTHING`` (``idempotent_body``).  A row that already landed then answers ``rowcount 0`` --
not an error, so it does not use up the 10 detailed errors per shard that real failures (an
unavailable shard) need to be told apart.  Every run writes a fresh id range
(``start_id = max(id) + 1``) and ids are unique by construction, so ``rowcount 0`` or a
duplicate key on a re-sent row can only be our own earlier write of that very row.  The final
``count`` after ``REFRESH TABLE`` reconciles either way.

Before 5.10.11 a failed single-item bulk answered a top-level error instead of ``results``:
409/4091 for a duplicate key, 400/4003 for a column validation (NOT NULL); ``judge_bulk``
reads these as that one item (other whole-request errors, such as an analysis error, stay
errors).  CrateDB 5.10.9 answered a bulk refused in analysis (one value it cannot cast) as 200
with that ``SQLParseException`` on every item (crate/crate#18067): ``parse_response`` reads it
as the whole-request 400 it is, so the good items are not rejected with the bad one's error.
Every ``Response`` field is filled
from whichever shape the server used (``error`` object, legacy ``error_message``, plain-text
401, a proxy's HTML page).
"""

from __future__ import annotations

import functools
import gzip
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from async_etl.core.classify import CRATE_DUPLICATE_KEY, classify_crate, is_transient
from async_etl.core.crate_endpoint import CrateTable, Endpoint, mask_url
from async_etl.errors import DataError, ErrorKind, LoadError, TransientLoadError
from async_etl.typing import EncodedBatch, RowError, SendResult

__all__ = [
    "BulkVerdict",
    "CrateTable",
    "Endpoint",
    "ItemResult",
    "Response",
    "build_request",
    "error_of",
    "judge_bulk",
    "mask_url",
    "maybe_gzip",
    "one_line",
    "parse_response",
    "parse_retry_after",
    "send_result",
    "server_version_of",
    "subset_body",
    "verdict_for",
]

NO_DETAIL = "rowcount -2 (no error detail from server)"

# -- requests ---------------------------------------------------------------------------------


def build_request(
    stmt: str, args: Sequence[Any] | None = None, bulk_args: Sequence[Sequence[Any]] | None = None
) -> bytes:
    """Encode a ``/_sql`` body.

    Raise ``ValueError`` when ``args`` and ``bulk_args`` are both non-empty (CrateDB: 400/4000).
    """
    if args and bulk_args:
        raise ValueError("a CrateDB request takes args or bulk_args, not both")
    body: dict[str, Any] = {"stmt": stmt}
    if bulk_args is not None:
        body["bulk_args"] = bulk_args
    elif args is not None:
        body["args"] = args
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def maybe_gzip(body: bytes, threshold: int = 8192) -> tuple[bytes, dict[str, str]]:
    """Gzip ``body`` when it has at least ``threshold`` bytes (``<= 0`` disables it).

    Level 1: cheap, and JSON still shrinks several times.  Returns the body to send and the
    extra headers (``Content-Encoding``) it needs.
    """
    if threshold <= 0 or len(body) < threshold:
        return body, {}
    return gzip.compress(body, compresslevel=1, mtime=0), {"Content-Encoding": "gzip"}


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None.

    An HTTP date needs ``now`` (epoch seconds); without it a date is ignored.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    if now is None:
        return None
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


# -- responses --------------------------------------------------------------------------------

# legacy ``error_message`` texts carry no code: infer the two codes that change the decision
_LEGACY_CODES = (
    ("DuplicateKeyException", CRATE_DUPLICATE_KEY),
    ("VersionConflictEngineException", 4092),
    ("UnavailableShardsException", 5002),
    ("ShardUnavailableException", 5002),
    ("NoShardAvailableActionException", 5002),
    ("ShardNotFoundException", 5002),
)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters with …."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _infer_code(message: str) -> int | None:
    return next((code for marker, code in _LEGACY_CODES if marker in message), None)


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One bulk item's outcome: ``rowcount`` (-2 = failed) and the error, when reported."""

    rowcount: int
    code: int | None = None
    message: str = ""


OK_ITEM = ItemResult(rowcount=1)
CRATE_ANALYSIS = 4000
"""CrateDB's code for a statement refused in analysis (``SQLParseException``: a bad cast)."""
_OK_RAW = {"rowcount": 1}
_OK_BYTES = b'{"rowcount":1}'
_RESULTS_KEY = b'"results":['
_LAST = re.compile(rb'(?:,"duration":[0-9.eE+-]+)?\}\s*\Z')


@functools.lru_cache(maxsize=4)
def _ok_run(n: int) -> bytes:
    """``n`` compact OK items joined by commas (a batch's size recurs: built once for it)."""
    return b",".join([_OK_BYTES] * n)


def _without_ok_results(body: bytes) -> tuple[bytes, int] | None:
    """``body`` with a compact all-``{"rowcount":1}`` results array emptied, and its length.

    Only when that array closes the body, but for a ``duration`` (``...]}`` or
    ``...],"duration":1.5}``: so it is the top-level one) and is written exactly so; None
    otherwise (spaces, another item, another order): parse it all then.  A bulk answer of
    thousands of rows is then parsed as a few bytes, not as one dict a row; the array is
    compared in place (no copy of it) with the same number of OK items.
    """
    key = body.rfind(_RESULTS_KEY)
    if key < 0:
        return None
    first = key + len(_RESULTS_KEY)
    end = body.find(b"]", first)
    if end < 0:
        return None
    n = (end - first + 1) // (len(_OK_BYTES) + 1)
    if not n or end - first != n * (len(_OK_BYTES) + 1) - 1:
        return None
    tail = body[end + 1 :]
    if not _LAST.match(tail) or not body.startswith(_ok_run(n), first):
        return None
    return body[:first] + b"]" + tail, n


@dataclass(frozen=True, slots=True)
class Response:
    """A parsed ``/_sql`` answer, whichever shape the server used.

    ``results`` is None unless it was a bulk response; ``error_message`` is non-empty when the
    request as a whole failed.
    """

    status: int
    cols: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    rowcount: int | None = None
    results: tuple[ItemResult, ...] | None = None
    error_code: int | None = None
    error_message: str = ""
    duration_ms: float | None = None
    retry_after: float | None = None

    @property
    def failed(self) -> bool:
        """True when the request as a whole failed (any error, or a status other than 200)."""
        return bool(self.error_message) or self.status != 200

    @property
    def kind(self) -> ErrorKind | None:
        """How the whole-request failure classifies, or None when it did not fail."""
        return classify_crate(self.status, self.error_code) if self.failed else None

    @property
    def reason(self) -> str:
        """One line: ``status code message`` of the failure (empty when it did not fail)."""
        if not self.failed:
            return ""
        code = f" {self.error_code}" if self.error_code is not None else ""
        return f"{self.status}{code} {self.error_message or 'no detail'}"


def _error_fields(doc: dict[str, Any]) -> tuple[int | None, str]:
    err = doc.get("error")
    if isinstance(err, dict):
        code = err.get("code")
        message = str(err.get("message") or "")
        return (code if isinstance(code, int) else _infer_code(message)), message
    if isinstance(err, str) and err:
        return _infer_code(err), err
    legacy = doc.get("error_message")
    if isinstance(legacy, str) and legacy:
        return _infer_code(legacy), legacy
    return None, ""


def _item(raw: Any) -> ItemResult:
    if not isinstance(raw, dict):
        return ItemResult(rowcount=-2, message=f"malformed bulk item {one_line(repr(raw), 80)}")
    rowcount = raw.get("rowcount")
    code, message = _error_fields(raw)
    return ItemResult(
        rowcount=rowcount if isinstance(rowcount, int) else -2,
        code=code,
        message=one_line(message),
    )


def _analysis_on_every_item(results: Sequence[ItemResult]) -> bool:
    """Whether a bulk answer carries one request-wide analysis error on each of its items.

    CrateDB 5.10.9 answered a bulk with one value it cannot cast as 200 with that
    ``SQLParseException`` (4000) on every item, the good ones included (crate/crate#18067);
    ``parse_response`` reads it as the 400 the request was: nothing was written.
    """
    if len(results) < 2:
        return False
    first = results[0]
    return (
        first.code == CRATE_ANALYSIS
        and first.message.startswith("SQLParseException[")
        and results.count(first) == len(results)
    )


def parse_response(
    status: int, body: bytes, content_type: str = "", *, retry_after: float | None = None
) -> Response:
    """Parse any ``/_sql`` answer into a ``Response``; never raises.

    Handles normal results, bulk ``results`` (per-item ``error`` or legacy ``error_message``),
    top-level ``{"error": {...}}`` at any status, the plain-text 401, and non-JSON bodies such
    as a proxy's error page (reduced to one line with the status).
    """
    doc: Any = None
    all_ok = 0  # the length of an all-OK results array taken out of the body before parsing
    if (emptied := _without_ok_results(body)) is not None:
        try:
            doc = orjson.loads(emptied[0])
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and doc.get("results") == []:
            all_ok = emptied[1]
        else:  # the key was not the top-level one: read the body as it came
            doc = None
    if doc is None and body.strip():
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
    if not isinstance(doc, dict):
        text = body.decode("utf-8", "replace")
        if "html" in content_type.lower() or text.lstrip().startswith("<"):
            text = re.sub(r"<[^>]*>", " ", text)
        message = one_line(text) or "empty body"
        if status == 200:
            message = f"unexpected non-JSON answer: {message}"
        return Response(status=status, error_message=message, retry_after=retry_after)
    code, message = _error_fields(doc)
    if status != 200 and not message:
        message = f"HTTP {status} without error detail"
    raw_results = doc.get("results")
    results: tuple[ItemResult, ...] | None = None
    if all_ok:
        results = (OK_ITEM,) * all_ok
    elif isinstance(raw_results, list):
        if raw_results.count(_OK_RAW) == len(raw_results):  # the common case, compared in C
            results = (OK_ITEM,) * len(raw_results)
        else:
            results = tuple(_item(item) for item in raw_results)
    rows = doc.get("rows")
    rowcount = doc.get("rowcount")
    duration = doc.get("duration")
    if status == 200 and results is not None and _analysis_on_every_item(results):
        status, code, message, results = 400, results[0].code, results[0].message, None
    return Response(
        status=status,
        cols=tuple(doc.get("cols") or ()),
        rows=tuple(tuple(r) for r in rows) if isinstance(rows, list) else (),
        rowcount=rowcount if isinstance(rowcount, int) else None,
        results=results,
        error_code=code,
        error_message=one_line(message),
        duration_ms=float(duration) if isinstance(duration, int | float) else None,
        retry_after=retry_after,
    )


def error_of(response: Response, where: str, *, bulk_rows: int | None = None) -> LoadError | None:
    """The exception to raise for a whole-request failure, or None when the request succeeded.

    ``where`` prefixes the message (e.g. ``"CrateDB http://crate@host:4200"``).  Transient
    kinds give a ``TransientLoadError`` carrying ``retry_after``, a duplicate key a
    ``DataError``, everything else a ``LoadError``.  With ``bulk_rows`` given, the legacy
    single-item 409/4091 and 400/4003 are not errors: ``judge_bulk`` reads them as that item's
    outcome.
    """
    kind = response.kind
    if kind is None or (bulk_rows is not None and _legacy_single(bulk_rows, response)):
        return None
    message = f"{where}: {response.reason}"
    if is_transient(kind):
        err: LoadError = TransientLoadError(message, retry_after=response.retry_after)
    elif kind is ErrorKind.DATA:
        err = DataError(message)
    else:
        err = LoadError(message)
    err.kind = kind
    return err


# -- bulk verdicts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkVerdict:
    """How one bulk attempt ended, by item index (indices are disjoint and cover the batch)."""

    delivered: int
    retry: tuple[int, ...] = ()
    rejected: tuple[tuple[int, str], ...] = ()
    retry_reason: str = ""
    undecided: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every item was delivered (nothing to resend, reject or resolve)."""
        return not self.retry and not self.rejected and not self.undecided


CRATE_COLUMN_VALIDATION = 4003
"""CrateDB's code for a column validation failure of one row (NOT NULL, a NULL primary key)."""

_LEGACY_ITEM_ERRORS = frozenset({(409, CRATE_DUPLICATE_KEY), (400, CRATE_COLUMN_VALIDATION)})
"""Top-level answers that are really the one item's runtime failure (single-item bulks)."""


def _legacy_single(batch_rows: int, response: Response) -> tuple[ItemResult, ...] | None:
    if batch_rows == 1 and (response.status, response.error_code) in _LEGACY_ITEM_ERRORS:
        return (ItemResult(-2, response.error_code, response.error_message),)
    return None


def judge_bulk(
    batch_rows: int, response: Response, *, attempt: int, upsert: bool, idempotent: bool = False
) -> BulkVerdict:
    """Split a bulk response into delivered / retry / rejected / undecided items.

    The rules are in the module docstring.

    Raise ``ValueError`` when ``response`` is neither a bulk response nor a legacy
    single-item answer (check ``error_of`` first), or has a different number of items.
    """
    items = response.results if response.results is not None else None
    if items is None:
        items = _legacy_single(batch_rows, response)
    if items is None:
        raise ValueError(f"not a bulk response: {response.reason or 'no results'}")
    if len(items) != batch_rows:
        raise ValueError(f"bulk response has {len(items)} results for {batch_rows} rows")
    if items.count(OK_ITEM) == batch_rows:
        return BulkVerdict(batch_rows, (), (), "")
    settled = attempt > 1 or idempotent  # rowcount 0 / a duplicate can be our own write
    delivered, retry, rejected, bare = 0, [], [], []
    reason = ""
    for index, item in enumerate(items):
        if item.rowcount >= 1 or item.rowcount == -1:
            delivered += 1
        elif item.rowcount == 0:
            if settled:
                delivered += 1
            else:
                rejected.append((index, "already present (rowcount 0)"))
        elif item.rowcount != -2:
            rejected.append((index, f"unexpected rowcount {item.rowcount}"))
        elif item.code is None and not item.message:
            bare.append(index)
        elif item.code == CRATE_DUPLICATE_KEY and not upsert and settled:
            delivered += 1
        elif (item.code == CRATE_DUPLICATE_KEY and upsert) or is_transient(
            classify_crate(200, item.code)
        ):
            retry.append(index)
            reason = reason or f"{item.code} {item.message}".strip()
        else:
            code = f"{item.code} " if item.code is not None else ""
            rejected.append((index, f"{code}{item.message or 'failed'}"))
    undecided: list[int] = []
    if bare and retry:
        retry.extend(bare)
        retry.sort()
    else:
        undecided = bare
    if retry:
        reason = retry_reason(len(retry), batch_rows, reason)
    return BulkVerdict(delivered, tuple(retry), tuple(rejected), reason, tuple(undecided))


def retry_reason(retried: int, rows: int, first: str) -> str:
    """The one-line reason of a partial retry: ``"n of m items failed transiently: first"``."""
    return f"{retried} of {rows} items failed transiently: {first}"


def idempotent_body(payload: bytes, stmt: str, pk: Sequence[str]) -> bytes:
    """``payload`` with its INSERT ``stmt`` made ``ON CONFLICT (pk) DO NOTHING`` (for re-sends).

    A statement that already has an ``ON CONFLICT`` clause is left as it is.  Raise
    ``ValueError`` when ``stmt`` is not the payload's statement.
    """
    if "ON CONFLICT" in stmt.upper():
        return payload
    keys = ", ".join(f'"{k}"' for k in pk)
    new = orjson.dumps(f"{stmt} ON CONFLICT ({keys}) DO NOTHING")
    if new in payload:  # already made idempotent (a retry of a retry)
        return payload
    old = orjson.dumps(stmt)
    if old not in payload:
        raise ValueError("the payload does not carry the statement it was prepared with")
    return payload.replace(old, new, 1)


def attempt_body(payload: bytes, attempt: int, stmt: str, pk: Sequence[str]) -> bytes:
    """The body to post on ``attempt``: the first as encoded, every later one idempotent."""
    if attempt <= 1 or not stmt:
        return payload
    return idempotent_body(payload, stmt, pk)


def subset_body(payload: bytes, indices: Iterable[int]) -> tuple[bytes, tuple[Any, ...]]:
    """Rebuild a bulk body with only the items at ``indices``; also return their ids.

    The statement is kept; an item's id is its first value.  Raise ``ValueError`` when the
    payload is not a bulk body or an index is out of range.
    """
    try:
        doc = orjson.loads(payload)
        stmt, bulk_args = doc["stmt"], doc["bulk_args"]
        items = [bulk_args[i] if i >= 0 else bulk_args[len(bulk_args)] for i in indices]
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"cannot take a subset of this bulk body: {exc!r}") from exc
    ids = tuple(item[0] for item in items)
    return orjson.dumps({"stmt": stmt, "bulk_args": items}), ids


# -- the sink's decisions ---------------------------------------------------------------------


def verdict_for(
    batch_rows: int,
    response: Response,
    *,
    where: str,
    attempt: int,
    upsert: bool,
    idempotent: bool = False,
) -> BulkVerdict:
    """``judge_bulk`` after ``error_of``: raise the whole-request error, else judge the items.

    Raises ``TransientLoadError`` / ``LoadError`` / ``DataError`` (message prefixed by
    ``where``), and ``LoadError`` when the answer is not a bulk answer for this many rows.
    """
    err = error_of(response, where, bulk_rows=batch_rows)
    if err is not None:
        raise err
    try:
        return judge_bulk(
            batch_rows, response, attempt=attempt, upsert=upsert, idempotent=idempotent
        )
    except ValueError as exc:
        raise LoadError(f"{where}: {exc}") from exc


def _int_ids(values: tuple[Any, ...]) -> tuple[int, ...] | None:
    """Items' first values as row ids when they all are ints (else None: ids unknown)."""
    if all(type(v) is int for v in values):
        return values
    return None


def send_result(
    batch: EncodedBatch, verdict: BulkVerdict, retry_after: float | None = None
) -> SendResult:
    """The ``SendResult`` of a judged attempt: the retry body holds exactly the items to resend.

    Parses the payload only when something failed (CPU: run it off the event loop then).
    An item still undecided (not resolved, see ``core.crate_resolve``) is rejected with
    ``NO_DETAIL``: never silently dropped.  Raises ``ValueError`` when the payload is not a
    bulk body.
    """
    if verdict.complete:
        return SendResult(delivered=verdict.delivered)
    if verdict.undecided:
        undecided = tuple((index, NO_DETAIL) for index in verdict.undecided)
        verdict = replace(verdict, rejected=tuple(sorted((*verdict.rejected, *undecided))),
                          undecided=())  # fmt: skip
    retry = None
    keys = batch.keys
    if verdict.retry:
        body, first = subset_body(batch.payload, verdict.retry)
        # the subset's own ids (row_ids), so a run can tell which rows are still in question
        subset = tuple(keys[i] for i in verdict.retry) if keys is not None else _int_ids(first)
        retry = EncodedBatch(batch.ids, body, batch.wire, rows=len(verdict.retry), keys=subset)
    rejected: tuple[RowError, ...] = ()
    if verdict.rejected:
        indices = [index for index, _ in verdict.rejected]
        _, ids = subset_body(batch.payload, indices)
        if keys is not None:  # the payload's first value is not the row id: use the keys
            ids = tuple(keys[i] for i in indices)
        rejected = tuple(
            RowError(row_id if isinstance(row_id, int) else None, reason)
            for row_id, (_, reason) in zip(ids, verdict.rejected, strict=True)
        )
    return SendResult(verdict.delivered, rejected, retry, verdict.retry_reason, retry_after)


def server_version_of(body: bytes) -> str:
    """The version number in a ``GET /`` answer; raises ``ValueError`` when there is none."""
    try:
        return str(orjson.loads(body)["version"]["number"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError("GET / answered no version number") from exc


def checked_version(response: Response, body: bytes, where: str) -> str:
    """The version of a ``GET /`` answer; raises its error, or ``LoadError`` without a version."""
    err = error_of(response, where)
    if err is not None:
        raise err
    try:
        return server_version_of(body)
    except ValueError as exc:
        raise LoadError(f"{where}: {exc}") from exc
