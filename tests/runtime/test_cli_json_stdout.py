"""``--json-out -``: the JSON goes to stdout alone; the table or summary line goes to stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from async_etl.cli.output import STDOUT, json_out_path, text_stream, write_json


def test_bench_json_to_stdout_keeps_the_table_off_it(tmp_path: Path) -> None:
    """bench --json-out -: stdout is exactly one JSON document, the table is on stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "async_etl", "bench", "--sink", "null://", "-n", "2000",
         "-b", "500", "-j", "0", "--json-out", "-", "--log-format", "json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["records"], summary["ok"]) == (2000, True)
    assert "async-etl bench" in proc.stderr and "async-etl bench" not in proc.stdout
    assert not (tmp_path / "-").exists()


def test_json_out_dash_means_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``json_out_path('-')`` is STDOUT: no file, JSON on stdout, human text on stderr."""
    monkeypatch.chdir(tmp_path)
    out = json_out_path("-")
    assert out is STDOUT
    assert text_stream(out) is sys.stderr
    assert text_stream(json_out_path(str(tmp_path / "r.json"))) is sys.stdout
    write_json(out, {"a": 1})
    assert json.loads(capsys.readouterr().out) == {"a": 1}
    assert list(tmp_path.iterdir()) == []
