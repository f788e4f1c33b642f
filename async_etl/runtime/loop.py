"""Event loop selection: uvloop when available and wanted, the stdlib loop otherwise.

Every loop ``run`` starts gets ``quiet_duplicate_futures`` as its exception handler: asyncpg
(0.32) leaves its COPY waiter future unretrieved when a backend is terminated mid-COPY
(``pg_terminate_backend``): the COPY call fails in our code, which retries the chunk on a
new connection, but asyncpg's own waiter future, holding ``ConnectionDoesNotExistError``, is
never awaited, and asyncio prints it with a traceback on stderr when it is collected.  Only
that report is dropped (logged at debug); everything else goes to the default handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from async_etl.log import get_logger

T = TypeVar("T")

log = get_logger(__name__)

_NEVER_RETRIEVED = "exception was never retrieved"


def lost_connection_future(context: dict[str, Any]) -> bool:
    """True for an unretrieved future holding a lost PostgreSQL connection's error.

    ``context`` is an asyncio exception-handler context.  Such a future is asyncpg's waiter
    for an operation on a connection that died: the caller's own await failed too (the lost
    connection is seen and retried there), so the future adds nothing but a traceback.  Which
    errors are a lost connection is the driver's call (``drivers.postgres.is_lost_connection``).
    """
    from async_etl.drivers.postgres import is_lost_connection

    message = str(context.get("message", ""))
    exc = context.get("exception")
    return _NEVER_RETRIEVED in message and exc is not None and is_lost_connection(exc)


def quiet_duplicate_futures(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Loop exception handler: drop ``lost_connection_future`` reports, pass on the rest."""
    if lost_connection_future(context):
        log.debug("lost-connection future dropped", error=str(context.get("exception")))
        return
    loop.default_exception_handler(context)


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
            runner.get_loop().set_exception_handler(quiet_duplicate_futures)
            return runner.run(main())
    with asyncio.Runner() as runner:
        runner.get_loop().set_exception_handler(quiet_duplicate_futures)
        return runner.run(main())


def running_uvloop() -> bool:
    """True when the running loop is a uvloop loop."""
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")
