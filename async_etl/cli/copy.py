"""``async-etl copy``: a table copy from flags alone, run as the job file the flags spell.

``--source URL --source-table T --target URL --target-table T [--mode M] [--key COL,...]``
becomes the text of a job file (``job_text``) and goes through the very loader and
validation a job file does (``parse_job``), then runs like ``async-etl run``: same flags,
same exit status, resumable (the job is named after the target table unless ``--name``).
Modes: ``replace`` (full refresh, the default), ``append``, ``merge`` (SCD type 1), ``scd2``.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from async_etl.cli.help import add_command
from async_etl.cli.run import ENVIRONMENT, EXIT_STATUSES, add_run_flags, execute
from async_etl.jobs.spec import JobSpec, parse_job

__all__ = ["job_text", "main", "register", "spec_from_args"]

MODES = ("replace", "append", "merge", "scd2")


def register(sub: Any) -> None:
    """Add the ``copy`` subcommand to the top-level parser."""
    p = add_command(
        sub,
        "copy",
        help="copy a table from flags alone (replace, append, merge or scd2)",
        doc=__doc__,
        exit_codes=EXIT_STATUSES,
        env=ENVIRONMENT,
    )
    p.add_argument("--source", required=True, metavar="URL", help="PostgreSQL or Oracle URL")
    p.add_argument("--source-table", dest="source_table", required=True, metavar="T",
                   help="schema.table to read")  # fmt: skip
    p.add_argument("--target", required=True, metavar="URL",
                   help="PostgreSQL, CrateDB or Oracle URL")  # fmt: skip
    p.add_argument("--target-table", dest="target_table", required=True, metavar="T",
                   help="schema.table to write (created if missing)")  # fmt: skip
    p.add_argument("--mode", default="replace", choices=MODES,
                   help="replace (full refresh, default) | append | merge | scd2")  # fmt: skip
    p.add_argument("--key", default=None, metavar="COL[,COL]",
                   help="key column(s): chunking; the business key of merge / scd2")  # fmt: skip
    p.add_argument("--incremental", default=None, metavar="COL",
                   help="read only rows past the last run's highest COL")  # fmt: skip
    p.add_argument("--state", default=None, metavar="URL",
                   help="PostgreSQL state store (needed for a non-PostgreSQL target)")  # fmt: skip
    p.add_argument("--name", default=None, metavar="NAME",
                   help="the job name (default: copy_<target table>)")  # fmt: skip
    add_run_flags(p)
    p.set_defaults(handler=main)


def _s(value: str) -> str:
    """A TOML basic string (JSON's string escapes are TOML's)."""
    return json.dumps(value)


def job_text(args: argparse.Namespace) -> str:
    """The job file the flags in ``args`` spell (missing ``--key`` is left to the loader)."""
    name = args.name or "copy_" + args.target_table.replace(".", "_")
    lines = [f"name = {_s(name)}", f"mode = {_s(args.mode)}", "[source]",
             f"url = {_s(args.source)}", f"table = {_s(args.source_table)}"]  # fmt: skip
    if args.key is not None:
        keys = [k.strip() for k in args.key.split(",")]
        lines.append(f"key = [{', '.join(_s(k) for k in keys)}]")
    if args.incremental is not None:
        lines.append(f"incremental = {_s(args.incremental)}")
    lines += ["[target]", f"url = {_s(args.target)}", f"table = {_s(args.target_table)}"]
    if args.state is not None:
        lines += ["[state]", f"url = {_s(args.state)}"]
    return "\n".join(lines) + "\n"


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    """The validated job of the flags; raises ``ConfigError`` (one line) like a job file."""
    overrides = [*args.overrides, *(["mode=full_refresh"] if args.full_refresh else [])]
    return parse_job(job_text(args), path="<copy flags>", overrides=overrides, env=os.environ)


def main(args: argparse.Namespace) -> int:
    """Build the job from the flags and run it (exit status as ``async-etl run``)."""
    return execute(spec_from_args(args), args)
