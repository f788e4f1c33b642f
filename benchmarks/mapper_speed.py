"""Issue 11's speed table in one run: async-etl's load modes against every peer installable.

    flock /tmp/bench.lock /work/main/.venv/bin/python benchmarks/mapper_speed.py \\
        --rows 1000000 --reps 3 --peers /tmp [--dlt] [--out F]

Peers, each from a throwaway venv under ``--peers`` (never the project's venv), run with
``HOME`` / ``XDG_*`` redirected to a temp dir and their telemetry off:
``mapper_peer_ingestr`` (``pip install ingestr==1.1.22``), ``mapper_peer_sling`` (``pip install
sling sling-linux-amd64``; the wheel's own binary is used: ``sling``'s launcher would download
one), ``mapper_peer_dlt`` (``pip install "dlt[postgres]==1.31.0"``, with ``--dlt``), and
``pgcopydb`` from the distribution's package (``apt-get install pgcopydb``).  A peer that is not
there is left out and said so.

Data (seeded, ``benchmarks.mapper_scd.seed_sql``): ``src.dim_v0`` of ``--rows`` rows; ``src.dim_v1``
= v0 with 10 % of the rows changed (name, city, and ``updated_at`` moved past every v0 value, so
an incremental reader finds them), 1 % deleted, 1 % new.  Source and target are two databases of
the local PostgreSQL (default settings): every row crosses the process.

Measured, each a fresh process, wall seconds spawn to exit, median of ``--reps`` after a
discarded warm-up rep (``--reps 1``: one measured rep, no warm-up):

* full copy into a dropped target: the binary ``psql \\copy`` pipe into a table with its primary
  key (the wire ceiling), async-etl ``copy --mode replace``, pgcopydb ``clone`` of the one table
  (``--table-jobs 2 --index-jobs 2``), ingestr ``replace``, sling ``full-refresh``;
* SCD2 initial (v0 into no target) then second run (v1): async-etl (2 workers), ingestr
  ``scd2``, dlt ``scd2`` (``--dlt``, one rep: 30 s a run);
* merge (type 1) initial then second run: async-etl with ``incremental = "updated_at"``, sling
  ``incremental`` (``--update-key updated_at``), ingestr ``merge``;
* a 10-row copy, whole process: async-etl and ingestr;
* with ``--before DIR`` (``git archive REV | tar -x -C DIR``), async-etl's full, SCD2 and merge
  cases again with that code (same interpreter).

rows/s = the source's rows / wall seconds (for an incremental second run too: the table it keeps
up to date).  async-etl's peak RSS is the kernel's high-water mark of its process (``wait4``).
Writes ``--out`` (JSON) with the commands, the load average before every measurement and each
figure; prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.mapper_scd import DIM_DDL, seed_sql
from benchmarks.mapper_scd import changed_sql as scd_changed_sql

SRC, DST = "aetl_speed_src", "aetl_speed_dst"
BASE = "postgresql://postgres@127.0.0.1:5432"
AS_OF = ("2024-06-01T00:00:00+00:00", "2024-06-02T00:00:00+00:00")
COMMANDS: list[str] = []


def changed_sql(rows: int) -> str:
    """v1: 10 % changed (updated_at past every v0 value), 1 % gone, 1 % new (``mapper_scd``)."""
    return scd_changed_sql(
        rows,
        changed_at="timestamptz '2025-01-01 00:00:00+00' + id * interval '1 ms'",
        new_at="timestamptz '2025-02-01 00:00:00+00' + g * interval '1 ms'",
    )


def psql(db: str, sql: str) -> str:
    """Run ``sql`` in ``db``; its output (errors stop the benchmark)."""
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qAt",
                          "-v", "ON_ERROR_STOP=1"], input=sql, text=True, check=True,
                         capture_output=True)  # fmt: skip
    return out.stdout.strip()


def measure(argv: list[str] | str, env: dict[str, str], cwd: str | None = None) -> dict[str, Any]:
    """Wall seconds and peak RSS (MB) of one fresh process, with the load average before it.

    ``cwd``: where it runs (``python -m`` puts the working directory first on ``sys.path``,
    ahead of ``PYTHONPATH``: async-etl runs from the checkout it measures).
    """
    COMMANDS.append(argv if isinstance(argv, str) else " ".join(argv))
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, shell=isinstance(argv, str), env=env, text=True, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({proc.returncode}): {output[-3000:]}")
    return {"s": took, "rss_mb": round(usage.ru_maxrss / 1024, 1), "load": round(load, 2)}


class Bench:
    """The contenders of one run and their environments."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.src, self.dst = f"{BASE}/{SRC}", f"{BASE}/{DST}"
        # bytecode is cached as an installed package's is (this machine sets
        # PYTHONDONTWRITEBYTECODE, which would compile every module on every start)
        self.env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.before_env = {**self.env, "PYTHONPATH": args.before} if args.before else None
        home = str(tmp / "home")
        self.peer_env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": home,
                         "XDG_CACHE_HOME": home, "XDG_DATA_HOME": home,
                         "DISABLE_TELEMETRY": "true", "INGESTR_DISABLE_TELEMETRY": "true",
                         "RUNTIME__DLTHUB_TELEMETRY": "false", "SLING_HOME_DIR": home,
                         "SLING_DISABLE_TELEMETRY": "true",
                         "AETL_SRC": f"{self.src}?sslmode=disable",
                         "AETL_DST": f"{self.dst}?sslmode=disable"}  # fmt: skip
        peers = Path(args.peers)
        self.ingestr = _found(peers / "mapper_peer_ingestr/bin/ingestr")
        sling = peers / "mapper_peer_sling/lib/python3.11/site-packages/sling_linux_amd64/bin"
        self.sling = _found(sling / "sling-linux-amd64")
        self.dlt = _found(peers / "mapper_peer_dlt/bin/python") if args.dlt else None
        self.pgcopydb = shutil.which("pgcopydb")
        self.etl = [sys.executable, "-m", "async_etl.cli"]

    def job(self, name: str, kind: int, incremental: bool) -> Path:
        """A job file: v0 into ``dw.<name>``, SCD ``kind``, 2 workers, ``chunk_size`` unset."""
        scd = 'type = 2\ndeletes = "expire"' if kind == 2 else 'type = 1\ndeletes = "ignore"'
        inc = 'incremental = "updated_at"\n' if incremental else ""
        path = self.tmp / f"{name}.toml"
        path.write_text(f'name = "{name}"\n[source]\nurl = "{self.src}"\ntable = "src.dim_v0"\n'
                        f'key = ["id"]\n{inc}[target]\nurl = "{self.dst}"\ntable = "dw.{name}"\n'
                        f"[scd]\n{scd}\n[parallel]\nmax_workers = 2\n")  # fmt: skip
        return path

    def cases(self) -> dict[str, list[Callable[[], dict[str, Any]]]]:
        """Name -> its steps (one: a copy; two: initial then second run)."""
        e, pe = self.env, self.peer_env
        out: dict[str, list[Callable[[], dict[str, Any]]]] = {}
        pipe = (f"psql -h 127.0.0.1 -U postgres -d {SRC} -c \"\\copy (SELECT * FROM src.dim_v0) "
                f"TO STDOUT (FORMAT binary)\" | psql -h 127.0.0.1 -U postgres -d {DST} -c "
                "\"\\copy dw.ceiling FROM STDIN (FORMAT binary)\"")  # fmt: skip

        def ceiling() -> dict[str, Any]:
            psql(DST, f"CREATE TABLE dw.ceiling {DIM_DDL};")  # its primary key included
            return measure(pipe, e)

        out["full: psql \\copy pipe (table with PK)"] = [ceiling]
        variants = [("", e)] + ([(" [before]", self.before_env)] if self.before_env else [])
        for tag, env in variants:
            out[f"full: async-etl copy --mode replace{tag}"] = [self._copy("src.dim_v0", env)]
        if self.pgcopydb:
            filt = self.tmp / "pgcopydb.ini"
            filt.write_text("[include-only-table]\nsrc.dim_v0\n")
            out["full: pgcopydb clone (one table)"] = [lambda: measure([
                str(self.pgcopydb), "clone", "--source", self.src, "--target", self.dst,
                "--filters", str(filt), "--dir", str(self.tmp / "pgcopydb"), "--no-owner",
                "--no-acl", "--skip-extensions", "--drop-if-exists", "--table-jobs", "2",
                "--index-jobs", "2", "--restart"], pe)]  # fmt: skip
        if self.ingestr:
            out["full: ingestr replace"] = [self._ingestr("replace", "src.dim_v0", "dw.ing_fr")]
        if self.sling:
            out["full: sling full-refresh"] = [self._sling("full-refresh", "dw.sl_fr")]
        scd2 = self.job("scd2", 2, incremental=False)
        for tag, env in variants:
            out[f"scd2: async-etl (2 workers){tag}"] = self._runs(scd2, env)
        if self.ingestr:
            out["scd2: ingestr scd2"] = [self._ingestr("scd2", f"src.dim_v{i}", "dw.ing_scd2")
                                         for i in (0, 1)]  # fmt: skip
        if self.dlt:
            out["scd2: dlt scd2 (one rep)"] = [self._dlt(0), self._dlt(1)]
        merge = self.job("merge", 1, incremental=True)
        for tag, env in variants:
            out[f"merge: async-etl incremental (2 workers){tag}"] = self._runs(merge, env)
        if self.sling:
            out["merge: sling incremental"] = [self._sling("incremental", "dw.sl_inc", v)
                                               for v in (0, 1)]  # fmt: skip
        if self.ingestr:
            out["merge: ingestr merge"] = [self._ingestr("merge", f"src.dim_v{i}", "dw.ing_m")
                                           for i in (0, 1)]  # fmt: skip
        out["tiny: async-etl 10-row copy"] = [self._copy("src.tiny", e)]
        if self.ingestr:
            out["tiny: ingestr 10-row replace"] = [
                self._ingestr("replace", "src.tiny", "dw.ing_tiny")
            ]
        return out

    def _copy(self, table: str, env: dict[str, str]) -> Callable[[], dict[str, Any]]:
        argv = [*self.etl, "copy", "--source", self.src, "--source-table", table, "--target",
                self.dst, "--target-table", "dw.fr", "--key", "id", "--fresh"]  # fmt: skip
        return lambda: measure(argv, env, env["PYTHONPATH"])

    def _runs(self, job: Path, env: dict[str, str]) -> list[Callable[[], dict[str, Any]]]:
        """The job's initial run (v0) and its second run (v1)."""
        first = [*self.etl, "run", str(job), "--as-of", AS_OF[0]]
        second = [*self.etl, "run", str(job), "--as-of", AS_OF[1], "--set",
                  "source.table=src.dim_v1"]  # fmt: skip
        where = env["PYTHONPATH"]
        return [lambda: measure(first, env, where), lambda: measure(second, env, where)]

    def _ingestr(self, strategy: str, table: str, dest: str) -> Callable[[], dict[str, Any]]:
        argv = [str(self.ingestr), "ingest", "--yes", "--source-uri", self.src, "--source-table",
                table, "--dest-uri", self.dst, "--dest-table", dest, "--incremental-strategy",
                strategy, "--primary-key", "id"]  # fmt: skip
        return lambda: measure(argv, self.peer_env)

    def _sling(self, mode: str, dest: str, version: int = 0) -> Callable[[], dict[str, Any]]:
        argv = [str(self.sling), "run", "--src-conn", "AETL_SRC", "--src-stream",
                f"src.dim_v{version}", "--tgt-conn", "AETL_DST", "--tgt-object", dest,
                "--mode", mode]  # fmt: skip
        if mode == "incremental":
            argv += ["--primary-key", "id", "--update-key", "updated_at"]
        return lambda: measure(argv, self.peer_env)

    def _dlt(self, version: int) -> Callable[[], dict[str, Any]]:
        env = {**self.peer_env, "NORMALIZE__WORKERS": "2", "RUNTIME__LOG_LEVEL": "WARNING",
               "EXTRACT__DATA_WRITER__FILE_MAX_ITEMS": "100000",
               "NORMALIZE__DATA_WRITER__FILE_MAX_ITEMS": "100000",
               "DLT_DATA_DIR": str(self.tmp / "dlt_data")}  # fmt: skip
        argv = [str(self.dlt), str(Path(__file__).with_name("mapper_dlt_pipeline.py")),
                "--source", f"host=127.0.0.1 port=5432 user=aetl_dlt dbname={SRC}",
                "--dest", f"postgresql://aetl_dlt:bench@127.0.0.1:5432/{DST}",
                "--table", f"src.dim_v{version}", "--as-of", AS_OF[version],
                "--dataset", "dlt_scd", "--pipelines-dir",
                str(self.tmp / "dlt_pipelines")]  # fmt: skip
        return lambda: measure(argv, env)


