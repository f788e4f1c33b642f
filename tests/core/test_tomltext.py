"""Job, plan and schema files saved with a UTF-8 byte-order mark read as the same document."""

from __future__ import annotations

import dataclasses
import shutil
import tomllib
from pathlib import Path

import pytest

from async_etl.cli.stop import _plan_file
from async_etl.core import tomltext
from async_etl.core.schema import parse_schema
from async_etl.jobs.spec import load_job
from async_etl.orchestrator.plan import load_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BOM = b"\xef\xbb\xbf"


def with_bom(src: Path, dst: Path) -> Path:
    """``dst`` holding ``src``'s bytes behind a UTF-8 byte-order mark."""
    dst.write_bytes(BOM + src.read_bytes())
    return dst


def test_loads_drops_one_leading_mark_only() -> None:
    """One leading U+FEFF is dropped; one inside a string value stays part of it."""
    assert tomltext.loads('\ufeffa = "\ufeffb"') == {"a": "\ufeffb"}


def test_loads_still_refuses_bad_toml() -> None:
    """A malformed document after the mark is refused as tomllib refuses it."""
    with pytest.raises(tomllib.TOMLDecodeError):
        tomltext.loads("\ufeffa = ")


def test_a_job_file_with_a_mark_loads_as_without(tmp_path: Path) -> None:
    """load_job reads a BOM-prefixed copy of an example job as the same JobSpec."""
    src = EXAMPLES / "jobs" / "dim_customer.toml"
    marked = load_job(with_bom(src, tmp_path / "dim_customer.toml"))
    assert dataclasses.replace(marked, path=str(src)) == load_job(src)


def test_a_plan_file_with_a_mark_loads_as_without(tmp_path: Path) -> None:
    """load_plan reads a BOM-prefixed plan (and the jobs it names) as the same Plan."""
    shutil.copytree(EXAMPLES / "jobs", tmp_path / "jobs")
    (tmp_path / "plans").mkdir()
    src = EXAMPLES / "plans" / "nightly.toml"
    plain = load_plan(src)
    marked = load_plan(with_bom(src, tmp_path / "plans" / "nightly.toml"))
    assert [j.name for j in marked.jobs] == [j.name for j in plain.jobs]
    assert (marked.local_max, marked.global_max, marked.retry) == (
        plain.local_max,
        plain.global_max,
        plain.retry,
    )
    assert _plan_file(str(tmp_path / "plans" / "nightly.toml"))


def test_a_schema_file_with_a_mark_parses_as_without() -> None:
    """parse_schema reads BOM-prefixed schema text as the same Schema."""
    text = (
        Path(__file__).resolve().parents[2] / "benchmarks" / "pgbench_accounts.toml"
    ).read_text()
    assert parse_schema("\ufeff" + text, "s.toml") == parse_schema(text, "s.toml")


def test_stop_and_check_take_the_same_files_for_plans(tmp_path: Path) -> None:
    """A file whose ``jobs`` is not an array of tables is a plan to neither stop nor check."""
    from async_etl.cli.check import is_plan

    odd = tmp_path / "odd.toml"
    odd.write_text('jobs = "nightly"\n')
    assert not _plan_file(str(odd)) and not is_plan(str(odd))
