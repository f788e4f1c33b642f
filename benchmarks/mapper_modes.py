"""Load modes, one run, same machine: async-etl (now and before the direct initial load) vs
ingestr and the binary ``psql \\copy`` pipe.

    /work/main/.venv/bin/python benchmarks/mapper_modes.py --rows 300000 \\
        --before /tmp/aetl_before --ingestr /tmp/modes_peers/bin/ingestr [--reps 3]

``--before`` is a checkout of the commit before "a chunk whose key range is empty in the target
goes straight into it" (``git archive f0756dc~1 | tar -x -C /tmp/aetl_before``), run with the same
interpreter.  ``--ingestr`` is ingestr 1.1.22 installed in a throwaway venv (never the
project's), run with ``HOME`` redirected to a temp dir and its telemetry off.

Source and target are two databases of the local PostgreSQL (defaults untouched): every row
crosses the process.  Each measurement is a fresh process; wall seconds from spawn to exit; the
median of ``--reps``.  Measured: the wire ceiling (``psql \\copy (SELECT ...) TO STDOUT
(FORMAT binary)`` piped into ``\\copy ... FROM STDIN (FORMAT binary)`` into a table with its
primary key), full refresh (``async-etl copy --mode replace``, ``ingestr --incremental-strategy
replace``) and the SCD2 initial load (now, before, ``ingestr --incremental-strategy scd2``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC, DST = "aetl_modes_src", "aetl_modes_dst"
BASE = "postgresql://postgres@127.0.0.1:5432"
DDL = (
    "(id bigint PRIMARY KEY, name text, email text, city text, tier integer, "
    "updated_at timestamptz)"
)
SEED = f"""
CREATE SCHEMA IF NOT EXISTS src; DROP TABLE IF EXISTS src.dim; CREATE TABLE src.dim {DDL};
SELECT setseed(0.42);
INSERT INTO src.dim SELECT g, 'name_' || substr(md5(g::text), 1, 10),
  substr(md5('e' || g), 1, 12) || '@example.com', 'city' || floor(random() * 10)::int,
  1 + floor(random() * 4)::int, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, {{rows}}) g;
