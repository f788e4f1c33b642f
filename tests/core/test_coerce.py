"""One coercion table for every environment / ``--set`` string, one hint, one file-error type."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from async_etl.config import ENV_KINDS, BenchSettings, bench_settings
from async_etl.core.coerce import FALSE_WORDS, TRUE_WORDS, coerce, did_you_mean, parse_bool
from async_etl.errors import ConfigError
from async_etl.jobs.spec import JobSpec, parse_job
from async_etl.orchestrator.plan import parse_plan

JOB = """
name = "j"
[source]
url = "postgresql://u@h/db"
table = "s"
key = ["id"]
[target]
url = "postgresql://u@h/db"
table = "t"
[scd]
type = 1
business_key = ["id"]
"""


def _job_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_job(JOB, path="j.toml", env=env)
    return caught.value.message


def _bench_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        bench_settings({}, env)
    return caught.value.message


@pytest.mark.parametrize("word", sorted(TRUE_WORDS | FALSE_WORDS))
def test_every_boolean_word_means_the_same_in_bench_and_job_env(word: str) -> None:
    """Each word of the one table sets a bench flag and a job key to the same boolean."""
    expected = word in TRUE_WORDS
    for text in (word, word.upper(), f" {word} "):
        assert parse_bool(text) is expected
        assert bench_settings({}, {"ASYNC_ETL_BENCH_UNLOGGED": text}).unlogged is expected
        spec = parse_job(JOB, path="j.toml", env={"ASYNC_ETL_PARALLEL_ENABLED": text})
        assert spec.parallel.enabled is expected


def test_a_bad_boolean_gets_the_same_reason_from_bench_and_job_env() -> None:
    """``maybe`` is refused with one wording, naming the variable, in both places."""
    bench = _bench_error({"ASYNC_ETL_BENCH_UNLOGGED": "maybe"})
    job = _job_error({"ASYNC_ETL_PARALLEL_ENABLED": "maybe"})
    with pytest.raises(ValueError) as caught:
        parse_bool("maybe")
    reason = str(caught.value)
    assert bench == f"ASYNC_ETL_BENCH_UNLOGGED: {reason}"
    assert job == f"job file j.toml: ASYNC_ETL_PARALLEL_ENABLED=maybe: {reason}"


def test_every_bench_setting_has_a_typed_parser() -> None:
    """The typed table covers every BenchSettings field, with choices for the Literal ones."""
    names = {f.name for f in dataclasses.fields(BenchSettings)}
    assert set(ENV_KINDS) == names
    assert ENV_KINDS["mode"] == (str, ("async", "threads"))
    assert ENV_KINDS["log_format"] == (str, ("auto", "console", "json"))
    assert ENV_KINDS["records"] == (int, None)
    assert ENV_KINDS["rate"] == (float, None)
    assert ENV_KINDS["uvloop"] == (bool, None)


def test_a_bench_env_choice_names_the_variable_and_the_closest_value() -> None:
    """``ASYNC_ETL_BENCH_MODE=thread``: one line naming the variable, the choices and 'threads'."""
    message = _bench_error({"ASYNC_ETL_BENCH_MODE": "thread"})
    assert message == (
        "ASYNC_ETL_BENCH_MODE: expected async | threads, got 'thread' (did you mean 'threads'?)"
    )


def test_an_unknown_bench_variable_is_refused_not_ignored() -> None:
    """A misspelt ``ASYNC_ETL_BENCH_*`` variable is one line with the closest known name."""
    message = _bench_error({"ASYNC_ETL_BENCH_CONCURENCY": "16"})
    assert message == (
        "ASYNC_ETL_BENCH_CONCURENCY: unknown setting (did you mean 'ASYNC_ETL_BENCH_CONCURRENCY'?)"
    )


def test_numbers_take_underscores_in_bench_and_job_env() -> None:
    """``1_000`` is a thousand for a bench number and a job-file number alike."""
    assert bench_settings({}, {"ASYNC_ETL_BENCH_BATCH_SIZE": "1_000"}).batch_size == 1000
    assert bench_settings({}, {"ASYNC_ETL_BENCH_RATE": "2_500.5"}).rate == 2500.5
    spec = parse_job(JOB, path="j.toml", env={"ASYNC_ETL_PARALLEL_CHUNK_SIZE": "1_000"})
    assert spec.parallel.chunk_size == 1000


def test_coerce_checks_choices_and_suggests() -> None:
    """``coerce`` returns the typed value, and refuses a value outside the choices."""
    assert coerce(" 7 ", int) == 7
    assert coerce("json", str, ("auto", "console", "json")) == "json"
    with pytest.raises(ValueError, match=r"expected auto \| console \| json, got 'jsn'"):
        coerce("jsn", str, ("auto", "console", "json"))
    assert did_you_mean("consol", ["auto", "console"]) == " (did you mean 'console'?)"
    assert did_you_mean("zzz", ["auto", "console"]) == ""


def parse_job_file(path: Path) -> JobSpec:
    """A job loader for plans (unused by the plans here: they fail before loading)."""
    return parse_job(path.read_text(), path=str(path))


def test_job_and_plan_files_word_their_errors_alike(tmp_path: Path) -> None:
    """An unknown key in a job file and in a plan file: the same shape and the same hint."""
    with pytest.raises(ConfigError) as in_job:
        parse_job(JOB.replace('name = "j"', 'name = "j"\nnmae = "x"'), path="j.toml")
    with pytest.raises(ConfigError) as in_plan:
        parse_plan(
            'name = "p"\nlocal_mx = 2\n', path="p.toml", base_dir=tmp_path, load=parse_job_file
        )
    assert in_job.value.message == (
        "job file j.toml: nmae: unknown section or key (did you mean 'name'?)"
    )
    assert in_plan.value.message == (
        "plan file p.toml: local_mx: unknown key (did you mean 'local_max'?)"
    )
