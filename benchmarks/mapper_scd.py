"""Mapper jobs (SCD type 2): async-etl vs dlt's ``scd2`` merge vs the ``psql \\copy`` ceiling.

Run from the repository root with the project venv (takes ~10-20 minutes on 2 cores):

    /work/.venv/bin/python benchmarks/mapper_scd.py [--rows 1000000] [--big-rows 3000000]
        [--dlt-rows 1000000] [--dlt-timeout 600] [--out benchmarks/results/mapper_scd.json]

What it does, all in one run on the same machine (issue 3, "Benchmarks"; STYLE point 9):

1. Creates two scratch databases, ``aetl_mapper_bench_src`` (source) and ``aetl_mapper_bench``
   (target), dropped at the end unless ``--keep``.  Seeds ``src.dim_v0`` (``--rows`` rows:
   id bigint PK, name, email, city, tier, updated_at) with ``generate_series`` + md5 +
   ``setseed``-seeded ``random()``, and ``src.dim_v1`` = v0 with 10% of the rows changed (name,
   city, updated_at: tracked columns), 1% deleted and 1% new ids; ``src.big_v0`` has
   ``--big-rows`` rows seeded the same way.
2. Warm-up (discarded): one async-etl run, one ``\\copy`` and one dlt run over 50k rows.
3. Ceiling: ``\\copy (SELECT * FROM src.dim_v0) TO file CSV`` (timed separately), then
   ``\\copy dw.copy_ceiling FROM file CSV`` into a plain table of the same shape (with its PK).
4. async-etl, the source in another database (every row goes through the process as binary
   COPY): for sequential (``parallel.enabled=false``), ``max_workers=2`` and ``4``: an initial
   SCD2 load of v0 into an empty target at T1, then a run over v1 at T2 (``deletes="expire"``).
   Then the same with the source in the target database (``INSERT ... SELECT`` staging, no row
   through the process), ``max_workers=4``.  Then the initial load of ``big_v0`` (3M rows)
   sequential and with 4 workers, to compare peak RSS with the 1M runs.
5. dlt (``dlt[postgres]`` in a throwaway venv under the temp dir, never in the project venv):
   the same two runs with ``merge``/``scd2`` (``boundary_timestamp`` = T1 / T2), csv loader
   file format, 2 normalize workers, and a dedicated role ``aetl_dlt`` with
   ``ALTER ROLE aetl_dlt SET work_mem = '256MB'`` (PostgreSQL itself keeps its defaults).
   Each run is bounded by ``--dlt-timeout`` and reported as "did not finish" past it.

Each measurement is a fresh process: wall seconds from spawn to exit, rows/s = rows read /
wall seconds, peak RSS = the kernel's high-water mark of the process (``wait4`` ru_maxrss) and
the polled sum over its process tree, CPU seconds of the process, and the load average
before/after.  The targets are checked for equal version and current-row counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}
SRC_DB, DST_DB = "aetl_mapper_bench_src", "aetl_mapper_bench"
T1, T2 = "2024-06-01T00:00:00+00:00", "2024-06-02T00:00:00+00:00"
ASYNC_ETL = str(Path(sys.executable).with_name("async-etl"))
COMMANDS: list[str] = []

CITIES = (
    "ARRAY['Berlin','Paris','Rome','Madrid','Vienna','Prague','Warsaw','Lisbon','Oslo','Dublin']"
)
DIM_DDL = (
    "(id bigint PRIMARY KEY, name text, email text, city text, tier integer, "
    "updated_at timestamptz)"
)


def url(db: str, user: str = "postgres") -> str:
    return f"postgresql://{user}@{PG['host']}:{PG['port']}/{db}"


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def psql(db: str, sql: str, *, record: bool = True) -> str:
    """Run ``sql`` (several statements, each in its own transaction) through psql."""
    cmd = ["psql", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "-d", db,
           "-v", "ON_ERROR_STOP=1", "-qAt"]  # fmt: skip
    if record:
        COMMANDS.append(f"psql -d {db} <<SQL\n{sql.strip()}\nSQL")
    out = subprocess.run(cmd, input=sql, text=True, capture_output=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"psql -d {db} failed: {out.stderr.strip()}\n{sql}")
    return out.stdout.strip()


def seed_sql(table: str, rows: int) -> str:
    return f"""
