from __future__ import annotations

from pathlib import Path

import pytest

from async_etl.errors import ConfigError, ErrorKind
from async_etl.orchestrator.plan import load_plan

STATE = "postgresql://postgres@127.0.0.1:5432/test"
JOB = """name = "{name}"
[source]
url = "{url}"
table = "src.t"
key = ["id"]
[target]
url = "{url}"
table = "dw.t"
"""


def write_plan(tmp_path: Path, body: str, jobs: tuple[str, ...] = ()) -> Path:
    (tmp_path / "jobs").mkdir(exist_ok=True)
    for name in jobs:
        (tmp_path / "jobs" / f"{name}.toml").write_text(JOB.format(name=name, url=STATE))
    plan = tmp_path / "plan.toml"
    plan.write_text(f'name = "nightly"\nstate = "{STATE}"\n' + body)
    return plan


def error_of(plan: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_plan(plan)
    message = info.value.message
    assert "\n" not in message
    assert message.startswith(f"plan file {plan}: ")
    return message


def test_full_plan_loads_with_defaults_and_names_from_job_files(tmp_path: Path) -> None:
    """A plan with mapper and synthetic jobs loads; names come from the job files."""
    plan = load_plan(
        write_plan(
            tmp_path,
            'local_max = 4\nglobal_max = 6\n[retry]\nmax_attempts = 5\nstrategy = "linear"\n'
            f'base_delay = 0.5\n[budgets]\ndefault = 3\n"{STATE}" = 8\n'
            '[[jobs]]\nfile = "jobs/dim.toml"\n[[jobs]]\nfile = "jobs/fact.toml"\n'
            'depends_on = ["dim"]\n[[jobs]]\nkind = "sleep"\nname = "nap"\nseconds = 0.1\n'
            'fail_times = 2\nfail_kind = "database-transient"\ndepends_on = ["fact"]\n',
            jobs=("dim", "fact"),
        )
    )
    assert (plan.name, plan.local_max, plan.global_max, plan.namespace) == (
        "nightly",
        4,
        6,
        "default",
    )
    assert plan.retry.max_attempts == 5 and plan.retry.policy().max_retries == 4
    assert plan.retry.strategy == "linear" and plan.retry.base_delay == 0.5
    assert plan.default_budget == 3 and plan.budgets == {STATE: 8}
    assert plan.deps() == {"dim": (), "fact": ("dim",), "nap": ("fact",)}
    nap = plan.job("nap").synthetic
    assert nap is not None and nap.fail_times == 2 and nap.fail_kind is ErrorKind.DB_TRANSIENT
    assert plan.job("fact").spec is not None


@pytest.mark.parametrize(
    ("body", "jobs", "expected"),
    [
        (
            '[[jobs]]\nfile = "jobs/a.toml"\ndepends_on = ["b"]\n[[jobs]]\nfile = "jobs/b.toml"\n'
            'depends_on = ["c"]\n[[jobs]]\nfile = "jobs/c.toml"\ndepends_on = ["a"]\n',
            ("a", "b", "c"),
            "jobs: dependency cycle: a -> b -> c -> a",
        ),
        (
            '[[jobs]]\nfile = "jobs/a.toml"\ndepends_on = ["a"]\n',
            ("a",),
            "dependency cycle: a -> a",
        ),
        (
            '[[jobs]]\nfile = "jobs/a.toml"\ndepends_on = ["nope"]\n',
            ("a",),
            "jobs[0].depends_on: 'a' depends on unknown job 'nope'",
        ),
        ('[[jobs]]\nfile = "jobs/missing.toml"\n', (), "jobs[0].file: job file"),
        (
            '[[jobs]]\nfile = "jobs/a.toml"\n[[jobs]]\nfile = "jobs/a.toml"\n',
            ("a",),
            "jobs[1]: duplicate job name 'a' (also jobs[0])",
        ),
        ("", (), "jobs: the plan has no [[jobs]], so it would run nothing and report success"),
        ("jobs = []\n", (), "jobs: the plan has no [[jobs]], so it would run nothing"),
        ("local_max = 0\n", (), "local_max: must be >= 1, got 0"),
        ("global_max = 0\n", (), "global_max: must be >= 1, got 0"),
        ('[retry]\nstrategy = "random"\n', (), "[retry] strategy: expected exponential"),
        ("locl_max = 3\n", (), "locl_max: unknown key (did you mean 'local_max'?)"),
        ("[retry]\nattempts = 3\n", (), "[retry] attempts: unknown key"),
        ('[[jobs]]\nfile = "jobs/a.toml"\nsecond = 1\n', ("a",), "jobs[0].second: unknown key"),
        (
            '[budgets]\n"postgresql://postgres:pw@127.0.0.1:5432/tset" = 1\n'
            '[[jobs]]\nfile = "jobs/a.toml"\n',
            ("a",),
            "[budgets] postgresql://postgres:***@127.0.0.1:5432/tset: no job of the plan uses "
            "this database, so it would limit nothing (did you mean "
            "'postgresql://127.0.0.1:5432/test'?)",
        ),
        ('local_max = "4"\n', (), "local_max: expected int, got '4'"),
        ('[[jobs]]\nkind = "sleep"\nname = "x"\nfail_kind = "oops"\n', (), "jobs[0].fail_kind"),
        ('[[jobs]]\nkind = "sleep"\nname = "x"\nconnections = 2\n', (), "jobs[0].target"),
        ("[budgets]\ndefault = 0\n", (), "[budgets] default: must be >= 1"),
        (
            '[[jobs]]\nkind = "sleep"\nname = "x"\nseconds = nan\n',
            (),
            "jobs[0].seconds: must be a finite",
        ),
        ("[retry]\nmax_delay = inf\n", (), "[retry] max_delay: must be a finite number, got inf"),
        (
            "[retry]\nbase_delay = 90\n",
            (),
            "[retry] base_delay: base_delay 90 s is above max_delay 60 s, so every wait would be "
            "max_delay and base_delay would do nothing",
        ),
        ("[breaker]\ncooldown = -inf\n", (), "[breaker] cooldown: must be a finite number"),
    ],
)
def test_plan_errors_are_one_line_naming_the_key(
    tmp_path: Path, body: str, jobs: tuple[str, ...], expected: str
) -> None:
    """Each invalid plan gives one ConfigError line naming the plan file and the key."""
    assert expected in error_of(write_plan(tmp_path, body, jobs))


def test_missing_job_file_is_named(tmp_path: Path) -> None:
    """A missing job file is reported with its resolved path."""
    message = error_of(write_plan(tmp_path, '[[jobs]]\nfile = "jobs/gone.toml"\n'))
    assert str(tmp_path / "jobs" / "gone.toml") in message and "does not exist" in message


def test_bad_job_file_is_reported_through_the_plan(tmp_path: Path) -> None:
    """A job file that fails its own validation is reported under the plan's jobs[i].file."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "bad.toml").write_text('name = "bad"\n')
    message = error_of(write_plan(tmp_path, '[[jobs]]\nfile = "jobs/bad.toml"\n'))
    assert "jobs[0].file: job file" in message


def test_command_line_limits_override_and_are_validated(tmp_path: Path) -> None:
    """--local-max / --global-max replace the plan's values; values < 1 are a ConfigError."""
    plan = load_plan(write_plan(tmp_path, 'local_max = 2\n[[jobs]]\nkind = "sleep"\nname = "x"\n'))
    assert plan.with_limits(local_max=7, global_max=None).local_max == 7
    assert plan.with_limits(local_max=None, global_max=3).global_max == 3
    with pytest.raises(ConfigError, match="--local-max: must be >= 1"):
        plan.with_limits(local_max=0, global_max=None)


def test_state_must_be_postgresql(tmp_path: Path) -> None:
    """The state store must be a postgresql:// URL, shown with its password masked."""
    plan = tmp_path / "plan.toml"
    plan.write_text('name = "p"\nstate = "oracle://u:secret@h/x"\n')
    message = error_of(plan)
    assert "secret" not in message and "state:" in message


def test_a_job_file_given_as_a_plan_says_it_is_a_job(tmp_path: Path) -> None:
    """A job file read as a plan names the command that runs it, in one line."""
    # It said "mode: unknown key (did you mean 'name'?)", or whichever job key came first.
    path = tmp_path / "job.toml"
    path.write_text('mode = "append"\n' + JOB.format(name="j", url=STATE))
    message = error_of(path)
    assert "a job file" in message and "async-etl run" in message, message
