"""The ``async-etl`` command: one module per subcommand, each with ``register`` and ``main``."""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import os
import select
import sys
import threading
from collections.abc import Mapping, Sequence

from async_etl import __version__
from async_etl._launch import fewer_gc_passes
from async_etl.cli.envflags import apply_env
from async_etl.cli.help import HelpFormatter, Parser, epilog
from async_etl.core.coerce import did_you_mean
from async_etl.errors import AsyncEtlError, ConfigError, first_etl_error

COMMANDS = (
    "bench",
    "check",
    "compare",
    "completion",
    "copy",
    "orchestrate",
    "run",
    "stop",
    "status",
    "sweep",
)

EXIT_STATUSES = {0: "success", 1: "a failure", 2: "bad input", 3: "stopped (run, orchestrate)"}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered, all with ``HelpFormatter``.

    ``only``: register just that command when it is one (its module alone is imported, so a
    job run does not pay for importing the load generator's and the orchestrator's modules).
    """
    parser = Parser(
        prog="async-etl",
        description="An asyncio-native ingestion engine.",
        epilog=epilog(EXIT_STATUSES)
        + "\n\nasync-etl COMMAND --help shows a command's flags, exit statuses and variables.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"async-etl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in (only,) if only in COMMANDS else COMMANDS:
        importlib.import_module(f"async_etl.cli.{name}").register(sub)
    for command in subcommands(parser).values():
        command.formatter_class = HelpFormatter
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's name and parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command_name(argv: Sequence[str]) -> str | None:
    """The command in ``argv``: the first word that is not an option (the top level has none)."""
    return next((word for word in argv if not word.startswith("-")), None)


def find_knee_alias(words: list[str]) -> list[str]:
    """``bench --find-knee [concurrency|rate] FLAGS`` spelled as ``sweep FLAGS [--by rate]``."""
    if _command_name(words) != "bench" or not any(
        w == "--find-knee" or w.startswith("--find-knee=") for w in words
    ):
        return words
    out: list[str] = []
    by, i = "concurrency", 0
    while i < len(words):
        word = words[i]
        if word == "--find-knee":
            if i + 1 < len(words) and words[i + 1] in ("concurrency", "rate"):
                by, i = words[i + 1], i + 1
        elif word.startswith("--find-knee="):
            by = word.partition("=")[2]
        else:
            out.append(word)
        i += 1
    out[out.index("bench")] = "sweep"
    return [*out, "--by", by]


def parse(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    """Parse ``argv``, the command's ``env_prefix`` variables acting as flag defaults.

    ``bench --find-knee`` is parsed as ``sweep`` (see ``find_knee_alias``).  Raises
    ``ConfigError`` for a bad variable; argparse exits 2 for a bad command line.
    """
    words = find_knee_alias(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser(_command_name(words))
    command = subcommands(parser).get(_command_name(words) or "")
    if command is not None:
        apply_env(command, env)
    args, extra = parser.parse_known_args(words)
    if extra:  # said by the command, as its other bad flags are, with the flag meant
        flags = [f for a in (command or parser)._actions for f in a.option_strings]
        meant = next((did_you_mean(w.partition("=")[0], flags) for w in extra
                      if w.startswith("--")), "")  # fmt: skip
        (command or parser).error(f"unrecognized arguments: {' '.join(extra)}{meant}")
    return args


PIPE_GONE = 128 + 13
"""Exit status when stdout's reader went away: 128 + SIGPIPE (13), as a shell reports a
process that signal ended (``yes | head``), so it is not read as the command's failure."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a subcommand; user errors print one line and exit 2, failures exit 1.

    Called for the process (``argv`` None: the ``async-etl`` script, ``python -m async_etl``),
    it keeps the garbage collector out of the start and the exit: collection is off while
    the package and the command's modules are imported (``async_etl._launch`` turns it off
    before the package's first import; tens of thousands of objects, all kept; 5-20 ms of
    collections), those objects are then frozen (``gc.freeze``: no later collection walks
    them again), the young generation is collected only past ``_launch.GC_YOUNG_OBJECTS``
    objects (``fewer_gc_passes``), and everything is frozen on the way out, so the
    interpreter's exit skips a last collection over every object (30 ms of a 10-row job);
    then it ends the process
    itself, skipping the interpreter's teardown (``exit_now``).  Called from code, it leaves
    the collector be and returns the exit status.
    """
    process = argv is None
    if process:
        gc.disable()
    try:
        code = _main(argv, process=process)
    finally:
        if process:
            gc.freeze()
    if process:
        exit_now(code)
    return code


def exit_now(code: int) -> None:
    """End the process with ``code`` without the interpreter's teardown, if nothing else runs.

    The exit handlers run (``atexit``: Ray's shutdown, a coverage tool's) and stdout / stderr
    are flushed as at a normal exit; then ``os._exit`` skips freeing every module and object
    one by one (4-5 ms of CPU at the end of a 10-row job, nothing anyone sees).  Only when the
    main thread is the only thread alive (a normal exit would wait for the others); when the
    streams cannot be flushed (a closed pipe) it returns, and the caller's ``sys.exit`` ends
    the process the usual way, reporting it.
    """
    if threading.active_count() != 1:
        return
    atexit._run_exitfuncs()  # run once: the registry is empty afterwards
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code)


def _main(argv: Sequence[str] | None, *, process: bool) -> int:
    try:
        args = parse(argv, os.environ)
        if process:  # the command's modules are imported: freeze them, collect from here on
            gc.freeze()
            fewer_gc_passes()
            gc.enable()
        code: int = args.handler(args)
    except AsyncEtlError as exc:
        return _report(exc)
    except BaseExceptionGroup as group:  # from a task group: report its first own error
        found = first_etl_error(group)
        if found is None:
            raise
        return _report(found)
    except KeyboardInterrupt:
        print("async-etl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not stdout_gone():
            raise
        return PIPE_GONE
    return code


def stdout_gone() -> bool:
    """True when stdout's reader has gone (``async-etl ... | head``); stdout is then devnull.

    Python's "Note on SIGPIPE" (``signal`` module documentation): the interpreter ignores
    SIGPIPE, so a write to a closed pipe raises ``BrokenPipeError``; point stdout at devnull
    so the exit's flush of what is left cannot raise again, and end with no traceback, exit
    ``PIPE_GONE`` (141: what a shell reports for a process SIGPIPE ended, not 1 = failed).
    Whose pipe broke is asked of the descriptor (``poll``: a pipe with no reader reports
    ``POLLERR``); False, stdout untouched, when it is not stdout's (the error is re-raised).
    """
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
    except (AttributeError, OSError, ValueError):  # no descriptor, or no poll (Windows)
        return False
    poller.register(fd, select.POLLOUT)
    if not any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return True


def _report(exc: AsyncEtlError) -> int:
    """Print ``exc`` as one line; exit 2 for bad input, 1 for failures."""
    print(f"async-etl: error: {exc.message}", file=sys.stderr)
    return 2 if isinstance(exc, ConfigError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