DROP TABLE IF EXISTS {table};
CREATE TABLE {table} {DIM_DDL};
SELECT setseed(0.42);
INSERT INTO {table}
SELECT g, 'name_' || substr(md5(g::text), 1, 10), substr(md5('e' || g), 1, 12) || '@example.com',
       ({CITIES})[1 + floor(random() * 10)::int], 1 + floor(random() * 4)::int,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, {rows}) g;
VACUUM ANALYZE {table};
"""


def changed_sql(
    rows: int,
    changed_at: str = "updated_at + interval '1 day'",
    new_at: str = "timestamptz '2024-06-01 12:00:00+00' + g * interval '1 second'",
) -> str:
    """v1 = v0 with id % 100 < 10 changed (tracked columns), id % 100 = 10 deleted, 1% new.

    ``changed_at`` / ``new_at``: the ``updated_at`` of changed rows (over v0's ``id``,
    ``updated_at``) and of new ones (over ``g``, the new id).
    """
    return f"""
DROP TABLE IF EXISTS src.dim_v1;
CREATE TABLE src.dim_v1 {DIM_DDL};
INSERT INTO src.dim_v1
SELECT id,
       CASE WHEN id % 100 < 10 THEN name || '_v1' ELSE name END, email,
       CASE WHEN id % 100 < 10 THEN ({CITIES})[1 + (id % 7)::int] ELSE city END, tier,
       CASE WHEN id % 100 < 10 THEN {changed_at} ELSE updated_at END
FROM src.dim_v0 WHERE id % 100 <> 10;
SELECT setseed(0.43);
INSERT INTO src.dim_v1
SELECT g, 'name_' || substr(md5(g::text), 1, 10), substr(md5('e' || g), 1, 12) || '@example.com',
       ({CITIES})[1 + floor(random() * 10)::int], 1 + floor(random() * 4)::int,
       {new_at}
FROM generate_series({rows} + 1, {rows} + {rows // 100}) g;
VACUUM ANALYZE src.dim_v1;
"""


class Measured:
    """Run one command; wall time, kernel peak RSS, polled process-tree RSS, CPU, load."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None,
                 timeout: float | None = None, cwd: Path | None = None,
                 log: Path) -> None:  # fmt: skip
        COMMANDS.append(" ".join(argv))
        self.load_before = load()
        self.tree_peak = 0
        self.timed_out = False
        with open(log, "w") as out:
            t0 = time.perf_counter()
            proc = psutil.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=cwd)  # fmt: skip
            done = threading.Event()
            poller = threading.Thread(target=self._poll, args=(proc, done), daemon=True)
            poller.start()
            timer = threading.Timer(timeout, self._kill, (proc,)) if timeout else None
            if timer:
                timer.start()
            _, status, ru = os.wait4(proc.pid, 0)
            self.wall_s = time.perf_counter() - t0
            done.set()
            if timer:
                timer.cancel()
            poller.join()
        self.rc = os.waitstatus_to_exitcode(status)
        proc.returncode = self.rc
        self.peak_rss_mb = ru.ru_maxrss / 1024
        self.cpu_s = ru.ru_utime + ru.ru_stime  # children reaped by it are included
        self.load_after = load()
        self.output = log.read_text()

    def _poll(self, proc: psutil.Popen, done: threading.Event) -> None:
        while not done.is_set():
            try:
                procs = [proc, *proc.children(recursive=True)]
                total = 0
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                self.tree_peak = max(self.tree_peak, total)
            except psutil.Error:
                pass
            done.wait(0.05)

    def _kill(self, proc: psutil.Popen) -> None:
        self.timed_out = True
        for p in [*proc.children(recursive=True), proc]:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)

    def facts(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall_s, 3), "rc": self.rc, "timed_out": self.timed_out,
                "peak_rss_mb": round(self.peak_rss_mb, 1),
                "peak_tree_rss_mb": round(self.tree_peak / 2**20, 1),
                "cpu_s": round(self.cpu_s, 2), "load_before": self.load_before,
                "load_after": self.load_after}  # fmt: skip


