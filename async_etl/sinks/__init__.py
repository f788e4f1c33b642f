"""Sinks, chosen by URL scheme: CrateDB (http, https, crate), PostgreSQL, null."""

from __future__ import annotations

from typing import get_args
from urllib.parse import parse_qs, urlsplit

from async_etl.config import BenchSettings
from async_etl.core.urls import mask_url, url_problem
from async_etl.errors import ConfigError
from async_etl.typing import ManagedAsyncSink, WireFormat

SCHEMES = ("http://", "https://", "crate://", "postgresql://", "postgres://", "null://")


def sink_scheme(url: str, what: str = "--sink") -> str:
    """The scheme of a sink URL, or ConfigError naming the URL when it has none we know.

    ``what``: how the one-line error names where the URL came from: the CLI's ``--sink`` flag
    (the default), or a library function's argument (``open_writer`` passes ``"url"``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        expected = ", ".join(SCHEMES)
        raise ConfigError(f"{what} {mask_url(url)!r}: not a URL (expected e.g. {expected})")
    scheme = scheme.lower()
    if f"{scheme}://" not in SCHEMES:
        known = ", ".join(SCHEMES)
        raise ConfigError(f"{what} {mask_url(url)!r}: unknown scheme {scheme!r} (use {known})")
    if scheme != "null" and not rest.strip("/"):
        raise ConfigError(f"{what} {mask_url(url)!r}: no host")
    problem = url_problem(url)
    if problem is not None:
        raise ConfigError(f"{what} {mask_url(url)!r}: {problem}")
    return scheme


def null_wire(url: str, what: str = "--sink") -> WireFormat:
    """The wire format a ``null://`` sink asks workers to encode (``?wire=``).

    ``crate_json`` (default), ``pg_binary`` or ``none``; raises ``ConfigError`` otherwise,
    naming the URL as ``what`` (see ``sink_scheme``).
    """
    query = parse_qs(urlsplit(url).query)
    unknown = set(query) - {"wire"}
    if unknown:
        first = sorted(unknown)[0]
        raise ConfigError(f"{what} {mask_url(url)!r}: unknown parameter {first!r} (use wire=)")
    wire = query.get("wire", ["crate_json"])[-1]
    if wire not in get_args(WireFormat):
        raise ConfigError(f"{what} {mask_url(url)!r}: wire must be crate_json, pg_binary or none")
    return wire  # type: ignore[return-value]


def open_sink(
    url: str,
    settings: BenchSettings | None = None,
    *,
    table: str | None = None,
    concurrency: int | None = None,
    what: str = "url",
) -> ManagedAsyncSink:
    """The async sink for ``url``; an async context manager that closes the sink on exit.

    ``table`` and ``concurrency`` (connections) override ``settings``; without settings the
    ``BenchSettings`` defaults apply.  Raises ``ConfigError`` for an unknown or malformed URL
    (naming it as ``what``: the argument ``url``, or the CLI's ``--sink``), a bad table name
    or a concurrency below 1.
    """
    changes: dict[str, object] = {}
    if table is not None:
        changes["table"] = table
    if concurrency is not None:
        changes["concurrency"] = concurrency
    settings = (settings or BenchSettings()).replace(**changes) if changes else settings
    settings = settings or BenchSettings()
    scheme = sink_scheme(url, what)
    if scheme == "null":
        from async_etl.sinks.null import NullSink

        return NullSink(wire=null_wire(url, what))
    if scheme in ("postgresql", "postgres"):
        from async_etl.sinks.postgres import PostgresSink

        return PostgresSink(
            url, table=settings.table, concurrency=settings.pool_size, unlogged=settings.unlogged
        )
    from async_etl.sinks.cratedb import CrateDBSink

    return CrateDBSink(
        url,
        table=settings.table,
        concurrency=settings.pool_size,
        gzip_threshold=settings.gzip_threshold,
        timeout=settings.request_timeout,
    )
