"""The ``async-etl`` command's process: no garbage collection while its modules are imported.

``python -m async_etl`` and the ``async-etl`` script both import the package
(``async_etl/__init__``) before any of the command's own code runs, and the collector ran
37 times during that import (5-20 ms of a 10-row copy's start on a loaded machine) over
objects that all stay.  The package imports this module first: in that process only,
collection is turned off here, and ``cli.main`` freezes what the imports made
(``gc.freeze``: "move them to a permanent generation and ignore them in all the future
collections", CPython's ``gc`` documentation) and turns it back on before the command
runs.  Any other process (a library import, a test run) keeps the collector as it is.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

SCRIPTS = frozenset({"async-etl", "async-etl.exe", "async-etl-script.py", "async-etl-script.pyw"})
"""The console script's names (``[project.scripts]``; pip's Windows launchers)."""

GC_YOUNG_OBJECTS = 50_000
"""The young gc generation's threshold of a generator worker and of the command's process
(CPython's default: 700 objects)."""


def fewer_gc_passes() -> None:
    """Collect this process's youngest gc generation only past ``GC_YOUNG_OBJECTS`` objects.

    The older generations' thresholds are kept.  Two kinds of process call it, for reasons of
    their own:

    * A generator pool worker (``runtime.executor``).  A CrateDB unit of 32 batches of 100 rows
      builds 3,200 row tuples at once; at CPython's threshold of 700 about one young pass ran
      per unit and walked all of them: ~10 µs a 100-row batch, 12 % of a worker's generation
      time (``gc.callbacks``).  Generation makes no reference cycles, so such a pass found
      nothing to collect.  RESULTS.md, issue 12, "A pool worker's per-batch cost".
    * The command's process, once its modules are imported (``cli.main``).  It runs every
      command (drivers, the event loop, task groups), and it does make reference cycles: the
      generation argument does not hold there.  What it saves, measured: a 10-row copy ran
      13 young passes and an older one (2-4 ms, which freed 87 objects) at 700, 2 passes at
      50,000 (RESULTS.md, "The 10-row job, fourth pass").  What it costs: cyclic garbage
      lives longer between passes, until the count (net new gc-tracked objects) reaches
      50,000, so the process holds more of it at a time; a pass still runs then, so that
      memory stays bounded.
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_OBJECTS, middle, old)


MODULES = frozenset({"async_etl", "async_etl.__main__", "async_etl.cli", "async_etl.cli.__main__"})
"""The modules ``python -m`` runs as the command."""


def is_cli(argv0: str, orig_argv: Sequence[str]) -> bool:
    """True when this process is the ``async-etl`` command, judged while the package imports.

    ``argv0``: ``sys.argv[0]``, the script's path (the console script) or ``-m`` (while
    ``python -m`` imports the module's packages, before it runs the module); ``orig_argv``:
    the interpreter's own command line (``sys.orig_argv``), which names the ``-m`` module.
    Another program's ``python -m`` whose package imports ``async_etl`` is not the command,
    nor is a process ``multiprocessing`` spawned from the command (a generator pool's worker,
    ``--multiprocessing-fork`` on its command line): it inherits the command's ``sys.argv``
    and loads the script again, but never runs ``cli.main``, which turns collection back on.
    """
    if "--multiprocessing-fork" in orig_argv:
        return False
    if argv0.replace("\\", "/").rpartition("/")[2] in SCRIPTS:  # no pathlib: not loaded yet
        return True
    if argv0 != "-m":
        return False
    words = iter(orig_argv[1:])
    for word in words:
        if word == "--check-hash-based-pycs":
            next(words, None)
            continue
        if word.startswith("--") or not word.startswith("-"):
            continue
        flags = word[1:]
        for i, flag in enumerate(flags):
            if flag == "m":  # the rest of the word or the next one is the module
                return (flags[i + 1 :] or next(words, "")) in MODULES
            if flag == "c":
                return False
            if flag in "WX":  # takes a value: the rest of the word or the next one
                if i + 1 == len(flags):
                    next(words, None)
                break
    return False


COMMAND = is_cli((getattr(sys, "argv", None) or [""])[0], sys.orig_argv)
"""Whether this process is the ``async-etl`` command (its job run's last closes need not wait:
``drivers.postgres.process_ends_after``)."""

if COMMAND:
    gc.disable()
