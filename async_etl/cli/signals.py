"""The commands' SIGINT / SIGTERM handling: the first signal stops gently, the second at once.

``watch_signals`` is the one helper every long-running command (``bench``, ``run``,
``orchestrate``, ``sweep``) starts in its task group.  What "gently" and "at once" mean is the
command's: ``bench`` stops generating and then aborts its sends; ``run`` stops after the chunks
in flight and then cancels them.  Cancelling is always a cancel scope, never ``os._exit``: a
job's cancelled run still records itself STOPPED under its shielded cleanup, and connections
close.

A command's first moments (starting the generator pool, an embedded PostgreSQL) come before its
event loop can watch: ``EarlySignals`` counts the signals that arrive then, from the command's
very start, and ``watch_signals`` acts on them as soon as it runs.  Both install their handler
whatever the process inherited: a background job of a non-interactive shell starts with SIGINT
ignored, and ``kill -INT`` must still stop it.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType

import anyio

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class EarlySignals:
    """SIGINT / SIGTERM before ``watch_signals`` runs: the first is kept, the second interrupts.

    ``install()`` (main thread) replaces the inherited handlers; the names of the signals
    received are in ``names`` for ``watch_signals(..., early=...)`` to act on.
    """

    def __init__(self) -> None:
        self.names: list[str] = []

    def install(self) -> EarlySignals:
        """Handle SIGINT and SIGTERM from now on (until an event loop's receiver takes over)."""
        for sig in SIGNALS:
            signal.signal(sig, self._record)
        return self

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.names.append(signal.Signals(signum).name)
        if len(self.names) >= 2:  # the second signal: stop at once, as a second Ctrl-C does
            raise KeyboardInterrupt


async def watch_signals(
    first: Callable[[str], None],
    second: Callable[[str], None],
    *,
    first_note: str | None = None,
    second_note: str | None = None,
    early: EarlySignals | None = None,
) -> None:
    """Call ``first(name)`` on the first SIGINT/SIGTERM, ``second(name)`` on the next, then return.

    ``first_note`` / ``second_note`` are printed to stderr as ``async-etl: <note>`` before the
    call.  Signals ``early`` received before this ran count first (acted on at once); when this
    returns or is cancelled, ``early`` handles signals again.  Runs until cancelled or until
    the second signal.
    """
    count = 0

    def act(name: str) -> bool:
        nonlocal count
        count += 1
        note, action = (first_note, first) if count == 1 else (second_note, second)
        if note is not None:
            print(f"async-etl: {note}", file=sys.stderr, flush=True)
        action(name)
        return count >= 2

    try:
        with anyio.open_signal_receiver(*SIGNALS) as signals:
            for name in list(early.names if early is not None else ()):
                if act(name):
                    return
            async for signum in signals:
                if act(signal.Signals(signum).name):
                    return
    finally:
        if early is not None:  # the loop's receiver restored the defaults: count again
            early.names = ["(handled)"] * count
            early.install()
