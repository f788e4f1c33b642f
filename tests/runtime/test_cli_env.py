"""orchestrate and compare take their flags from the environment too: flags > env > defaults."""

from __future__ import annotations

import pytest

from async_etl.cli import main, parse
from async_etl.errors import ConfigError


def test_orchestrate_env_sets_flags_and_flags_win() -> None:
    """ASYNC_ETL_ORCHESTRATE_* set --local-max, --fresh, --no-uvloop; a flag given wins."""
    env = {
        "ASYNC_ETL_ORCHESTRATE_LOCAL_MAX": "4",
        "ASYNC_ETL_ORCHESTRATE_FRESH": "yes",
        "ASYNC_ETL_ORCHESTRATE_UVLOOP": "N",
        "ASYNC_ETL_ORCHESTRATE_LOG_FORMAT": "json",
    }
    args = parse(["orchestrate", "plan.toml"], env)
    assert (args.local_max, args.fresh, args.uvloop, args.log_format) == (4, True, False, "json")
    args = parse(["orchestrate", "plan.toml", "--local-max", "2", "--log-format", "console"], env)
    assert (args.local_max, args.log_format) == (2, "console")
    assert parse(["orchestrate", "plan.toml"], {}).local_max is None


def test_compare_env_satisfies_a_required_flag() -> None:
    """ASYNC_ETL_COMPARE_OUT stands in for the required --out; scenario and levels too."""
    env = {
        "ASYNC_ETL_COMPARE_OUT": "results",
        "ASYNC_ETL_COMPARE_SCENARIO": "cpu",
        "ASYNC_ETL_COMPARE_RECORDS": "1_000",
    }
    args = parse(["compare"], env)
    assert (args.out, args.scenario, args.records) == ("results", "cpu", 1000)
    assert parse(["compare", "--out", "elsewhere"], env).out == "elsewhere"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ASYNC_ETL_ORCHESTRATE_LOCAL_MAX": "four"},
            "ASYNC_ETL_ORCHESTRATE_LOCAL_MAX: expected an integer, got 'four'",
        ),
        (
            {"ASYNC_ETL_ORCHESTRATE_LOG_FORMAT": "jsn"},
            "ASYNC_ETL_ORCHESTRATE_LOG_FORMAT: expected auto | console | json, got 'jsn' "
            "(did you mean 'json'?)",
        ),
        (
            {"ASYNC_ETL_ORCHESTRATE_LOCALMAX": "4"},
            "ASYNC_ETL_ORCHESTRATE_LOCALMAX: unknown setting "
            "(did you mean 'ASYNC_ETL_ORCHESTRATE_LOCAL_MAX'?)",
        ),
        (
            {"ASYNC_ETL_ORCHESTRATE_FRESH": "maybe"},
            "ASYNC_ETL_ORCHESTRATE_FRESH: expected a boolean (Y/N, yes/no, true/false, on/off "
            "or 1/0), got 'maybe'",
        ),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(env: dict[str, str], message: str) -> None:
    """A malformed or unknown ASYNC_ETL_ORCHESTRATE_* variable is a ConfigError naming it."""
    with pytest.raises(ConfigError) as caught:
        parse(["orchestrate", "plan.toml"], env)
    assert caught.value.message == message


def test_a_bad_compare_variable_exits_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the entry point: one line on stderr naming the variable, exit status 2."""
    monkeypatch.setenv("ASYNC_ETL_COMPARE_SCENARIO", "netwrk")
    assert main(["compare", "--out", "x", "--records", "1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "async-etl: error: ASYNC_ETL_COMPARE_SCENARIO: expected network | database | cpu, "
        "got 'netwrk' (did you mean 'network'?)\n"
    )


def test_another_commands_variables_do_not_matter() -> None:
    """A bad ASYNC_ETL_COMPARE_* variable does not stop orchestrate (or any other command)."""
    args = parse(["orchestrate", "plan.toml"], {"ASYNC_ETL_COMPARE_SCENARIO": "bad"})
    assert args.plan == "plan.toml"


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_compare_refuses_a_latency_that_is_not_a_finite_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """compare --latency-ms nan / inf: one line naming the flag, exit 2, no run started."""
    args = ["--records", "1", "--concurrency", "1,x", "--latency-ms", value]  # refused first
    assert main(["compare", "--out", "x", *args]) == 2
    err = capsys.readouterr().err
    assert err == f"async-etl: error: --latency-ms: must be a finite number, got {float(value)!r}\n"
