"""The mapper job file: defaults, priority, and one-line errors naming file and key."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from async_etl.core.retry import RetryPolicy
from async_etl.core.urls import dialect_of, mask_url
from async_etl.errors import ConfigError
from async_etl.jobs.api import JOB_RETRY, JobOptions
from async_etl.jobs.spec import ScdSpec, load_job, parse_job, refuse_unused

JOB = """
name = "dim_customer"

[source]
url = "postgresql://postgres:s3cret@127.0.0.1:5432/test"
query = "SELECT id, name, email, city, tier FROM src.customers"
key = ["id"]

[target]
url = "postgresql://postgres@127.0.0.1:5432/test"
table = "dw.dim_customer"

[scd]
type = 2
business_key = ["id"]
tracked = ["name", "email", "city"]
overwrite = ["tier"]
deletes = "expire"

[parallel]
enabled = true
max_workers = 4
chunk_size = 50000
min_rows_for_parallel = 100000
"""


def err(text: str, **kw: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_job(text, path="jobs/dim.toml", **kw)  # type: ignore[arg-type]
    msg = info.value.message
    assert "\n" not in msg and "jobs/dim.toml" in msg
    return msg


def test_issue_example_parses():
    """The issue's example job file loads with every key as written."""
    job = parse_job(JOB)
    assert job.name == "dim_customer" and job.source.key == ("id",)
    assert job.scd == ScdSpec(
        type=2,
        business_key=("id",),
        tracked=("name", "email", "city"),
        overwrite=("tier",),
        deletes="expire",
    )
    assert job.parallel.max_workers == 4 and job.on_bad_row == "fail"
    assert job.state is not None and job.state.url == job.target.url


def test_defaults():
    """Omitted sections take defaults; business_key defaults to the source key."""
    text = JOB.split("[scd]")[0].replace('key = ["id"]', 'key = "id"')
    job = parse_job(text)
    assert job.scd.business_key == ("id",) and job.scd.tracked is None
    assert job.scd.type == 2 and job.scd.deletes == "ignore"
    assert job.parallel.chunk_size is None  # unset: the run picks it (core.chunks.chunk_sizing)
    assert job.parallel.max_workers == 4 and job.parallel.min_rows_for_parallel == 100_000


def test_priority_set_over_file_over_env(tmp_path: Path):
    """--set beats the file, the file beats the environment, the environment beats defaults."""
    path = tmp_path / "job.toml"
    path.write_text(JOB.replace("max_workers = 4\n", ""))
    env = {
        "ASYNC_ETL_PARALLEL_MAX_WORKERS": "7",
        "ASYNC_ETL_PARALLEL_CHUNK_SIZE": "9",
        "ASYNC_ETL_PARALLEL_ENABLED": "N",
        "ASYNC_ETL_TEST_DSN": "ignored",
    }
    job = load_job(path, env=env)
    assert job.parallel.max_workers == 7  # env fills a key the file lacks
    assert job.parallel.chunk_size == 50_000  # file beats env
    assert job.parallel.enabled is True  # file beats env
    job = load_job(path, env=env, overrides=["parallel.chunk_size=123", "parallel.enabled=no"])
    assert job.parallel.chunk_size == 123 and job.parallel.enabled is False


@pytest.mark.parametrize(
    ("var", "hint"),
    [
        ("ASYNC_ETL_PARALLEL_MAX_WORKRS", "ASYNC_ETL_PARALLEL_MAX_WORKERS"),
        ("ASYNC_ETL_SOURCE_QUERRY", "ASYNC_ETL_SOURCE_QUERY"),
        ("ASYNC_ETL_RETRY_ATTEMPTS", "ASYNC_ETL_RETRY_MAX_ATTEMPTS"),
        ("ASYNC_ETL_STATE_URI", "ASYNC_ETL_STATE_URL"),
    ],
)
def test_a_misspelt_section_variable_is_one_line(var: str, hint: str):
    """ASYNC_ETL_<SECTION>_<typo> is refused naming the closest variable, not silently ignored."""
    msg = err(JOB, env={var: "3", "ASYNC_ETL_TEST_DSN": "x", "ASYNC_ETL_BENCH_MODE": "async"})
    assert f"{var}: unknown setting (did you mean '{hint}'?)" in msg


