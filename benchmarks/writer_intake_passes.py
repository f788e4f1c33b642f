"""The writer's intake, pass by pass, against fused alternatives (CPU ms for 200,000 rows).

Run: ``PYTHONPATH=. python benchmarks/writer_intake_passes.py --out FILE``.  The rows are
``benchmarks/writer.py``'s (bigint, text, double precision, timestamptz), cut into the
writer's 4,096-row slices (``SLICE_VALUES`` / 4 columns); each figure is the best of 7 runs
over all slices, ``time.process_time``.  Pure CPU: no server, no event loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from itertools import chain
from operator import countOf, itemgetter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from writer import rows

from async_etl.core import pg_native
from async_etl.core.batching import Columns, column_total
from async_etl.core.row_codecs import PgColumn, RowShape

WIDTH = 4
COLS = (
    PgColumn("id", "int8", False),
    PgColumn("name", "text"),
    PgColumn("score", "float8"),
    PgColumn("at", "timestamptz"),
)
PLAN = pg_native.ColumnPlan.of(COLS)  # the writer's intake check for these columns
_ROWS = rows(200_000)
SLICES = [_ROWS[i : i + 4096] for i in range(0, len(_ROWS), 4096)]


def best_ms(fn: Callable[[int, list[tuple[Any, ...]]], object]) -> float:
    best = float("inf")
    for _ in range(7):
        c0 = time.process_time()
        for k, s in enumerate(SLICES):
            fn(k, s)
        best = min(best, time.process_time() - c0)
    return round(best * 1000, 2)


def signature_columns(s: list[tuple[Any, ...]]) -> tuple[list[Any], ...] | None:
    """Fused: one flat list, one list of its types compared with the first row's types."""
    flat = list(chain.from_iterable(s))
    if list(map(type, flat)) != list(map(type, s[0])) * len(s):
        return None
    return tuple(flat[i::WIDTH] for i in range(WIDTH))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args().out
    shape = RowShape(tuple(c.name for c in COLS))
    seen = [Columns.of(s, WIDTH) for s in SLICES]
    lists = [[list(map(itemgetter(i), s)) for i in range(WIDTH)] for s in SLICES]
    result = {
        "rows": sum(map(len, SLICES)),
        "slices": len(SLICES),
        "now": {
            "whole_intake": best_ms(lambda k, s: PLAN.look(shape.normalize_many(s) or [])),
            "normalize_many (type + width passes)": best_ms(lambda k, s: shape.normalize_many(s)),
            "Columns.of (lists, kinds, join)": best_ms(lambda k, s: Columns.of(s, WIDTH)),
            "  column lists (itemgetter)": best_ms(
                lambda k, s: [list(map(itemgetter(i), s)) for i in range(WIDTH)]
            ),
            "  kinds on the lists (countOf)": best_ms(
                lambda k, s: [countOf(map(type, v), type(v[0])) for v in lists[k]]
            ),
            "ColumnPlan.look (plain + size)": best_ms(lambda k, s: PLAN.look(s)),
            "  timestamps min + max": best_ms(lambda k, s: (min(lists[k][3]), max(lists[k][3]))),
            "column_total": best_ms(lambda k, s: column_total(seen[k])),
        },
        "fused": {
            "columns by one type-signature compare (flat, types, slices)": best_ms(
                lambda k, s: signature_columns(s)
            ),
            "kinds straight from the rows (no lists)": best_ms(
                lambda k, s: [countOf(map(type, map(itemgetter(i), s)), int) for i in range(WIDTH)]
            ),
            "type + width in one pass (tuple.__len__)": best_ms(
                lambda k, s: countOf(map(tuple.__len__, s), WIDTH)
            ),
        },
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
