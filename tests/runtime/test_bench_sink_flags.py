"""``bench``'s one-sink settings (``--unlogged``, ``--gzip-threshold``) against other sinks."""

from __future__ import annotations

import argparse

import pytest

from async_etl.cli.bench import sink_only_problem
from async_etl.config import bench_settings
from async_etl.errors import ConfigError


def _check(sink: str, env: dict[str, str], **flags: object) -> None:
    """``sink_only_problem`` for ``sink`` with ``flags`` on the line and ``env`` set."""
    given = {"unlogged": None, "gzip_threshold": None, **flags}
    args = argparse.Namespace(**given)
    settings = bench_settings({"sink": sink, "records": 9, **given}, env)
    sink_only_problem(args, settings, env)


@pytest.mark.parametrize("value", ["false", "0"])
def test_an_unlogged_setting_that_asks_nothing_is_not_refused(value: str) -> None:
    """ASYNC_ETL_BENCH_UNLOGGED=false asks for no UNLOGGED table: any sink takes it."""
    _check("null://", {"ASYNC_ETL_BENCH_UNLOGGED": value})  # before: refused as --unlogged


@pytest.mark.parametrize(
    ("sink", "env", "flags", "named"),
    [
        ("null://", {"ASYNC_ETL_BENCH_UNLOGGED": "true"}, {}, "ASYNC_ETL_BENCH_UNLOGGED"),
        ("null://", {}, {"unlogged": True}, "--unlogged"),
        ("postgresql://h/db", {"ASYNC_ETL_BENCH_GZIP_THRESHOLD": "0"}, {},
         "ASYNC_ETL_BENCH_GZIP_THRESHOLD"),
        ("postgresql://h/db", {}, {"gzip_threshold": 0}, "--gzip-threshold"),
    ],
)  # fmt: skip
def test_a_setting_for_another_sink_is_refused_naming_where_it_was_given(
    sink: str, env: dict[str, str], flags: dict[str, object], named: str
) -> None:
    """The one line names the flag, or the environment variable it came from (before: the flag)."""
    with pytest.raises(ConfigError) as err:
        _check(sink, env, **flags)
    assert err.value.message.startswith(f"{named}: applies to "), err.value.message
    assert "\n" not in err.value.message