@pytest.mark.parametrize(
    ("text", "value"),
    [("Y", True), ("n", False), ("true", True), ("0", False), ("yes", True), ("No", False)],
)
def test_env_booleans(text: str, value: bool):
    """Booleans from the environment accept Y/N, y/n, true/false, 1/0, yes/no."""
    job = parse_job(JOB.replace("enabled = true\n", ""), env={"ASYNC_ETL_PARALLEL_ENABLED": text})
    assert job.parallel.enabled is value


def test_set_lists_and_top_level():
    """--set takes comma lists or TOML arrays for columns, and top-level keys without a section."""
    job = parse_job(JOB, overrides=["scd.tracked=name, email", "on_bad_row=reject"])
    assert job.scd.tracked == ("name", "email") and job.on_bad_row == "reject"
    job = parse_job(JOB, overrides=['scd.tracked=["city"]'])
    assert job.scd.tracked == ("city",)


def test_set_reads_quoted_strings_as_toml():
    """--set scd.deletes="expire" is the string expire (as in the file); bare words still work."""
    job = parse_job(JOB, overrides=['scd.deletes="expire"', "on_bad_row='reject'"])
    assert job.scd.deletes == "expire" and job.on_bad_row == "reject"
    job = parse_job(JOB, overrides=['scd.tracked="city"', 'name="a b"', "scd.deletes=expire"])
    assert job.scd.tracked == ("city",) and job.name == "a b" and job.scd.deletes == "expire"


def test_malformed_toml_names_line():
    """Malformed TOML reports the line number."""
    assert "line 3" in err('name = "x"\n[source]\nurl = = 1\n')


def test_unknown_key_suggests():
    """An unknown key names the section and suggests the closest valid key."""
    msg = err(JOB.replace("max_workers", "max_workrs"))
    assert "[parallel] max_workrs" in msg and "did you mean 'max_workers'" in msg
    assert "did you mean 'parallel'" in err(JOB.replace("[parallel]", "[paralel]"))
    assert "did you mean 'chunk_size'" in err(JOB, overrides=["parallel.chunk_sise=3"])


def test_missing_required_key():
    """A missing required key is named, with the env variable that could set it."""
    msg = err(JOB.replace('table = "dw.dim_customer"', ""))
    assert "[target] table" in msg and "ASYNC_ETL_TARGET_TABLE" in msg
    assert "exactly one" in err(JOB.replace("query =", "table = 'src.c'\nquery ="))


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("max_workers = 4", 'max_workers = "4"', "[parallel] max_workers: expected an integer"),
        ("max_workers = 4", "max_workers = 0", "max_workers: must be >= 1"),
        ("chunk_size = 50000", "chunk_size = 0", "chunk_size: must be >= 1"),
        ("chunk_size = 50000", f"chunk_size = {2**64}", "chunk_size: must be <= 9,223,372,"),
        ("max_workers = 4", f"max_workers = {2**63}", "max_workers: must be <= 9,223,372,"),
        ("enabled = true", 'enabled = "yes"', "enabled: expected true or false"),
        ('"dw.dim_customer"', '"dw.dim-customer"', "[target] table: bad identifier"),
        ('"dw.dim_customer"', '"db.dw.dim_customer"', "want name or schema.name"),
        ('key = ["id"]', 'key = ["id; drop"]', "[source] key: bad identifier"),
        ("type = 2", "type = 3", "[scd] type: must be 1 or 2"),
        ('deletes = "expire"', 'deletes = "delete"', "type 2 allows ignore | expire"),
        ('overwrite = ["tier"]', 'overwrite = ["city"]', "city also in tracked"),
        ('tracked = ["name"', 'tracked = ["id", "name"', "must not contain key column(s) id"),
        ('business_key = ["id"]', 'business_key = ["email"]', "must include every [source] key"),
        ('on_bad_row = "x"\n', "", ""),
    ],
)
def test_bad_values(old: str, new: str, needle: str):
    """Each bad value gives one line naming file, key and problem."""
    if not needle:
        assert "on_bad_row" in err('on_bad_row = "skip"\n' + JOB)
        return
    assert old in JOB
    assert needle in err(JOB.replace(old, new, 1))


def test_type1_rules():
    """Type 1 allows deletes ignore|delete and refuses overwrite columns."""
    t1 = JOB.replace("type = 2", "type = 1").replace('deletes = "expire"', 'deletes = "delete"')
    assert "overwrite: only for type 2" in err(t1)
    job = parse_job(t1.replace('overwrite = ["tier"]', ""))
    assert job.scd.type == 1 and job.scd.deletes == "delete"
    assert "type 1 allows ignore | delete" in err(t1.replace('"delete"', '"expire"'))


