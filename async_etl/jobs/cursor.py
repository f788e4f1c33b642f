"""An incremental job's cursor window, decided in preflight (see ``core.incremental``).

A new run reads from the job's committed cursor (``StateStore.committed_cursor``) up to the
source's current maximum of the ``[source] incremental`` column; a resumed run keeps the window
stored with its plan.  Problems are one-line ``ConfigError``s naming the key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from async_etl.core.incremental import (
    MAX_TIME_LOOKBACK,
    CursorWindow,
    capped_refusal,
    cursor_kind,
    cursor_text,
    endless_text,
    row_cap,
)
from async_etl.core.retry import RetryPolicy
from async_etl.errors import AsyncEtlError, ConfigError, unusable
from async_etl.jobs.context import Holder
from async_etl.jobs.spec import JobSpec
from async_etl.jobs.state import StateStore
from async_etl.runtime.retrying import retrying
from async_etl.sources.port import Source, source_connection

__all__ = ["check_cursor", "new_window", "resumed_window", "shown", "source_holds", "source_max"]


def check_cursor(spec: JobSpec, columns: tuple[tuple[str, str], ...]) -> None:
    """The ``incremental`` column exists and can be a cursor; ``ConfigError`` otherwise."""
    column = spec.source.incremental
    types = dict(columns)
    if column not in types:
        raise ConfigError(f"job {spec.name}: [source] incremental: {column} is not among the "
                          f"source columns ({', '.join(types)})")  # fmt: skip
    kind = cursor_kind(types[column])
    if kind is None:
        raise ConfigError(f"job {spec.name}: [source] incremental: {column} has type "
                          f"{types[column]}; a cursor must be a number, date, timestamp or "
                          "text column")  # fmt: skip
    if kind == "text" and spec.source.lookback:
        raise ConfigError(f"job {spec.name}: [source] lookback: {column} is a text column; "
                          "a lookback needs a number, date or timestamp cursor")  # fmt: skip
    if kind in ("date", "time") and spec.source.lookback > MAX_TIME_LOOKBACK:
        raise ConfigError(f"job {spec.name}: [source] lookback: {spec.source.lookback} s is "
                          f"more than a {kind} cursor spans ({MAX_TIME_LOOKBACK} s, year 1 to "
                          "9999)")  # fmt: skip


async def source_max(
    spec: JobSpec,
    columns: tuple[tuple[str, str], ...],
    source: Source,
    holder: Holder,
    app: str,
    policy: RetryPolicy,
) -> tuple[Any, bool]:
    """The cursor column's current maximum in the source, and whether it is NaN / +infinity.

    (None, False): not incremental, or no value (``Source.max_cursor``).  Read on one
    connection with the source's plan: a source whose rows are picked before the window
    applies (``incremental.row_cap``: a LIMIT in a subquery, a TABLESAMPLE) is refused with a
    one-line ``ConfigError``, since its cursor would stop for good.
    """
    column = spec.source.incremental
    if column is None:
        return None, False
    check_cursor(spec, columns)

    async def read() -> tuple[Any, tuple[Any, bool]]:
        async with source_connection(source, holder, app) as conn:
            return await source.query_plan(conn), await source.max_cursor(conn, column)

    try:
        plan, top = await retrying(read, policy, what="read the cursor maximum")
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: cannot read the source: {exc.message}", exc) from exc
    cap = None if plan is None else row_cap(plan)
    if cap is not None:
        raise ConfigError(f"job {spec.name}: {capped_refusal(column, cap)}")
    return top


async def source_holds(
    spec: JobSpec, source: Source, holder: Holder, app: str, policy: RetryPolicy, value: Any
) -> bool:
    """Whether a source row holds the cursor column at ``value`` itself (``Source.holds``)."""
    column = spec.source.incremental
    assert column is not None

    async def read() -> bool:
        async with source_connection(source, holder, app) as conn:
            return await source.holds(conn, column, value)

    try:
        return await retrying(read, policy, what="read the source at the committed cursor")
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: cannot read the source: {exc.message}", exc) from exc


def resumed_window(spec: JobSpec, run_id: str, plan: dict[str, Any]) -> CursorWindow | None:
    """The window stored with an unfinished run; it must match ``[source] incremental``."""
    stored = plan.get("cursor")
    column = None if stored is None else stored.get("column")
    if column != spec.source.incremental:
        was = f"incremental = {column!r}" if column else "no incremental"
        raise ConfigError(f"job {spec.name}: run {run_id} is unfinished with {was}; resume it "
                          "with that setting, or start over with --fresh")  # fmt: skip
    try:
        return None if stored is None else CursorWindow.from_json(stored)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"job {spec.name}: run {run_id}: unreadable stored cursor window "
                          f"({exc}); start over with --fresh") from exc  # fmt: skip


async def new_window(
    spec: JobSpec,
    store: StateStore,
    top: tuple[Any, bool],
    *,
    whole: bool = False,
    holds: Callable[[Any], Awaitable[bool]] | None = None,
) -> CursorWindow | None:
    """A new run's window: from the committed cursor up to the source's maximum ``top``.

    ``top`` is that value, and whether it is NaN / +infinity (``source_max``).
    ``whole``: no lower bound (the run adds target columns, which every row must fill: rows
    below the cursor would otherwise keep NULL in them for good; or the target table is not
    there, so it holds none of the rows below the cursor).  ``holds`` (``source_holds``)
    tells a committed 9999-12-31 that may have been ``infinity`` (``StateStore.committed``
    cannot tell) from a real one: a source row holds a real one.

    Raises ``ConfigError`` (one line) when the committed cursor is NaN or +infinity: no run
    from it could ever read a row again (``core.incremental``, "An endless cursor"; an
    ``infinity`` committed before its text was kept: "A cursor whose text was lost").
    """
    column = spec.source.incremental
    if column is None:
        return None
    try:
        low, stuck = (None, False) if whole else await store.committed(spec.name, column)
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: state store: {exc.message}", exc) from exc
    if stuck is None:  # 9999-12-31 read back: infinity (no row holds it) or that very value
        stuck = holds is not None and not await holds(low)
    if stuck:
        raise ConfigError(f"job {spec.name}: [source] incremental: the committed cursor of "
                          f"{column} is {endless_text(low)}, which sorts above every value, so "
                          "no later row can ever be read; fix the source rows holding it "
                          "(NULL or a real value), then run the job under a new name (its "
                          "cursor starts empty: the first run reads every row)")  # fmt: skip
    try:
        window = CursorWindow.plan(column, low, top[0], spec.source.lookback, top[1])
        window.to_json()  # a value that cannot be stored exactly is refused now
    except ValueError as exc:
        raise ConfigError(f"job {spec.name}: [source] incremental: {exc}") from exc
    return window


def shown(window: CursorWindow | None, side: str) -> str | None:
    """One side of a window for a log event (None: not incremental, or open)."""
    value = None if window is None else getattr(window, side)
    return None if value is None or window is None else cursor_text(window, value)
