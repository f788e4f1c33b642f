"""The commands' SIGINT / SIGTERM handling: the first signal stops gently, the second at once.

``watch_signals`` is the one helper every long-running command (``bench``, ``run``,
``orchestrate``, ``sweep``) starts in its task group.  What "gently" and "at once" mean is the
command's: ``bench`` stops generating and then aborts its sends; ``run`` stops after the chunks
in flight and then cancels them.  Cancelling is always a cancel scope, never ``os._exit``: a
job's cancelled run still records itself STOPPED under its shielded cleanup, and connections
close.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import anyio

SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def watch_signals(
    first: Callable[[str], None],
    second: Callable[[str], None],
    *,
    first_note: str | None = None,
    second_note: str | None = None,
) -> None:
    """Call ``first(name)`` on the first SIGINT/SIGTERM, ``second(name)`` on the next, then return.

    ``first_note`` / ``second_note`` are printed to stderr as ``async-etl: <note>`` before the
    call.  Runs until cancelled or until the second signal.
    """
    with anyio.open_signal_receiver(*SIGNALS) as signals:
        count = 0
        async for signum in signals:
            count += 1
            name = signal.Signals(signum).name
            note, action = (first_note, first) if count == 1 else (second_note, second)
            if note is not None:
                print(f"async-etl: {note}", file=sys.stderr, flush=True)
            action(name)
            if count >= 2:
                return