@pytest.mark.parametrize("key", ["valid_from", "valid_to", "is_current"])
def test_type1_refuses_the_validity_column_names(key: str):
    """A type-1 target has no validity columns: naming one is refused, not silently ignored."""
    t1 = JOB.replace("type = 2", "type = 1").replace('overwrite = ["tier"]', "")
    t1 = t1.replace('deletes = "expire"', 'deletes = "delete"')
    assert f"[scd] {key}: only for type 2" in err(t1.replace("[scd]", f'[scd]\n{key} = "v"'))
    assert f"scd.{key}=v: only for type 2" in err(t1, overrides=[f"scd.{key}=v"])
    merge = t1.replace("type = 1", "").replace("[source]", 'mode = "merge"\n\n[source]')
    assert f"[scd] {key}: only for type 2" in err(merge.replace("[scd]", f'[scd]\n{key} = "v"'))
    assert parse_job(t1).scd.type == 1  # without them the type-1 job stands


def test_incremental_needs_deletes_ignore():
    """An incremental source cannot detect deletes, so deletes must be 'ignore'."""
    text = JOB.replace('key = ["id"]', 'key = ["id"]\nincremental = "updated_at"')
    assert "incremental" in err(text)


def test_incremental_refuses_a_source_query_that_limits_its_rows():
    """A top-level LIMIT / OFFSET / FETCH under incremental is one line: the cursor would stall."""
    inc = JOB.replace('key = ["id"]', 'key = ["id"]\nincremental = "updated_at"', 1).replace(
        'deletes = "expire"', 'deletes = "ignore"'
    )
    for tail in (" ORDER BY updated_at LIMIT 2", " OFFSET 5", " FETCH FIRST 10 ROWS ONLY"):
        msg = err(inc.replace('FROM src.customers"', f'FROM src.customers{tail}"'))
        assert "[source] incremental" in msg and "LIMIT / OFFSET / FETCH" in msg, msg
    inner = "SELECT * FROM (SELECT id, name FROM src.customers LIMIT 9) s"
    assert parse_job(inc.replace(
        '"SELECT id, name, email, city, tier FROM src.customers"', f'"{inner}"'
    )).source.incremental == "updated_at"  # fmt: skip
    assert parse_job(JOB.replace('FROM src.customers"', 'FROM src.customers LIMIT 2"'))


def test_incremental_refuses_an_oracle_query_capped_by_rownum_or_sample():
    """Oracle: WHERE ROWNUM <= n or SAMPLE (n) at the top level under incremental is one line."""
    inc = JOB.replace('key = ["id"]', 'key = ["id"]\nincremental = "updated_at"', 1).replace(
        'deletes = "expire"', 'deletes = "ignore"'
    )
    ora = inc.replace("postgresql://postgres:s3cret@", "oracle://scott:tiger@", 1)
    for tail in (" WHERE ROWNUM <= 100", " SAMPLE (10)"):
        msg = err(ora.replace('FROM src.customers"', f'FROM src.customers{tail}"'))
        assert "[source] incremental" in msg and "LIMIT / OFFSET / FETCH / ROWNUM" in msg, msg
    assert parse_job(ora.replace('FROM src.customers"', 'FROM src.customers WHERE rownum_x = 1"'))


def test_scd_column_names_configurable_and_checked():
    """valid_from / valid_to / is_current names can be changed but must not collide."""
    job = parse_job(JOB + "", overrides=["scd.valid_from=start_ts", "scd.is_current=cur"])
    assert (job.scd.valid_from, job.scd.valid_to, job.scd.is_current) == (
        "start_ts",
        "valid_to",
        "cur",
    )
    assert "already used" in err(JOB, overrides=["scd.valid_to=name"])


