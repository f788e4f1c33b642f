"""One dlt ``scd2`` merge run for benchmarks/mapper_scd.py (runs in its throwaway dlt venv).

Imports only dlt and psycopg2 (installed by ``pip install "dlt[postgres]"``), never async_etl.
Settings (dlt's documented performance knobs, set by the caller through the environment):
``NORMALIZE__WORKERS=2``, ``{EXTRACT,NORMALIZE}__DATA_WRITER__FILE_MAX_ITEMS`` (so that extract
writes several files and the two normalize workers have something to share), the csv loader
file format (``extract(..., loader_file_format="csv")``: COPY on PostgreSQL), 2 normalize
workers (``normalize(workers=2)``), and a role
whose ``work_mem`` is 256MB (the caller's ``ALTER ROLE``).  Rows are yielded in pages of
``--page`` dicts (the documented "yield pages, not rows").  Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime

import dlt
import psycopg2

COLUMNS = ("id", "name", "email", "city", "tier", "updated_at")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True, help="libpq DSN of the source database")
    ap.add_argument("--dest", required=True, help="postgresql:// URL of the destination")
    ap.add_argument("--table", required=True)
    ap.add_argument("--as-of", required=True, help="scd2 boundary_timestamp (ISO)")
    ap.add_argument("--dataset", default="dlt_scd")
    ap.add_argument("--pipelines-dir", required=True)
    ap.add_argument("--page", type=int, default=10_000)
    ap.add_argument("--normalize-workers", type=int, default=2)
    args = ap.parse_args()
    as_of = datetime.fromisoformat(args.as_of)

    @dlt.resource(
        name="dim",
        write_disposition={
            "disposition": "merge",
            "strategy": "scd2",
            "boundary_timestamp": as_of,
        },
        columns={
            "id": {"data_type": "bigint", "nullable": False},
            "name": {"data_type": "text"},
            "email": {"data_type": "text"},
            "city": {"data_type": "text"},
            "tier": {"data_type": "bigint"},
            "updated_at": {"data_type": "timestamp"},
        },
    )
    def dim():  # type: ignore[no-untyped-def]
        conn = psycopg2.connect(args.source)
        try:
            with conn.cursor(name="dim") as cur:
                cur.itersize = args.page
                cur.execute(f"SELECT {', '.join(COLUMNS)} FROM {args.table} ORDER BY id")
                while page := cur.fetchmany(args.page):
                    yield [dict(zip(COLUMNS, row, strict=True)) for row in page]
        finally:
            conn.close()

    pipeline = dlt.pipeline(
        pipeline_name="aetl_mapper_bench",
        destination=dlt.destinations.postgres(credentials=args.dest),
        dataset_name=args.dataset,
        pipelines_dir=args.pipelines_dir,
    )
    started = time.perf_counter()
    steps: dict[str, float] = {}
    t = time.perf_counter()
    pipeline.extract(dim(), loader_file_format="csv")
    steps["extract"] = time.perf_counter() - t
    t = time.perf_counter()
    pipeline.normalize(workers=args.normalize_workers)
    steps["normalize"] = time.perf_counter() - t
    t = time.perf_counter()
    info = pipeline.load()
    steps["load"] = time.perf_counter() - t
    info.raise_on_failed_jobs()
    formats = sorted({j.job_file_info.file_format for p in info.load_packages
                      for j in p.jobs["completed_jobs"]})  # fmt: skip
    print(json.dumps({"steps_s": steps, "total_s": time.perf_counter() - started,
                      "file_formats": formats, "dlt_version": dlt.__version__}))  # fmt: skip


if __name__ == "__main__":
    main()
