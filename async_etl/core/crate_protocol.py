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
* bare ``-2`` (no detail: CrateDB reports only the first 10 errors per shard): retry if some
  other item of the same response was retried; else, on attempt > 1, delivered if some other
  item was a duplicate counted as delivered; else rejected "rowcount -2 (no error detail from
  server)".

Why a duplicate counts as delivered on a re-send: an attempt whose connection dropped may have
been applied in full before the drop, and the engine then sends the same rows again.  Every
run writes a fresh id range (``start_id = max(id) + 1``) and ids are unique by construction,
so a duplicate key on a re-sent row can only be our own earlier write of that very row.  The
bare ``-2`` inference extends this past the 10-errors-per-shard cutoff (a re-sent batch of 1000
applied rows answers 10 coded duplicates per shard and bare ``-2`` for the rest); on a table
without CHECK constraints a duplicate is the only runtime error a fresh-id insert can meet.
The final ``count`` after ``REFRESH TABLE`` reconciles either way.

Before 5.10.11 a failed single-item bulk answered a top-level 409/4091 instead of
``results``; ``judge_bulk`` reads it as that one item.  Every ``Response`` field is filled
from whichever shape the server used (``error`` object, legacy ``error_message``, plain-text
401, a proxy's HTML page).
"""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from async_etl.core.classify import CRATE_DUPLICATE_KEY, classify_crate, is_transient
from async_etl.errors import ConfigError, DataError, ErrorKind, LoadError, TransientLoadError

__all__ = [
    "BulkVerdict",
    "Endpoint",
    "ItemResult",
    "Response",
    "build_request",
    "error_of",
    "judge_bulk",
    "mask_url",
    "maybe_gzip",
    "parse_response",
    "parse_retry_after",
    "subset_body",
]

DEFAULT_PORT = 4200
NO_DETAIL = "rowcount -2 (no error detail from server)"

# -- endpoint ---------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """Return ``url`` with the password (if any) replaced by ``***``; never raises.

    Works on malformed URLs too: everything between the first ``:`` of the user-info and the
    last ``@`` is masked, so a password with unescaped ``/`` or ``@`` does not leak.
    """
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    at = rest.rfind("@")
    colon = rest.find(":", 0, at) if at >= 0 else -1
    if colon < 0:
        return url
    return f"{head}{sep}{rest[:colon]}:***@{rest[at + 1 :]}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A CrateDB HTTP endpoint parsed from a sink URL; ``repr`` and ``display`` hide the password.

    ``http://user:pw@host:4200/?schema=s`` — ``crate://`` means ``http://``; the port defaults
    to 4200; a path is ignored; ``schema`` is the only query parameter (``Default-Schema``).
    """

    scheme: Literal["http", "https"]
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    schema: str | None = None

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Parse a sink URL; raise ``ConfigError`` (one line, password masked) when invalid."""

        def bad(why: str) -> ConfigError:
            return ConfigError(f"invalid CrateDB URL {mask_url(url)!r}: {why}")

        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise bad(str(exc)) from exc
        scheme = {"http": "http", "https": "https", "crate": "http"}.get(parts.scheme.lower())
        if scheme is None:
            raise bad("scheme must be http, https or crate")
        if not parts.hostname:
            raise bad("no host")
        if port == 0:
            raise bad("port must be 1..65535")
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        unknown = sorted(set(query) - {"schema"})
        if unknown:
            raise bad(f"unknown query parameter {unknown[0]!r} (only 'schema' is allowed)")
        schemas = query.get("schema", [])
        if len(schemas) > 1 or (schemas and not schemas[0].strip()):
            raise bad("'schema' must be given once and not be empty")
        return cls(
            scheme="https" if scheme == "https" else "http",
            host=parts.hostname,
            port=port if port is not None else DEFAULT_PORT,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            schema=schemas[0].strip() if schemas else None,
        )

    def __repr__(self) -> str:
        """Show the endpoint without its password."""
        return f"Endpoint({self.display!r}, schema={self.schema!r})"

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` without credentials, for the HTTP client."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def sql_url(self) -> str:
        """The ``/_sql`` URL."""
        return f"{self.base_url}/_sql"

    @property
    def display(self) -> str:
        """``scheme://user@host:port`` — safe for messages and logs (never the password)."""
        user = f"{self.user}@" if self.user else ""
        return self.base_url.replace("://", f"://{user}", 1)

    def headers(self) -> dict[str, str]:
        """Headers every request carries: content type, ``Authorization``, ``Default-Schema``."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.user is not None:
            token = f"{self.user}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
        if self.schema is not None:
            headers["Default-Schema"] = self.schema
        return headers


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


def _one_line(text: str, limit: int = 300) -> str:
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
        return ItemResult(rowcount=-2, message=f"malformed bulk item {_one_line(repr(raw), 80)}")
    rowcount = raw.get("rowcount")
    code, message = _error_fields(raw)
    return ItemResult(
        rowcount=rowcount if isinstance(rowcount, int) else -2,
        code=code,
        message=_one_line(message),
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
    if body.strip():
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
    if not isinstance(doc, dict):
        text = body.decode("utf-8", "replace")
        if "html" in content_type.lower() or text.lstrip().startswith("<"):
            text = re.sub(r"<[^>]*>", " ", text)
        message = _one_line(text) or "empty body"
        if status == 200:
            message = f"unexpected non-JSON answer: {message}"
        return Response(status=status, error_message=message, retry_after=retry_after)
    code, message = _error_fields(doc)
    if status != 200 and not message:
        message = f"HTTP {status} without error detail"
    raw_results = doc.get("results")
    results = tuple(_item(item) for item in raw_results) if isinstance(raw_results, list) else None
    rows = doc.get("rows")
    rowcount = doc.get("rowcount")
    duration = doc.get("duration")
    return Response(
        status=status,
        cols=tuple(doc.get("cols") or ()),
        rows=tuple(tuple(r) for r in rows) if isinstance(rows, list) else (),
        rowcount=rowcount if isinstance(rowcount, int) else None,
        results=results,
        error_code=code,
        error_message=_one_line(message),
        duration_ms=float(duration) if isinstance(duration, int | float) else None,
        retry_after=retry_after,
    )


def error_of(response: Response, where: str, *, bulk_rows: int | None = None) -> LoadError | None:
    """The exception to raise for a whole-request failure, or None when the request succeeded.

    ``where`` prefixes the message (e.g. ``"CrateDB http://crate@host:4200"``).  Transient
    kinds give a ``TransientLoadError`` carrying ``retry_after``, a duplicate key a
    ``DataError``, everything else a ``LoadError``.  With ``bulk_rows`` given, the legacy
    single-item 409 is not an error: ``judge_bulk`` reads it as that item's outcome.
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


def _legacy_single(batch_rows: int, response: Response) -> tuple[ItemResult, ...] | None:
    if batch_rows == 1 and response.status == 409 and response.error_code == CRATE_DUPLICATE_KEY:
        return (ItemResult(-2, CRATE_DUPLICATE_KEY, response.error_message),)
    return None


def judge_bulk(batch_rows: int, response: Response, *, attempt: int, upsert: bool) -> BulkVerdict:
    """Split a bulk response into delivered / retry / rejected items (rules: module docstring).

    Raise ``ValueError`` when ``response`` is neither a bulk response nor the legacy
    single-item 409 (check ``error_of`` first), or has a different number of items.
    """
    items = response.results if response.results is not None else None
    if items is None:
        items = _legacy_single(batch_rows, response)
    if items is None:
        raise ValueError(f"not a bulk response: {response.reason or 'no results'}")
    if len(items) != batch_rows:
        raise ValueError(f"bulk response has {len(items)} results for {batch_rows} rows")
    delivered, retry, rejected, bare = 0, [], [], []
    reason, own_duplicates = "", False
    for index, item in enumerate(items):
        if item.rowcount >= 1 or item.rowcount == -1:
            delivered += 1
        elif item.rowcount == 0:
            if attempt > 1:
                delivered += 1
            else:
                rejected.append((index, "already present (rowcount 0)"))
        elif item.rowcount != -2:
            rejected.append((index, f"unexpected rowcount {item.rowcount}"))
        elif item.code is None and not item.message:
            bare.append(index)
        elif item.code == CRATE_DUPLICATE_KEY and not upsert and attempt > 1:
            delivered += 1
            own_duplicates = True
        elif (item.code == CRATE_DUPLICATE_KEY and upsert) or is_transient(
            classify_crate(200, item.code)
        ):
            retry.append(index)
            reason = reason or f"{item.code} {item.message}".strip()
        else:
            code = f"{item.code} " if item.code is not None else ""
            rejected.append((index, f"{code}{item.message or 'failed'}"))
    if bare and retry:
        retry.extend(bare)
        retry.sort()
    elif bare and own_duplicates:
        delivered += len(bare)
    else:
        rejected.extend((index, NO_DETAIL) for index in bare)
        rejected.sort()
    if retry:
        reason = f"{len(retry)} of {batch_rows} items failed transiently: {reason}"
    return BulkVerdict(delivered, tuple(retry), tuple(rejected), reason)


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
