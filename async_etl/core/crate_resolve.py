"""Resolving undecided CrateDB bulk items, sans I/O: what to resend, and what the answers mean.

Theory of operation
-------------------
CrateDB (5.10+) attaches an error to only the first 10 failed items per shard of a bulk
request; the rest fail as a bare ``{"rowcount": -2}`` (before 5.10 every failure is bare).  A
bare item may be a NOT NULL or CHECK refusal, a duplicate, or an unavailable shard: guessing
either way loses data or retries a refusal until the run gives up.  So ``judge_bulk`` leaves
such an item *undecided*, and a ``Resolution`` finds out:

1. the undecided items are resent in groups of at most ``detail_group(version)`` items: with
   at most 10 items in a request, no shard can exceed its 10 detailed errors, so every failure
   comes back with its code (servers before 5.10 give no detail at all: groups of one);
2. each answer is judged by the same ``judge_bulk`` rules (indices mapped back to the batch);
3. an item still bare in a group is resent alone; alone and still bare, it is rejected with
   ``NO_DETAIL``.  A request refused as a whole (before 5.10.11 a failed single-item bulk is a
   top-level error) splits the group into single items; a single item refused as a whole is
   rejected with that error; a transient whole-request failure marks the group for retry.

A bulk request refused as a whole (``400``: one item's value CrateDB cannot cast or store,
``SQLParseException[Value ... out of range]``) is resolved the same way by ``Resolution.whole``:
every item starts undecided, and a refused group is split in halves rather than in single
items, so ``k`` bad rows among ``n`` cost about ``2 k log2(n)`` requests, not ``n``; the good
items are delivered and each bad one is rejected with its own refusal.

Every resend uses the statement of the attempt it resolves, so a resent item means what it
meant.  Work is bounded: an item is resent at most twice (in a group, then alone), so
resolving ``n`` items costs at most ``ceil(n / group) + n`` requests.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from async_etl.core.crate_protocol import (
    CRATE_COLUMN_VALIDATION,
    NO_DETAIL,
    BulkVerdict,
    Response,
    build_request,
    error_of,
    retry_reason,
    verdict_for,
)

__all__ = [
    "DETAIL_GROUP",
    "BulkItems",
    "Resolution",
    "bulk_items",
    "detail_group",
    "judge_resent",
    "refused_as_whole",
    "subset_items",
]

_REFUSED_STATUSES = (400, 409, 413)
"""Whole-request answers that refuse the items themselves (analysis, validation, duplicate,
a body too large)."""

TOO_LARGE = 413
"""A request body over the server's limit (CrateDB's ``http.max_content_length``, 100 MB by
default): refused as a whole, for good.  Halves of it are smaller, so it is bisected as a 400
is, and a row that alone is over the limit is rejected (``refusal_reason``) instead of failing
every row of its batch (each was undelivered before)."""


def refusal_reason(response: Response) -> str:
    """Why a single item refused as a whole is rejected: the server's words (413: too large)."""
    reason = response.reason.partition(" ")[2]
    if response.status == TOO_LARGE:
        return f"{reason}: the row alone is over the server's request size limit"
    return reason


def refused_as_whole(response: Response, rows: int) -> bool:
    """Whether a bulk of ``rows`` items answered ``response`` is bisected (``Resolution.whole``).

    Any 413, and any 400 but a single item's ``CRATE_COLUMN_VALIDATION`` (4003, which
    ``judge_bulk`` reads as that item's outcome): a single item's cast error (400 4000) is
    rejected like one found by bisecting a larger bulk, not a failure of the whole writer.
    """
    if response.status == TOO_LARGE:
        return True
    return response.status == 400 and (rows > 1 or response.error_code != CRATE_COLUMN_VALIDATION)


DETAIL_GROUP = 10
"""CrateDB details the first 10 failed items per shard: a bulk of 10 items details them all."""


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def detail_group(version: str) -> int:
    """How many undecided items to resend per request for a server of ``version``.

    ``DETAIL_GROUP`` from 5.10.0 on (or when the version is unknown: ``""``), 1 before.
    """
    if not version:
        return DETAIL_GROUP
    return DETAIL_GROUP if _version(version) >= (5, 10, 0) else 1


