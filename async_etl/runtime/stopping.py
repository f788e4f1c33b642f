"""The stop request both runners share: a reason and an event (anyio's or threading's)."""

from __future__ import annotations

from typing import Protocol


class _Event(Protocol):
    def is_set(self) -> bool: ...

    def set(self) -> None: ...


class Stoppable:
    """``stop(reason)`` / ``stopping`` over an event the runner provides as ``_stop``."""

    _stop: _Event
    _stop_reason: str

    def stop(self, reason: str = "stop requested") -> None:
        """Stop generating; deliver what is already generated, then return from ``run``."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop.is_set()
