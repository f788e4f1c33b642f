"""The ``async-etl`` command: one module per subcommand, each with ``register`` and ``main``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from async_etl import __version__
from async_etl.errors import AsyncEtlError, ConfigError, first_etl_error

COMMANDS = ("bench", "check", "compare", "copy", "orchestrate", "run", "stop", "status", "sweep")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="async-etl", description="An asyncio-native ingestion engine."
    )
    parser.add_argument("--version", action="version", version=f"async-etl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"async_etl.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a subcommand; user errors print one line and exit 2, failures exit 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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
    return code


def _report(exc: AsyncEtlError) -> int:
    """Print ``exc`` as one line; exit 2 for bad input, 1 for failures."""
    print(f"async-etl: error: {exc.message}", file=sys.stderr)
    return 2 if isinstance(exc, ConfigError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