@dataclass(slots=True)
class Resolution:
    """Resolves the undecided items of one judged bulk attempt (see the module docstring).

    Drive it: ``while (group := r.next_group()) is not None``: resend the items at ``group``
    (indices into the judged batch), then report with ``feed`` (a judged bulk answer),
    ``refused`` (the request failed as a whole, for good) or ``transient`` (it may succeed
    later).  ``verdict()`` is the first verdict with every undecided item decided.
    """

    base: BulkVerdict
    rows: int
    group: int = DETAIL_GROUP
    bisect: bool = False
    _queue: deque[tuple[int, ...]] = field(default_factory=deque)
    _delivered: int = 0
    _retry: list[int] = field(default_factory=list)
    _rejected: list[tuple[int, str]] = field(default_factory=list)
    _reason: str = ""

    def __post_init__(self) -> None:
        """Queue the undecided items; raises ``ValueError`` for a group size below 1."""
        if self.group < 1:
            raise ValueError(f"resolution group size must be at least 1, got {self.group}")
        items = self.base.undecided
        self._queue.extend(
            tuple(items[i : i + self.group]) for i in range(0, len(items), self.group)
        )

    @classmethod
    def whole(cls, rows: int) -> Resolution:
        """A resolution bisecting a bulk of ``rows`` items refused as a whole (see above)."""
        base = BulkVerdict(0, undecided=tuple(range(rows)))
        return cls(base, rows, max(1, (rows + 1) // 2), bisect=True)

    def next_group(self) -> tuple[int, ...] | None:
        """The next items to resend (batch indices), or None when everything is decided."""
        return self._queue.popleft() if self._queue else None

    def _singles(self, group: Sequence[int]) -> None:
        self._queue.extend((index,) for index in group)

    def feed(self, group: Sequence[int], verdict: BulkVerdict) -> None:
        """Take the judged answer to resending ``group`` (``verdict`` indexes into ``group``)."""
        self._delivered += verdict.delivered
        self._retry.extend(group[i] for i in verdict.retry)
        if verdict.retry:
            self._reason = self._reason or verdict.retry_reason.partition(": ")[2]
        self._rejected.extend((group[i], reason) for i, reason in verdict.rejected)
        if len(group) == 1:
            self._rejected.extend((group[i], NO_DETAIL) for i in verdict.undecided)
        else:
            self._singles([group[i] for i in verdict.undecided])

    def refused(self, group: Sequence[int], reason: str) -> None:
        """The request for ``group`` was refused as a whole and will be again: split or reject."""
        if len(group) == 1:
            self._rejected.append((group[0], reason))
        elif self.bisect:
            half = (len(group) + 1) // 2
            self._queue.extend((tuple(group[:half]), tuple(group[half:])))
        else:
            self._singles(group)

    def transient(self, group: Sequence[int], reason: str) -> None:
        """The request for ``group`` failed as a whole but may succeed later: retry its items."""
        self._retry.extend(group)
        self._reason = self._reason or reason

    def verdict(self) -> BulkVerdict:
        """The base verdict with every undecided item delivered, retried or rejected.

        Raises ``ValueError`` while groups are still waiting to be resent.
        """
        if self._queue:
            raise ValueError("the resolution is not finished: groups are still pending")
        base = self.base
        retry = tuple(sorted((*base.retry, *self._retry)))
        rejected = tuple(sorted((*base.rejected, *self._rejected)))
        reason = base.retry_reason
        if retry:
            first = base.retry_reason.partition(": ")[2] or self._reason
            reason = retry_reason(len(retry), self.rows, first)
        return BulkVerdict(base.delivered + self._delivered, retry, rejected, reason)


def judge_resent(
    resolution: Resolution,
    group: Sequence[int],
    response: Response,
    where: str,
    *,
    attempt: int,
    upsert: bool,
    idempotent: bool = False,
) -> BulkVerdict | None:
    """Judge the answer to resending ``group``: the verdict to ``feed``, or None.

    None when the whole request failed (already reported to ``resolution`` as refused or
    transient).

    Raises the whole-request error when it is about neither the items nor the moment (401,
    404, ...), and ``LoadError`` when the answer is not a bulk answer for ``group``.
    """
    err = error_of(response, where, bulk_rows=len(group))
    if err is None:
        return verdict_for(len(group), response, where=where, attempt=attempt, upsert=upsert,
                           idempotent=idempotent)  # fmt: skip
    if err.retryable:
        resolution.transient(group, err.message)
    elif response.status in _REFUSED_STATUSES:
        resolution.refused(group, refusal_reason(response))
    else:
        raise err
    return None


@dataclass(frozen=True, slots=True)
class BulkItems:
    """A bulk body taken apart once: its statement and its items (for many small resends)."""

    stmt: str
    items: list[Any]


def bulk_items(payload: bytes) -> BulkItems:
    """Parse a ``{"stmt", "bulk_args"}`` body; raises ``ValueError`` when it is not one."""
    try:
        doc = orjson.loads(payload)
        stmt, items = doc["stmt"], doc["bulk_args"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a bulk body: {exc!r}") from exc
    if not isinstance(stmt, str) or not isinstance(items, list):
        raise ValueError("not a bulk body: stmt must be text and bulk_args a list")
    return BulkItems(stmt, items)


def subset_items(body: BulkItems, group: Sequence[int]) -> bytes:
    """The bulk body of the items at ``group``, same statement; raises ``IndexError``."""
    return build_request(body.stmt, bulk_args=[body.items[i] for i in group])
