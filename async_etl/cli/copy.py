"""``async-etl copy``: a table copy from flags alone, run as the job file the flags spell.

``--source URL --source-table T --target URL --target-table T [--mode M] [--key COL,...]``
becomes the text of a job file (``job_text``) and goes through the very loader and
validation a job file does (``parse_job``), then runs like ``async-etl run``: same flags,
same exit status, resumable (the job is named after the target table unless ``--name``).
Modes: ``replace`` (full refresh, the default), ``append``, ``merge`` (SCD type 1), ``scd2``.
Without ``--key`` (nor ``ASYNC_ETL_SOURCE_KEY``) a PostgreSQL source table's primary key is
the key; a source table without one needs ``--key`` (one line, exit 2); a source that cannot
be connected to for that look-up is named as such (``copy --source: cannot connect ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from async_etl.cli.help import add_command
from async_etl.cli.run import (
    ENVIRONMENT,
    EXIT_STATUSES,
    add_run_flags,
    execute,
    log_as_flagged,
    metrics_address,
    with_flags,
)
from async_etl.core.retry import RetryPolicy
from async_etl.core.scd_sql_common import quote
from async_etl.core.specs import is_table_name
from async_etl.core.urls import dialect_of, mask_url, url_problem
from async_etl.errors import AsyncEtlError, ConfigError, unusable
from async_etl.jobs.api import JOB_RETRY
from async_etl.jobs.spec import JobSpec, parse_job
from async_etl.runtime.retrying import retrying

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
                   help="key column(s): chunking; the business key of merge / scd2 "
                        "(default: the source table's primary key)")  # fmt: skip
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


FLAGS_OF_KEYS = {
    "[source] url": "--source",
    "[source] table": "--source-table",
    "[source] key": "--key",
    "[source] incremental": "--incremental",
    "[target] url": "--target",
    "[target] table": "--target-table",
    "[state] url": "--state",
    "mode": "--mode",
    "name": "--name",
}
"""The job-file key each flag writes: a problem with it is reported under the flag."""
FROM_FLAGS = "job file <copy flags>: "


def flag_message(message: str) -> str:
    """A loader message about the flags' job text, naming the flag instead of the key."""
    if not message.startswith(FROM_FLAGS):
        return message
    rest = message.removeprefix(FROM_FLAGS)
    label, flag = next(((k, f) for k, f in FLAGS_OF_KEYS.items() if rest.startswith(f"{k}: ")),
                       ("", ""))  # fmt: skip
    problem = rest.removeprefix(f"{label}: ").replace("required key is missing", "required")
    for key, other in FLAGS_OF_KEYS.items():  # keys named inside the problem, as flags too
        if key.startswith("["):
            problem = problem.replace(key, other)
    return f"copy {flag}: {problem}" if flag else f"copy: {problem}"


NO_TABLE = "no such table"
"""``source_primary_key``'s reason for a source table that does not exist (then a hint naming
a table of that name but for case, if one exists: ``core.drift.near_table_hint``)."""


async def source_primary_key(
    url: str, table: str, retry: RetryPolicy = JOB_RETRY
) -> tuple[str, ...] | str:
    """The primary key of ``table`` at the PostgreSQL ``url``, or why it cannot be read.

    ``table`` is the job's ``[source] table``, as typed: quoted as the job quotes it, so
    ``MiXed`` is the table ``"MiXed"``, never ``mixed``.  A source that cannot be reached yet,
    or whose connection breaks during the look-up, is retried with ``retry`` (the job's
    policy), as the run's own steps are.  The reason (a string) names a missing table or a
    look-up the server refused, for the loader's one-line refusal of a missing ``--key``.
    Raises ``ConfigError`` (``unusable``: the cause's kind kept) naming ``--source`` when no
    connection could be made or kept: the source is what failed, not the missing ``--key``.
    """
    from async_etl.core.writer_sql import PG_PRIMARY_KEY
    from async_etl.drivers.postgres import (
        PG_ERRORS,
        PostgresError,
        close_quietly,
        connect_job,
        translate_pg,
    )

    try:
        relation = quote(table)
    except ValueError:
        return "not a table name"  # the loader names the bad identifier itself

    async def look_up() -> tuple[str, ...] | str:
        conn = await connect_job(url, "copy-key")
        try:
            if await conn.fetchval("SELECT to_regclass($1)", relation) is None:
                from async_etl.core.drift import near_table_hint
                from async_etl.sources.postgres import near_table

                return NO_TABLE + near_table_hint(table, await near_table(conn, table))
            return tuple(str(r[0]) for r in await conn.fetch(PG_PRIMARY_KEY, relation))
        except PG_ERRORS as exc:
            err = translate_pg(exc, f"PostgreSQL {mask_url(url)}")
            if err.retryable or not isinstance(exc, PostgresError):
                raise err from exc  # the connection, not the look-up: retried, then named
            return f"{type(exc).__name__}: {exc}"  # the server refused it: --key can do
        finally:
            await close_quietly(conn)

    try:
        return await retrying(look_up, retry, what="read the source's primary key")
    except AsyncEtlError as exc:
        raise unusable(
            f"copy --source: cannot connect to read the primary key of {table} "
            f"(no --key given): {exc.message}",
            exc,
        ) from exc


