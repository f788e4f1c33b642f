"""What every mapper-job source adapter holds: where it reads, its key, its cursor window.

It is also the source boundary for errors: an adapter runs its driver calls inside
``reading()``, which translates the driver's exceptions (``async_etl.drivers``) into
``ExtractError`` / ``TransientExtractError`` — same message, kind and retry hint as the
driver's translation — chained to the original.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

from async_etl.core.incremental import CursorWindow
from async_etl.core.scd_sql_common import Style
from async_etl.core.urls import mask_url
from async_etl.errors import AsyncEtlError, extract_error

__all__ = ["SourceBase", "reads"]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="SourceBase")


class SourceBase:
    """A job source: ``url``, chunk ``key``, exactly one of ``query`` / ``table``.

    With a cursor ``window`` (an incremental run) every read but the column inspection and
    ``max_cursor`` sees only the window's rows.
    """

    def __init__(
        self,
        url: str,
        key: tuple[str, ...],
        query: str | None,
        table: str | None,
        window: CursorWindow | None = None,
    ):
        self.url = url
        self.key = key
        self.query = query
        self.table = table
        self.window = window
        self.where = f"source {mask_url(url)}"
        self.plan_read: Any = None
        """The source's ``EXPLAIN`` document a cursor check read (``query_plan``), for the
        run's estimate to take instead of reading it again; None: none."""

    style: Style
    """The SQL dialect of the source's statements (``core.scd_sql_common``)."""

    def _window_values(self) -> dict[str, Any]:
        """The window's bind values (``cur_lo``, ``cur_hi``); none without a window."""
        return self.window.values(self.style) if self.window is not None else {}

    def _translate(self, exc: BaseException) -> AsyncEtlError | None:
        """The driver's translation of ``exc``; None when it is not the driver's exception."""
        raise NotImplementedError

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Driver exceptions inside become ``ExtractError`` / ``TransientExtractError``.

        ``AsyncEtlError`` (a stop request, an error translated already) and anything that is
        not the driver's pass through unchanged.
        """
        try:
            yield
        except AsyncEtlError:
            raise
        except Exception as exc:
            err = self._translate(exc)
            if err is None:
                raise
            raise extract_error(err) from exc


def reads(
    method: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """An adapter's coroutine method, run inside ``self.reading()`` (errors translated)."""

    @functools.wraps(method)
    async def read(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.reading():
            return await method(self, *args, **kwargs)

    return read
