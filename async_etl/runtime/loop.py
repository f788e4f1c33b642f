"""Event loop selection: uvloop when available and wanted, the stdlib loop otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def uvloop_available() -> bool:
    """True when uvloop can be imported on this platform."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Callable[[], Coroutine[Any, Any, T]], *, use_uvloop: bool = True) -> T:
    """Run ``main()`` to completion on a fresh loop (uvloop's when asked for and available)."""
    if use_uvloop and uvloop_available():
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    with asyncio.Runner() as runner:
        return runner.run(main())


def running_uvloop() -> bool:
    """True when the running loop is a uvloop loop."""
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")