def _default_key(args: argparse.Namespace, retry: RetryPolicy) -> tuple[str, ...] | str:
    """The source table's primary key (``()`` when it has none), or why it is unreadable.

    Unreadable: no such table, a source that is not PostgreSQL, a
    ``--source`` URL the loader refuses (``url_problem``: a port past 65535 reached the driver,
    whose OverflowError was a traceback) or a ``--source-table`` / ``--target-table`` that is
    no table name: the loader then refuses that flag in one line, before any connection.
    A source that cannot be connected to raises ``ConfigError`` (``source_primary_key``).
    """
    if not (is_table_name(args.source_table) and is_table_name(args.target_table)):
        return "not a table name"
    if dialect_of(args.source) != "postgresql":
        return "the source is not PostgreSQL"
    if url_problem(args.source) is not None:
        return "not a usable URL"
    return asyncio.run(source_primary_key(args.source, args.source_table, retry))


def _parse(args: argparse.Namespace, key_note: str = "") -> JobSpec:
    """The job the flags spell, through the job loader; ``ConfigError`` naming the flag.

    ``key_note`` follows the loader's refusal of a missing ``--key`` (why it has no default).
    """
    text = job_text(args)
    try:
        return with_flags(
            args, lambda o: parse_job(text, path="<copy flags>", overrides=o, env=os.environ)
        )
    except ConfigError as exc:
        message = flag_message(exc.message)
        if message.startswith("copy --key: required"):
            message += key_note
        err = ConfigError(message)
        err.kind = exc.kind
        raise err from None


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    """The validated job of the flags; raises ``ConfigError`` (one line) naming the flag.

    Without ``--key`` the key is the PostgreSQL source table's primary key, read after the
    other flags passed the loader (with a stand-in key: a bad flag is named before any
    connection) with the job's ``[retry]`` policy (``--set retry.*``, the environment); a
    source table that does not exist is refused naming it.
    """
    if args.key is not None or os.environ.get("ASYNC_ETL_SOURCE_KEY"):
        return _parse(args)
    probe = _parse(argparse.Namespace(**{**vars(args), "key": "async_etl_key"}))
    found = _default_key(args, probe.retry or JOB_RETRY)
    if isinstance(found, tuple) and found:
        return _parse(argparse.Namespace(**{**vars(args), "key": ",".join(found)}))
    if isinstance(found, str) and found.startswith(NO_TABLE):  # the table, not the key
        where, hint = mask_url(args.source), found.removeprefix(NO_TABLE)
        raise ConfigError(f"copy --source-table: no table {args.source_table} in {where}{hint}")
    return _parse(
        args,
        f": {args.source_table} has no primary key to default to"
        if found == ()
        else f": the primary key of {args.source_table} could not be read to default to ({found})",
    )


def main(args: argparse.Namespace) -> int:
    """Build the job from the flags and run it (exit status as ``async-etl run``)."""
    metrics_address(args)  # a flag mistake is told before any database is asked
    log_as_flagged(args)  # the key look-up's retries are events too
    return execute(spec_from_args(args), args)