def test_urls_masked_and_checked():
    """A bad URL scheme is named with its password masked; state URL needed for CrateDB."""
    msg = err(JOB.replace("postgresql://postgres:s3cret", "mysql://postgres:s3cret"))
    assert "s3cret" not in msg and "mysql://postgres:***@" in msg and "[source] url" in msg
    crate = JOB.replace(
        'url = "postgresql://postgres@127.0.0.1:5432/test"\ntable',
        'url = "http://crate:4200"\ntable',
    )
    assert "[state] url: required" in err(crate)
    job = parse_job(crate + '\n[state]\nurl = "postgres://u:p@h/s"\n')
    assert job.state is not None and dialect_of(job.state.url) == "postgresql"
    assert "cannot be a source" in err(JOB.replace("postgresql://postgres:s3cret", "crate://x"))
    assert "s3cret" not in repr(parse_job(JOB))


def test_env_url_error_hides_value():
    """A bad URL from the environment is reported by variable name, password masked."""
    text = JOB.replace('url = "postgresql://postgres:s3cret@127.0.0.1:5432/test"\n', "", 1)
    msg = err(text, env={"ASYNC_ETL_SOURCE_URL": "ftp://a:topsecret@h"})
    assert "ASYNC_ETL_SOURCE_URL" in msg and "topsecret" not in msg


def test_unreadable_file(tmp_path: Path):
    """A missing job file is a ConfigError naming the path."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_job(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("oracle://scott:tiger@db:1521/svc", "oracle://scott:***@db:1521/svc"),
        (
            "postgresql://u@h/db?password=x&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("http://crate:4200", "http://crate:4200"),
    ],
)
def test_mask_url(url: str, masked: str):
    """mask_url hides userinfo and query-string passwords, leaving the rest."""
    assert mask_url(url) == masked


@pytest.mark.parametrize(("head", "scd", "overrides", "kind"), [
    ('mode = "scd2"', "", ["mode=full_refresh"], 2),
    ("", "", ["mode=full_refresh"], 2),
    ('mode = "merge"', "", ["mode=full_refresh"], 1),
    ('mode = "type2"', "", ["mode=replace"], 2),
    ('mode = "scd2"', "", ["mode=full_refresh", "scd.type=1"], 1),
    ('mode = "full_refresh"', "", [], 1),
    ('mode = "full_refresh"', "type = 2", [], 2),
    ("", "type = 1", ["mode=full_refresh"], 1),
])  # fmt: skip
def test_full_refresh_override_keeps_the_jobs_scd_type(
    head: str, scd: str, overrides: list[str], kind: int
) -> None:
    """`--full-refresh` (--set mode=full_refresh) keeps a merge / scd2 job's SCD type."""
    text = (f'name = "j"\n{head}\n[source]\nurl = "postgresql://h/d"\ntable = "s.t"\n'
            'key = ["id"]\n[target]\nurl = "postgresql://h/d"\ntable = "d.t"\n'
            f"[scd]\n{scd}\n")  # fmt: skip
    spec = parse_job(text, overrides=overrides, env={})
    assert (spec.mode, spec.scd.type) == ("full_refresh", kind)


def test_retry_section_is_the_runs_policy():
    """``[retry]`` becomes the run's RetryPolicy (attempts - 1 retries); absent, None."""
    assert parse_job(JOB).retry is None
    text = (
        JOB + '\n[retry]\nmax_attempts = 1\nstrategy = "fixed"\nbase_delay = 0.5\nmax_delay = 2\n'
    )
    policy = parse_job(text).retry
    assert policy == RetryPolicy(max_retries=0, base=0.5, cap=2.0, strategy="fixed")
    partial = parse_job(JOB + "\n[retry]\nmax_attempts = 3\n").retry
    assert partial == RetryPolicy(
        max_retries=2, base=JOB_RETRY.base, cap=JOB_RETRY.cap, strategy=JOB_RETRY.strategy
    )
    by_set = parse_job(
        JOB, overrides=["retry.base_delay=0.25"], env={"ASYNC_ETL_RETRY_MAX_ATTEMPTS": "2"}
    )
    assert by_set.retry is not None and by_set.retry.base == 0.25 and by_set.retry.max_retries == 1
    capped = parse_job(JOB + "\n[retry]\nmax_delay = 0.1\n").retry  # below the default base
    assert capped is not None and capped.ceiling(3) == 0.1


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("max_attempts = 0", "[retry] max_attempts: must be >= 1, got 0"),
        ('strategy = "random"', "[retry] strategy: expected exponential | linear | fixed"),
        ("base_delay = -1", "[retry] base_delay: must be >= 0"),
        ("max_delay = nan", "[retry] max_delay: expected a finite number, got nan"),
        ('max_delay = "soon"', "[retry] max_delay: expected a number, got str"),
        ("max_tries = 3", "[retry] max_tries: unknown key (did you mean 'max_attempts'?)"),
        (
            "base_delay = 10",
            "[retry] base_delay: base_delay 10 s is above max_delay 5 s, so "
            "every wait would be max_delay and base_delay would do nothing",
        ),
    ],
)
def test_retry_section_errors_are_one_line(section: str, expected: str):
    """Every bad ``[retry]`` value is one line naming the key."""
    assert expected in err(JOB + f"\n[retry]\n{section}\n")