def job_file(tmp: Path, name: str, source_db: str, table: str, target: str) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(f"""name = "{name}"
[source]
url = "{url(source_db)}"
table = "{table}"
key = ["id"]
[target]
url = "{url(DST_DB)}"
table = "{target}"
[scd]
type = 2
business_key = ["id"]
deletes = "expire"
[parallel]
enabled = true
max_workers = 4
chunk_size = 50000
min_rows_for_parallel = 100000
""")
    return path


def async_etl_run(tmp: Path, job: Path, as_of: str, sets: list[str], tag: str) -> dict[str, Any]:
    out = tmp / f"{tag}.json"
    argv = [ASYNC_ETL, "run", str(job), "--as-of", as_of, "--json-out", str(out),
            "--log-format", "json"]  # fmt: skip
    for s in sets:
        argv += ["--set", s]
    m = Measured(argv, log=tmp / f"{tag}.log")
    if m.rc != 0:
        raise RuntimeError(f"{tag}: exit {m.rc}\n{m.output[-2000:]}")
    result = json.loads(out.read_text())
    facts = m.facts()
    facts.update(rows_read=result["rows_read"],
                 rows_per_s=round(result["rows_read"] / m.wall_s),
                 run_s=_run_seconds(result),
                 counts={k: result[k] for k in ("inserted", "updated", "expired", "deleted")},
                 chunks=result["chunks_total"],
                 max_connections=result["max_connections"])  # fmt: skip
    print(
        f"  {tag}: {facts['rows_per_s']:,} rows/s, {facts['wall_s']:.1f} s, "
        f"rss {facts['peak_rss_mb']} MB, load {facts['load_before']}",
        flush=True,
    )
    return facts


def _run_seconds(result: dict[str, Any]) -> float:
    from datetime import datetime

    started = datetime.fromisoformat(result["started_at"])
    finished = datetime.fromisoformat(result["finished_at"])
    return round((finished - started).total_seconds(), 3)


def target_counts(table: str, to: str = "valid_to") -> dict[str, int]:
    got = psql(DST_DB, f"SELECT count(*), count(*) FILTER (WHERE {to} IS NULL) FROM {table}",
               record=False)  # fmt: skip
    versions, current = (int(x) for x in got.split("|"))
    return {"versions": versions, "current": current}


def copy_ceiling(tmp: Path, table: str, rows: int, tag: str) -> dict[str, Any]:
    csv = tmp / f"{tag}.csv"
    base = ["psql", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "-v", "ON_ERROR_STOP=1"]
    export = Measured([*base, "-d", SRC_DB, "-c", f"\\copy (SELECT * FROM {table}) TO '{csv}' CSV"],
                      log=tmp / f"{tag}_export.log")  # fmt: skip
    psql(DST_DB, f"DROP TABLE IF EXISTS dw.{tag}; CREATE TABLE dw.{tag} {DIM_DDL};")
    imp = Measured([*base, "-d", DST_DB, "-c", f"\\copy dw.{tag} FROM '{csv}' CSV"],
                   log=tmp / f"{tag}_import.log")  # fmt: skip
    if export.rc or imp.rc:
        raise RuntimeError(f"{tag}: {export.output} {imp.output}")
    csv.unlink()
    facts = imp.facts()
    facts.update(rows=rows, rows_per_s=round(rows / imp.wall_s),
                 export_wall_s=round(export.wall_s, 3),
                 export_rows_per_s=round(rows / export.wall_s))  # fmt: skip
    print(
        f"  {tag}: \\copy in {facts['rows_per_s']:,} rows/s ({imp.wall_s:.1f} s), "
        f"export {facts['export_rows_per_s']:,} rows/s, load {facts['load_before']}",
        flush=True,
    )
    return facts


