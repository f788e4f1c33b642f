"""What every mapper-job source adapter holds: where it reads, its key, its cursor window."""

from __future__ import annotations

from typing import Any

from async_etl.core.incremental import CursorWindow

__all__ = ["SourceBase"]


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

    def _window_values(self) -> dict[str, Any]:
        """The window's bind values (``cur_lo``, ``cur_hi``); none without a window."""
        return self.window.values() if self.window is not None else {}