VACUUM ANALYZE src.dim;
DROP TABLE IF EXISTS src.tiny; CREATE TABLE src.tiny {DDL};
INSERT INTO src.tiny SELECT * FROM src.dim WHERE id <= 10;
"""
JOB = """name = "{name}"
[source]
url = "{src}"
table = "src.dim"
key = ["id"]
[target]
url = "{dst}"
table = "{table}"
[scd]
type = 2
deletes = "expire"
[parallel]
max_workers = 2
"""


def psql(db: str, sql: str) -> None:
    """Run ``sql`` in ``db`` (errors stop the benchmark)."""
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qAt",
                    "-v", "ON_ERROR_STOP=1"], input=sql, text=True, check=True,
                   capture_output=True)  # fmt: skip


def timed(argv: list[str] | str, env: dict[str, str], cwd: str | None) -> float:
    """Wall seconds of one fresh process (a shell string runs through bash)."""
    t0 = time.perf_counter()
    out = subprocess.run(argv, shell=isinstance(argv, str), env=env, cwd=cwd,
                         capture_output=True, text=True, check=False)  # fmt: skip
    took = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{argv!r} failed: {out.stderr[-2000:]}")
    return took


def main() -> None:
    """Seed, measure every contender ``--reps`` times, print and write the JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--before", default=None, help="checkout of the code before the change")
    ap.add_argument("--ingestr", default=None, help="ingestr executable (throwaway venv)")
    ap.add_argument("--out", default="benchmarks/results/mapper_modes.json")
    args = ap.parse_args()
    for db in (SRC, DST):
        psql("postgres", f"DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db};")
    psql(SRC, SEED.replace("{rows}", str(args.rows)))
    src, dst = f"{BASE}/{SRC}", f"{BASE}/{DST}"
    home = tempfile.mkdtemp(prefix="modes_home_")
    tmp = Path(home)
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    peer_env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": home, "XDG_CACHE_HOME": home,
                "DISABLE_TELEMETRY": "true", "INGESTR_DISABLE_TELEMETRY": "true",
                "RUNTIME__DLTHUB_TELEMETRY": "false"}  # fmt: skip
    etl = [sys.executable, "-m", "async_etl.cli"]

    def reset() -> None:
        psql(DST, "DROP SCHEMA IF EXISTS dw CASCADE; CREATE SCHEMA dw; DROP TABLE IF EXISTS "
             "async_etl_runs, async_etl_chunks, async_etl_rejects CASCADE;")  # fmt: skip

    cases: dict[str, tuple[str, object, dict[str, str], str | None]] = {}
    ceiling = (f"psql -h 127.0.0.1 -U postgres -d {SRC} -c \"\\copy (SELECT * FROM src.dim) TO "
               f"STDOUT (FORMAT binary)\" | psql -h 127.0.0.1 -U postgres -d {DST} -c "
               "\"\\copy dw.ceiling FROM STDIN (FORMAT binary)\"")  # fmt: skip
    cases["psql \\copy pipe (table with PK)"] = ("dw.ceiling", ceiling, env, None)
    cases["async-etl full refresh (copy --mode replace)"] = ("dw.fr", [
        *etl, "copy", "--source", src, "--source-table", "src.dim", "--target", dst,
        "--target-table", "dw.fr", "--key", "id", "--fresh"], env, None)  # fmt: skip
    job = tmp / "scd2.toml"
    job.write_text(JOB.format(name="scd2", src=src, dst=dst, table="dw.scd2"))
    scd2 = [*etl, "run", str(job), "--fresh"]
    cases["async-etl SCD2 initial (2 workers)"] = ("dw.scd2", scd2, env, None)
    if args.before:
        old_env = {**os.environ, "PYTHONPATH": args.before}
        cases["async-etl SCD2 initial, before (staging)"] = ("dw.scd2", scd2, old_env, args.before)
    if args.ingestr:
        for strategy, table in (("replace", "dw.ing_replace"), ("scd2", "dw.ing_scd2")):
            cases[f"ingestr {strategy}"] = (table, [
                args.ingestr, "ingest", "--yes", "--source-uri", src, "--source-table", "src.dim",
                "--dest-uri", dst, "--dest-table", table, "--incremental-strategy", strategy,
                "--primary-key", "id"], peer_env, None)  # fmt: skip
    cases["async-etl 10-row copy, whole process"] = ("dw.tiny", [
        *etl, "copy", "--source", src, "--source-table", "src.tiny", "--target", dst,
        "--target-table", "dw.tiny", "--key", "id", "--fresh"], env, None)  # fmt: skip
    if args.ingestr:
        cases["ingestr 10-row replace, whole process"] = ("dw.tiny", [
            args.ingestr, "ingest", "--yes", "--source-uri", src, "--source-table", "src.tiny",
            "--dest-uri", dst, "--dest-table", "dw.tiny", "--incremental-strategy", "replace"],
            peer_env, None)  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    for rep in range(args.reps + 1):  # rep 0 is the warm-up, discarded
        for name, (table, argv, run_env, cwd) in cases.items():
            reset()
            if table == "dw.ceiling":
                psql(DST, f"CREATE TABLE dw.ceiling {DDL};")
            took = timed(argv, run_env, cwd)  # type: ignore[arg-type]
            if rep:
                results.setdefault(name, {})[f"s{rep}"] = took
    rows = args.rows
    summary = {}
    ceiling_s = statistics.median(results[next(iter(results))].values())
    for name, runs in results.items():
        median = statistics.median(runs.values())
        if "10-row" in name:
            summary[name] = {"median_s": round(median, 3)}
            print(f"{name:48s} {median:7.2f} s")
            continue
        summary[name] = {"median_s": round(median, 3), "rows_per_s": round(rows / median),
                         "vs_ceiling": round(ceiling_s / median, 2)}  # fmt: skip
        print(
            f"{name:48s} {median:7.2f} s {rows / median:>10,.0f} rows/s  "
            f"{ceiling_s / median:5.2f}x the pipe"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "reps": args.reps,
                                          "load_after": os.getloadavg(), "results": summary},
                                         indent=2))  # fmt: skip
    for db in (SRC, DST):
        psql("postgres", f"DROP DATABASE IF EXISTS {db};")


if __name__ == "__main__":
    main()
