"""The ``async-etl`` command: one module per subcommand, each with ``register`` and ``main``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from async_etl import __version__
from async_etl.errors import AsyncEtlError, ConfigError

COMMANDS = ("bench",)


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
    except ConfigError as exc:
        print(f"async-etl: error: {exc.message}", file=sys.stderr)
        return 2
    except AsyncEtlError as exc:
        print(f"async-etl: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("async-etl: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