def dlt_venv() -> tuple[Path, float]:
    """The throwaway dlt venv (created under the temp dir if missing); its python, setup s."""
    venv = Path(tempfile.gettempdir()) / "aetl_mapper_dlt_venv"
    python = venv / "bin" / "python"
    t0 = time.perf_counter()
    if not (python.exists() and subprocess.run([str(python), "-c", "import dlt, psycopg2"],
                                               capture_output=True).returncode == 0):  # fmt: skip
        base = shutil.which("python3") or "python3"
        for argv in ([base, "-m", "venv", "--clear", str(venv)],
                     [str(python), "-m", "pip", "install", "-q", "dlt[postgres]"]):  # fmt: skip
            COMMANDS.append(" ".join(argv))
            subprocess.run(argv, check=True)
    else:
        COMMANDS.append(f"(reused {venv}: python3 -m venv {venv} && "
                        f"{python} -m pip install 'dlt[postgres]')")  # fmt: skip
    return python, time.perf_counter() - t0


def dlt_run(python: Path, tmp: Path, table: str, as_of: str, dataset: str, rows: int,
            tag: str, timeout: float) -> dict[str, Any]:  # fmt: skip
    pipelines = tmp / "dlt_pipelines"
    pipelines.mkdir(exist_ok=True)
    env = {"NORMALIZE__WORKERS": "2", "EXTRACT__DATA_WRITER__FILE_MAX_ITEMS": "100000",
           "NORMALIZE__DATA_WRITER__FILE_MAX_ITEMS": "100000", "RUNTIME__LOG_LEVEL": "WARNING",
           "DLT_DATA_DIR": str(tmp / "dlt_data")}  # fmt: skip
    argv = [str(python), str(HERE / "mapper_dlt_pipeline.py"),
            "--source", f"host={PG['host']} port={PG['port']} user=aetl_dlt dbname={SRC_DB}",
            "--dest", f"postgresql://aetl_dlt:bench@{PG['host']}:{PG['port']}/{DST_DB}",
            "--table", table, "--as-of", as_of, "--dataset", dataset,
            "--pipelines-dir", str(pipelines)]  # fmt: skip
    m = Measured(argv, env=env, timeout=timeout, cwd=tmp, log=tmp / f"{tag}.log")
    facts = m.facts()
    facts["env"] = {k: v for k, v in env.items() if k != "DLT_DATA_DIR"}
    if m.timed_out:
        facts.update(rows_per_s=None, finished=False)
        print(f"  {tag}: did not finish in {timeout:.0f} s, load {facts['load_before']}")
        return facts
    if m.rc != 0:
        raise RuntimeError(f"{tag}: exit {m.rc}\n{m.output[-3000:]}")
    line = [x for x in m.output.splitlines() if x.startswith("{")][-1]
    facts.update(json.loads(line), finished=True, rows_read=rows,
                 rows_per_s=round(rows / m.wall_s))  # fmt: skip
    print(
        f"  {tag}: {facts['rows_per_s']:,} rows/s, {m.wall_s:.1f} s "
        f"(steps {facts['steps_s']}), tree rss {facts['peak_tree_rss_mb']} MB, "
        f"load {facts['load_before']}",
        flush=True,
    )
    return facts


def setup_databases(rows: int, big_rows: int) -> dict[str, Any]:
    for db in (SRC_DB, DST_DB):
        psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE);\nCREATE DATABASE {db};")
    t0 = time.perf_counter()
    psql(SRC_DB, "CREATE SCHEMA src;")
    psql(SRC_DB, seed_sql("src.dim_v0", rows))
    psql(SRC_DB, changed_sql(rows))
    psql(SRC_DB, seed_sql("src.warm", 50_000))
    if big_rows:
        psql(SRC_DB, seed_sql("src.big_v0", big_rows))
    # the same-database variant: the 1M tables again, inside the target database
    psql(DST_DB, "CREATE SCHEMA src; CREATE SCHEMA dw;")
    psql(DST_DB, seed_sql("src.dim_v0", rows))
    psql(DST_DB, changed_sql(rows))
    # dlt's role: work_mem 256MB for its sessions only (the server keeps its defaults)
    psql(DST_DB, "DROP ROLE IF EXISTS aetl_dlt;\nCREATE ROLE aetl_dlt LOGIN PASSWORD 'bench';\n"
         "ALTER ROLE aetl_dlt SET work_mem = '256MB';\n"
         f"GRANT CREATE ON DATABASE {DST_DB} TO aetl_dlt;")  # fmt: skip
    psql(SRC_DB, "GRANT USAGE ON SCHEMA src TO aetl_dlt;\n"
         "GRANT SELECT ON ALL TABLES IN SCHEMA src TO aetl_dlt;")  # fmt: skip
    return {"seed_s": round(time.perf_counter() - t0, 1)}


