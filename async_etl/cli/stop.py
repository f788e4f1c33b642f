"""``async-etl stop JOB_OR_RUN_ID``: ask a running job to stop at its next safe point.

Writes a stop request into the state store (``async_etl_stop_requests``) for every RUNNING
run of the job (or the one run with that id).  The job polls it before each chunk and
between batches: chunks in flight finish or roll back, the run ends STOPPED (exit status 3),
and the next ``async-etl run`` resumes it.  Exit status: 0 when a request was written,
1 when nothing of that name is running, 2 for a bad state URL.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from async_etl.cli.status import add_state_flag, resolve
from async_etl.jobs.state import StateStore, with_store
from async_etl.runtime import loop

__all__ = ["main", "register"]


def register(sub: Any) -> None:
    """Add the ``stop`` subcommand to the top-level parser."""
    p = sub.add_parser("stop", help="ask a running job to stop", description=__doc__)
    p.add_argument("target", metavar="JOB_OR_RUN_ID", help="job name, job file or run id")
    add_state_flag(p)
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Write the stop request(s); returns the exit status (see module doc)."""
    name, url = resolve(args.target, args.state)
    assert name is not None

    async def request(store: StateStore) -> list[str]:
        await store.ensure()
        return await store.request_stop(name)

    runs = loop.run(lambda: with_store(url, "stop", request))
    if not runs:
        print(f"async-etl: no RUNNING run of {name!r}", file=sys.stderr)
        return 1
    for run_id in runs:
        print(f"stop requested for run {run_id}")
    return 0
