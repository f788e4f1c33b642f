"""``python -m async_etl.testing.crate``: run a CrateDB stand-in until SIGINT / SIGTERM.

With ``--http lean`` the lean asyncio-Protocol layer serves on uvloop (when installed), so the
stand-in takes as little CPU as it can from a benchmark client on the same machine.  Prints
one line, ``CrateDB stand-in listening on http://HOST:PORT``, once it accepts
connections, and exits 0 after a signal.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from async_etl.runtime import loop as loops
from async_etl.testing.crate.config import HTTP_LAYERS, StandInConfig
from async_etl.testing.crate.server import CrateStandIn


def build_parser() -> argparse.ArgumentParser:
    """The command line of the stand-in."""
    p = argparse.ArgumentParser(
        prog="python -m async_etl.testing.crate", description="Run a CrateDB HTTP stand-in."
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4200, help="port; 0 picks a free one")
    p.add_argument("--version", dest="crate_version", default="5.10.11", help="version to emulate")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    p.add_argument(
        "--capacity", type=int, default=0, help="requests served at once, the rest queue (a model)"
    )
    p.add_argument(
        "--growth", type=float, default=0.1, help="service time growth at full capacity (0.1)"
    )
    p.add_argument("--stall-every", type=int, default=0, help="freeze on every Nth request")
    p.add_argument("--stall-ms", type=float, default=0.0, help="how long a freeze lasts")
    p.add_argument("--fail-rate", type=float, default=0.0, help="fraction answered 503")
    p.add_argument("--busy-rate", type=float, default=0.0, help="fraction answered 429")
    p.add_argument("--item-fail-rate", type=float, default=0.0, help="fraction of bulk items -2")
    p.add_argument("--drop-rate", type=float, default=0.0, help="fraction of connections dropped")
    p.add_argument("--count-only", action="store_true", help="count INSERTed rows, store none")
    p.add_argument("--user", default=None, help="require Basic auth with this user")
    p.add_argument("--password", default="", help="password for --user")
    p.add_argument("--seed", type=int, default=None, help="seed for the fault generator")
    p.add_argument(
        "--http",
        choices=HTTP_LAYERS,
        default="aiohttp",
        help="HTTP layer: aiohttp (default) or lean (an asyncio Protocol on uvloop when "
        "installed: a fraction of the CPU per request, the same answers and faults)",
    )
    return p


def config_from_args(argv: list[str] | None = None) -> StandInConfig:
    """Parse ``argv`` into a config; exits with status 2 on invalid flags or rates."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return StandInConfig(
            host=ns.host,
            port=ns.port,
            version=ns.crate_version,
            latency_ms=ns.latency_ms,
            capacity=ns.capacity,
            growth=ns.growth,
            stall_every=ns.stall_every,
            stall_ms=ns.stall_ms,
            fail_rate=ns.fail_rate,
            busy_rate=ns.busy_rate,
            item_fail_rate=ns.item_fail_rate,
            drop_rate=ns.drop_rate,
            count_only=ns.count_only,
            user=ns.user,
            password=ns.password,
            seed=ns.seed,
            http=ns.http,
        )
    except ValueError as exc:
        parser.error(str(exc))


async def serve(config: StandInConfig) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with CrateStandIn(config) as crate:
        print(f"CrateDB stand-in listening on {crate.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    config = config_from_args(argv)
    try:
        loops.run(lambda: serve(config), use_uvloop=config.http == "lean")
    except OSError as exc:
        print(f"cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