def teardown() -> None:
    for db in (SRC_DB, DST_DB):
        psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE);")
    psql("postgres", "DROP ROLE IF EXISTS aetl_dlt;")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--big-rows", type=int, default=3_000_000, help="0: skip")
    ap.add_argument("--dlt-rows", type=int, default=None, help="default: --rows; 0 skips dlt")
    ap.add_argument("--dlt-timeout", type=float, default=600)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "mapper_scd.json")
    ap.add_argument("--keep", action="store_true", help="keep the scratch databases")
    args = ap.parse_args()
    rows = args.rows
    dlt_rows = rows if args.dlt_rows is None else args.dlt_rows
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="aetl_mapper_bench_"))
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "postgres": psql("postgres", "SHOW server_version;", record=False),
                    "work_mem": psql("postgres", "SHOW work_mem;", record=False),
                    "shared_buffers": psql("postgres", "SHOW shared_buffers;", record=False),
                    "load_at_start": load()},
        "rows": rows, "big_rows": args.big_rows, "dlt_rows": dlt_rows, "as_of": [T1, T2],
        "change": "v1: id % 100 < 10 changed (name, city, updated_at), id % 100 = 10 deleted, "
                  "ids rows+1 .. rows+rows/100 new",
    }  # fmt: skip
    print(f"scratch {tmp}; load {load()}", flush=True)
    try:
        print("seeding", flush=True)
        report["setup"] = setup_databases(rows, args.big_rows)
        python, venv_s = dlt_venv() if dlt_rows else (None, 0.0)
        report["setup"]["dlt_venv_s"] = round(venv_s, 1)

        print("warm-up (discarded)", flush=True)
        warm = job_file(tmp, "warm", SRC_DB, "src.warm", "dw.warm")
        async_etl_run(tmp, warm, T1, [], "warm_async_etl")
        copy_ceiling(tmp, "src.warm", 50_000, "warm_copy")
        if python:
            dlt_run(python, tmp, "src.warm", T1, "dlt_warm", 50_000, "warm_dlt", 300)

        print("ceiling", flush=True)
        report["copy_ceiling"] = copy_ceiling(tmp, "src.dim_v0", rows, "copy_ceiling")

        print("async-etl", flush=True)
        configs = [("seq", ["parallel.enabled=false"]), ("w2", ["parallel.max_workers=2"]),
                   ("w4", ["parallel.max_workers=4"])]  # fmt: skip
        runs: dict[str, Any] = {}
        for label, sets in configs:
            job = job_file(tmp, f"bench_{label}", SRC_DB, "src.dim_v0", f"dw.dim_{label}")
            first = async_etl_run(tmp, job, T1, sets, f"{label}_initial")
            second = async_etl_run(tmp, job, T2, [*sets, "source.table=src.dim_v1"],
                                   f"{label}_second")  # fmt: skip
            runs[label] = {"source": "other database (binary COPY through the process)",
                           "set": sets, "initial": first, "second": second,
                           "target": target_counts(f"dw.dim_{label}")}  # fmt: skip
        job = job_file(tmp, "bench_same_db_w4", DST_DB, "src.dim_v0", "dw.dim_same_w4")
        sets = ["parallel.max_workers=4"]
        runs["same_db_w4"] = {
            "source": "same database (INSERT ... SELECT staging, no row through the process)",
            "set": sets,
            "initial": async_etl_run(tmp, job, T1, sets, "same_db_w4_initial"),
            "second": async_etl_run(tmp, job, T2, [*sets, "source.table=src.dim_v1"],
                                    "same_db_w4_second"),
            "target": target_counts("dw.dim_same_w4"),
        }  # fmt: skip
        report["async_etl"] = runs
        if args.big_rows:
            big: dict[str, Any] = {}
            for label, sets in (configs[0], configs[2]):
                job = job_file(tmp, f"big_{label}", SRC_DB, "src.big_v0", f"dw.big_{label}")
                big[label] = async_etl_run(tmp, job, T1, sets, f"big_{label}_initial")
            report["async_etl_big"] = big

        if python:
            print("dlt", flush=True)
            d: dict[str, Any] = {
                "venv": str(python.parent.parent),
                "role": "aetl_dlt: ALTER ROLE aetl_dlt SET work_mem = '256MB'",
            }
            if dlt_rows != rows:
                psql(SRC_DB, f"CREATE TABLE src.dlt_v0 AS SELECT * FROM src.dim_v0 "
                     f"WHERE id <= {dlt_rows};\nCREATE TABLE src.dlt_v1 AS SELECT * FROM "
                     f"src.dim_v1 WHERE id <= {dlt_rows} OR id BETWEEN {rows + 1} AND "
                     f"{rows + dlt_rows // 100};\n"
                     "GRANT SELECT ON ALL TABLES IN SCHEMA src TO aetl_dlt;")  # fmt: skip
                v0, v1 = "src.dlt_v0", "src.dlt_v1"
            else:
                v0, v1 = "src.dim_v0", "src.dim_v1"
            d["initial"] = dlt_run(python, tmp, v0, T1, "dlt_scd", dlt_rows, "dlt_initial",
                                   args.dlt_timeout)  # fmt: skip
            if d["initial"]["finished"]:
                n1 = int(psql(SRC_DB, f"SELECT count(*) FROM {v1}", record=False))
                d["second"] = dlt_run(python, tmp, v1, T2, "dlt_scd", n1, "dlt_second",
                                      args.dlt_timeout)  # fmt: skip
                if d["second"]["finished"]:
                    d["target"] = target_counts("dlt_scd.dim", "_dlt_valid_to")
            report["dlt"] = d
    finally:
        report["commands"] = COMMANDS
        report["total_wall_s"] = round(time.perf_counter() - started, 1)
        report["machine"]["load_at_end"] = load()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out} ({report['total_wall_s']} s)")
        if not args.keep:
            teardown()
        shutil.rmtree(tmp, ignore_errors=True)
    summarize(report)