def _found(path: Path) -> str | None:
    return str(path) if path.exists() else None


def reset() -> None:
    """An empty target database: no dw schema, no state tables, no dlt dataset."""
    psql(DST, "DROP SCHEMA IF EXISTS dw CASCADE; CREATE SCHEMA dw; DROP SCHEMA IF EXISTS src "
         "CASCADE; DROP SCHEMA IF EXISTS dlt_scd CASCADE; DROP SCHEMA IF EXISTS dlt_scd_staging "
         "CASCADE; DROP TABLE IF EXISTS async_etl_runs, async_etl_chunks, async_etl_rejects, "
         "async_etl_stop_requests CASCADE;")  # fmt: skip


def setup(rows: int) -> None:
    """Both databases anew, the source seeded, dlt's role (work_mem 256MB for it alone)."""
    for db in (SRC, DST):
        psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE); CREATE DATABASE {db};")
    psql(SRC, "CREATE SCHEMA src;" + seed_sql("src.dim_v0", rows) + changed_sql(rows))
    psql(SRC, f"CREATE TABLE src.tiny {DIM_DDL}; INSERT INTO src.tiny "
         "SELECT * FROM src.dim_v0 WHERE id <= 10;")  # fmt: skip
    psql("postgres", "DROP ROLE IF EXISTS aetl_dlt; CREATE ROLE aetl_dlt LOGIN SUPERUSER "
         "PASSWORD 'bench'; ALTER ROLE aetl_dlt SET work_mem = '256MB';")  # fmt: skip


