"""Every command's help reads alike: no reST, choices listed, metavars, an epilog; completion."""

from __future__ import annotations

import argparse

import pytest

from async_etl.cli import build_parser, main, subcommands
from async_etl.cli.completion import SHELLS, script
from async_etl.cli.help import HelpFormatter, fill

COMMANDS = sorted(subcommands(build_parser()))


def _help(name: str) -> str:
    return subcommands(build_parser())[name].format_help()


def _flags(name: str) -> list[argparse.Action]:
    parser = subcommands(build_parser())[name]
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_no_rest_markup(name: str) -> None:
    """No double backquotes (reST literals) in any command's --help."""
    assert "``" not in _help(name)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_ends_with_exit_statuses(name: str) -> None:
    """Each command's epilog lists its exit statuses: 0, 2 (bad input) and 141 (stdout gone)."""
    text = _help(name)
    assert "\nexit status:\n" in text
    tail = text.split("\nexit status:\n", 1)[1]
    codes = [line.split()[0] for line in tail.splitlines() if line.startswith("  ")]
    assert "0" in codes and "2" in codes and "141" in codes, tail


@pytest.mark.parametrize("name", COMMANDS)
def test_every_valued_flag_has_a_metavar_or_choices(name: str) -> None:
    """A flag taking a value shows a README-style metavar (N, FILE, URL, ...) or its choices."""
    for action in _flags(name):
        if action.nargs == 0:
            continue
        assert action.metavar is not None or action.choices is not None, action.option_strings
        if action.choices is not None:
            assert "{" + ",".join(map(str, action.choices)) + "}" in _help(name)


@pytest.mark.parametrize(
    ("name", "flag", "choices"),
    [
        ("bench", "--mode", ("async", "threads")),
        ("bench", "--log-format", ("auto", "console", "json")),
        ("run", "--log-format", ("auto", "console", "json")),
        ("orchestrate", "--log-format", ("auto", "console", "json")),
        ("sweep", "--log-format", ("auto", "console", "json")),
        ("compare", "--scenario", ("network", "database", "cpu")),
        ("copy", "--mode", ("replace", "append", "merge", "scd2")),
    ],
)
def test_fixed_sets_are_choices(name: str, flag: str, choices: tuple[str, ...]) -> None:
    """Flags that take a fixed set declare it, so argparse refuses anything else."""
    (action,) = [a for a in _flags(name) if flag in a.option_strings]
    assert tuple(action.choices or ()) == choices


@pytest.mark.parametrize(("name", "env"), [("bench", "ASYNC_ETL_BENCH_"),
    ("compare", "ASYNC_ETL_COMPARE_"), ("orchestrate", "ASYNC_ETL_ORCHESTRATE_"),
    ("run", "ASYNC_ETL_<SECTION>_<KEY>"), ("status", "ASYNC_ETL_STATE_URL"),
    ("stop", "ASYNC_ETL_STATE_URL"), ("sweep", "ASYNC_ETL_BENCH_")])  # fmt: skip
def test_help_names_the_environment_it_reads(name: str, env: str) -> None:
    """The epilog's environment section names the variables the command reads."""
    text = _help(name)
    assert "\nenvironment:\n" in text
    assert env in text.split("\nenvironment:\n", 1)[1]


def test_compare_keeps_its_bullet_list() -> None:
    """compare's scenario list stays a list: one item per line, continuations indented."""
    lines = _help("compare").splitlines()
    items = [line for line in lines if line.startswith("* ")]
    assert [item.split()[1] for item in items] == ["network", "database", "cpu"]
    after = lines[lines.index(items[0]) + 1]
    assert after.startswith("  ") and not after.startswith("* ")


def test_fill_reflows_paragraphs_keeps_indented_lines() -> None:
    """Prose is reflowed to the width; indented lines are kept as written; literals lose ``."""
    text = "A ``--flag`` that\nwraps here.\n\n    kept   as is\n* item one\n  continues"
    assert fill(text, 40).splitlines() == [
        "A --flag that wraps here.",
        "",
        "    kept   as is",
        "* item one continues",
    ]


def test_bench_short_flags_are_pgbench_and_cr8_letters() -> None:
    """-c -n -b -T -R -j -P set concurrency, records, batch size, duration, rate, generators."""
    args = build_parser().parse_args(
        ["bench", "-c", "4", "-n", "10", "-b", "5", "-T", "2", "-R", "100", "-j", "0", "-P", "3"]
    )
    got = {k: getattr(args, k) for k in ("concurrency", "records", "batch_size", "duration",
                                         "rate", "generators", "report_interval")}  # fmt: skip
    assert got == {"concurrency": "4", "records": 10, "batch_size": 5, "duration": 2.0,
                   "rate": 100.0, "generators": 0, "report_interval": 3.0}  # fmt: skip


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_covers_commands_flags_and_choices(shell: str) -> None:
    """The generated script knows every command, bench's flags and --mode's choices."""
    text = script(shell)
    for name in COMMANDS:
        assert name in text
    for word in ("--concurrency", "--json-out", "threads", "--scenario"):
        assert word in text


def test_completion_command_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    """``async-etl completion bash`` prints the same script and exits 0."""
    assert main(["completion", "bash"]) == 0
    assert capsys.readouterr().out == script("bash") + "\n"


def test_completion_refuses_an_unknown_shell(capsys: pytest.CaptureFixture[str]) -> None:
    """``async-etl completion fish`` is argparse's one-line error, exit status 2."""
    with pytest.raises(SystemExit) as caught:
        main(["completion", "fish"])
    assert caught.value.code == 2
    assert "invalid choice: 'fish'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["bench", "--recrods", "5"],
         "bench: unrecognized arguments: --recrods 5 (did you mean '--records'?)"),
        (["run", "job.toml", "--sett", "x=1"],
         "run: unrecognized arguments: --sett x=1 (did you mean '--set'?)"),
        (["status", "--zzz"], "status: unrecognized arguments: --zzz"),
    ],
)  # fmt: skip
def test_an_unknown_flag_names_its_command_and_the_flag_meant(
    capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    """A misspelt flag: one line naming the command, as other bad flags do, and the closest."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert capsys.readouterr().err == f"async-etl: error: {line}\n"


@pytest.mark.parametrize(
    ("columns", "width"), [("100", 98), ("0", None), ("wide", None), (None, None)]
)
def test_help_width_is_the_one_shutil_would_give(
    monkeypatch: pytest.MonkeyPatch, columns: str | None, width: int | None
) -> None:
    """The formatter's width is ``shutil.get_terminal_size().columns - 2``, as argparse's is."""
    import shutil

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    expected = shutil.get_terminal_size().columns - 2
    assert width is None or width == expected
    assert HelpFormatter("async-etl")._width == expected
    assert subcommands(build_parser())["copy"]._get_formatter()._width == expected