def summarize(r: dict[str, Any]) -> None:
    """Print the markdown table for RESULTS.md."""
    ceiling = r["copy_ceiling"]["rows_per_s"]
    dlt = r.get("dlt", {})

    def dlt_rate(run: str) -> float | None:
        got = dlt.get(run, {})
        return got.get("rows_per_s") if got.get("finished") else None

    print(
        "\n| engine / config | run | rows read | wall s | rows/s | vs dlt | vs \\copy | "
        "peak RSS MB | load |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for label, runs in r["async_etl"].items():
        for run in ("initial", "second"):
            m = runs[run]
            d = dlt_rate(run)
            vs_dlt = f"{m['rows_per_s'] / d:.1f}x" if d else "-"
            vs_copy = f"{m['rows_per_s'] / ceiling:.2f}x" if run == "initial" else ""
            print(f"| async-etl {label} | {run} | {m['rows_read']:,} | {m['wall_s']:.1f} | "
                  f"{m['rows_per_s']:,} | {vs_dlt} | {vs_copy} | {m['peak_rss_mb']} | "
                  f"{m['load_before']} |")  # fmt: skip
    for label, m in r.get("async_etl_big", {}).items():
        print(f"| async-etl {label} ({r['big_rows']:,}) | initial | {m['rows_read']:,} | "
              f"{m['wall_s']:.1f} | {m['rows_per_s']:,} | | {m['rows_per_s'] / ceiling:.2f}x | "
              f"{m['peak_rss_mb']} | {m['load_before']} |")  # fmt: skip
    for run in ("initial", "second"):
        if run in dlt:
            m = dlt[run]
            rate = f"{m['rows_per_s']:,}" if m.get("finished") else "did not finish"
            print(f"| dlt scd2 | {run} | {r['dlt_rows']:,} | {m['wall_s']:.1f} | {rate} | | | "
                  f"{m['peak_tree_rss_mb']} (tree) | {m['load_before']} |")  # fmt: skip
    c = r["copy_ceiling"]
    print(
        f"| psql \\copy (ceiling) | import | {c['rows']:,} | {c['wall_s']:.1f} | "
        f"{c['rows_per_s']:,} | | 1.00x | | {c['load_before']} |"
    )


if __name__ == "__main__":
    main()
