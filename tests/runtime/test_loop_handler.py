"""The loop exception handler drops only asyncpg's lost-connection futures."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncpg.exceptions import ConnectionDoesNotExistError

from async_etl.runtime.loop import lost_connection_future, quiet_duplicate_futures


def _context(exc: BaseException, message: str = "Future exception was never retrieved") -> Any:
    return {"message": message, "exception": exc}


def test_lost_connection_future_is_recognised() -> None:
    """An unretrieved ConnectionDoesNotExistError future is the dropped kind."""
    assert lost_connection_future(_context(ConnectionDoesNotExistError("closed")))


def test_other_reports_are_not_dropped() -> None:
    """Another exception type, or another message, is not dropped."""
    assert not lost_connection_future(_context(ValueError("x")))
    assert not lost_connection_future(
        _context(ConnectionDoesNotExistError("c"), "Task was destroyed")
    )


def test_handler_passes_the_rest_to_the_default_handler() -> None:
    """The handler forwards a report it does not drop, and swallows one it drops."""
    seen: list[dict[str, Any]] = []

    class Loop(asyncio.SelectorEventLoop):
        def default_exception_handler(self, context: dict[str, Any]) -> None:
            seen.append(context)

    loop = Loop()
    try:
        quiet_duplicate_futures(loop, _context(ConnectionDoesNotExistError("closed")))
        other = _context(ValueError("x"))
        quiet_duplicate_futures(loop, other)
    finally:
        loop.close()
    assert seen == [other]