def main() -> None:
    """Seed, run every case ``--reps`` times (after a warm-up), print and write the JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peers", default="/tmp", help="folder of the throwaway peer venvs")
    ap.add_argument("--dlt", action="store_true", help="also dlt scd2 (one rep)")
    ap.add_argument("--before", default=None, help="a checkout of the code to compare with")
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument("--out", default="benchmarks/results/mapper_speed.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="aetl_speed_"))
    (tmp / "home").mkdir()
    setup(args.rows)
    bench = Bench(args, tmp)
    cases = {k: v for k, v in bench.cases().items() if args.only in k}
    missing = [n for n, p in (("ingestr", bench.ingestr), ("sling", bench.sling),
                              ("pgcopydb", bench.pgcopydb)) if p is None]  # fmt: skip
    results: dict[str, list[list[dict[str, Any]]]] = {}
    reps = range(args.reps + 1) if args.reps > 1 else range(1, 2)
    for rep in reps:
        for name, steps in cases.items():
            if "dlt" in name and rep != reps[-1]:
                continue
            reset()
            got = [step() for step in steps]
            print(f"rep {rep} {name}: " + " / ".join(f"{g['s']:.2f} s" for g in got), flush=True)
            if rep:
                results.setdefault(name, []).append(got)
    summary = summarize(results, args.rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "rows": args.rows, "reps": args.reps, "missing_peers": missing,
        "load_after": os.getloadavg(), "summary": summary, "raw": results,
        "commands": sorted(set(COMMANDS))}, indent=2))  # fmt: skip
    for db in (SRC, DST):
        psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE);")
    psql("postgres", "DROP ROLE IF EXISTS aetl_dlt;")
    shutil.rmtree(tmp, ignore_errors=True)


def summarize(results: dict[str, list[list[dict[str, Any]]]], rows: int) -> dict[str, Any]:
    """Median seconds, rows/s and peak RSS of each step; printed as a table."""
    out: dict[str, Any] = {}
    for name, reps in results.items():
        steps = []
        for i in range(len(reps[0])):
            s = statistics.median(r[i]["s"] for r in reps)
            steps.append({"median_s": round(s, 3), "rows_per_s": round(rows / s),
                          "peak_rss_mb": max(r[i]["rss_mb"] for r in reps),
                          "load": [r[i]["load"] for r in reps]})  # fmt: skip
        out[name] = steps
        shown = " / ".join(f"{x['median_s']:6.2f} s {x['rows_per_s']:>9,}/s" for x in steps)
        print(f"{name:44s} {shown}  rss {steps[0]['peak_rss_mb']} MB", flush=True)
    return out


if __name__ == "__main__":
    main()
