"""``async with sink:`` for every async sink: enter returns the sink, exit closes it."""

from __future__ import annotations

from typing import Self


class ClosingSink:
    """Mixin: an async context manager around ``aclose()`` (subclasses define ``aclose``)."""

    async def __aenter__(self) -> Self:
        """The sink itself."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the sink (``aclose``; safe after an explicit close)."""
        await self.aclose()

    async def aclose(self) -> None:
        """Release connections; safe to call twice."""
