"""Examples 2 and 3: a JSON-lines file into CrateDB, a mapper job from an async app."""

from __future__ import annotations

import importlib
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from async_etl import Progress
from async_etl.testing.crate import CrateStandIn
from examples.embedding.job_from_app import main as job_main
from examples.embedding.job_from_app import run
from examples.embedding.jsonl_to_crate import load


async def test_a_json_lines_file_streams_into_cratedb(
    tmp_path: Path, crate_standin: CrateStandIn
) -> None:
    """Every well-formed line lands once; malformed lines are counted with their line number."""
    path = tmp_path / "readings.jsonl"
    lines = [
        orjson.dumps({"id": i, "sensor": f"s{i % 7}", "value": i / 4, "ts": "2024-01-01T00:00:00"})
        for i in range(30_000)
    ]
    lines.insert(100, b"{not json")
    lines.insert(200, b'{"sensor": "no id"}')
    path.write_bytes(b"\n".join(lines))  # no newline at the end: the last line still counts
    report, skipped = await load(str(path), crate_standin.url)
    assert (report.delivered, report.rejected, report.undelivered) == (30_000, 0, 0)
    assert skipped.count == 2
    assert skipped.first[0].startswith("line 101:") and skipped.first[1].startswith("line 201:")
    async with aiohttp.ClientSession() as session:
        url = f"{crate_standin.url}/_sql"
        await session.post(url, json={"stmt": "REFRESH TABLE readings"})
        async with session.post(url, json={"stmt": "SELECT count(*), max(id) FROM readings"}) as r:
            assert (await r.json())["rows"] == [[30_000, 29_999]]


async def test_a_job_started_from_an_app_reports_progress(pg_dsn: str) -> None:
    """The example's job runs from code, calls back with progress, and a rerun changes nothing."""
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(
        "CREATE SCHEMA src; CREATE SCHEMA dw; "
        "CREATE TABLE src.customers (id int PRIMARY KEY, name text, city text); "
        "INSERT INTO src.customers SELECT g, 'n' || g, 'c' || g % 5 FROM generate_series(1, 5000) g"
    )
    await conn.close()
    events: list[Progress] = []
    first = await run(pg_dsn, on_progress=events.append)
    assert first.status == "SUCCEEDED" and first.inserted == 5000
    assert events[-1].chunks_done == events[-1].chunks_total
    again = await run(pg_dsn, on_progress=events.append)
    assert again.status == "SUCCEEDED"
    assert (again.inserted, again.updated, again.expired) == (0, 0, 0)


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("job_from_app", ["bogus://x"]),
        ("web_service", ["--url", "bogus://x"]),
        ("jsonl_to_crate", ["readings.jsonl", "--url", "bogus://x"]),
    ],
)
def test_an_example_given_a_bad_url_says_so_in_one_line(
    module: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong URL is one line on stderr and exit status 2, not a traceback."""
    main = importlib.import_module(f"examples.embedding.{module}").main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown" in err and "scheme" in err, err


def test_job_from_app_answers_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` prints the usage (it was taken for the database URL)."""
    with pytest.raises(SystemExit) as caught:
        job_main(["--help"])
    assert caught.value.code == 0
    assert "usage:" in capsys.readouterr().out