def test_options_take_the_job_files_retry_unless_the_caller_chose_one():
    """The job file's policy replaces the default JOB_RETRY, never a policy given in code."""
    mine = RetryPolicy(max_retries=1)
    job = parse_job(JOB + "\n[retry]\nmax_attempts = 5\n")
    assert JobOptions().with_job_retry(job.retry).retry == job.retry
    assert JobOptions(retry=mine).with_job_retry(job.retry).retry is mine
    assert JobOptions().with_job_retry(None).retry is JOB_RETRY


def test_a_plan_given_as_a_job_says_it_is_a_plan():
    """A plan's TOML ([[jobs]]) read as a job names the command that runs it, in one line."""
    # It said "[state]: expected a table (section)" (a plan's state is a URL string).
    plan = 'name = "p"\nstate = "postgresql://h/db"\n[[jobs]]\nfile = "a.toml"\n'
    msg = err(plan)
    assert "job file" in msg and "a plan file" in msg and "async-etl orchestrate" in msg, msg


APART = JOB + '\n[state]\nurl = "postgresql://postgres@127.0.0.1:5432/state"\n'
"""``JOB`` with its run state in another database: the target keeps a chunk ledger."""


def test_state_forget_timeout_bounds_the_ledgers_forget():
    """``[state] forget_timeout`` (file, --set, environment) is the run's bound; unset: None."""
    assert parse_job(APART).state.forget_timeout is None  # the run's FORGET_S, 5 s
    text = APART + "forget_timeout = 0.5\n"
    assert parse_job(text).state.forget_timeout == 0.5
    assert parse_job(APART, overrides=["state.forget_timeout=30"]).state.forget_timeout == 30.0
    by_env = parse_job(APART, env={"ASYNC_ETL_STATE_FORGET_TIMEOUT": "2"})
    assert by_env.state.forget_timeout == 2.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "[state] forget_timeout: expected seconds, a finite number > 0, got 0.0"),
        ("-1", "[state] forget_timeout: expected seconds, a finite number > 0, got -1.0"),
        ("inf", "[state] forget_timeout: expected a finite number, got inf"),
        ('"soon"', "[state] forget_timeout: expected a number, got str"),
    ],
)
def test_a_bad_forget_timeout_is_one_line(value: str, expected: str):
    """0, negatives, infinity or text as ``forget_timeout``: one line naming the key."""
    assert expected in err(APART + f"forget_timeout = {value}\n")


def test_forget_timeout_without_a_ledger_is_refused():
    """The state in the target's database keeps no ledger: the key would do nothing."""
    msg = err(JOB + '\n[state]\nurl = "postgresql://postgres@127.0.0.1:5432/test"\n'
              "forget_timeout = 1\n")  # fmt: skip
    assert "[state] forget_timeout: only when the target keeps a chunk ledger" in msg, msg
    assert "only when" in err(JOB, overrides=["state.forget_timeout=1"])


def test_a_spec_built_in_code_with_a_bad_forget_timeout_is_refused():
    """A bad or ledger-less ``StateSpec.forget_timeout`` in code: one line from run_job's check."""
    spec = parse_job(APART)
    bad = replace(spec, state=replace(spec.state, forget_timeout=0.0))
    with pytest.raises(ConfigError, match=r"^job dim_customer: \[state\] forget_timeout: "
                       r"expected seconds, a finite number > 0, got 0\.0$"):  # fmt: skip
        refuse_unused(bad)
    same = parse_job(JOB)
    unused = replace(same, state=replace(same.state, forget_timeout=1.0))
    only_when = r"^job dim_customer: \[state\] forget_timeout: only when"
    with pytest.raises(ConfigError, match=only_when):
        refuse_unused(unused)
    refuse_unused(replace(spec, state=replace(spec.state, forget_timeout=0.5)))  # fine
