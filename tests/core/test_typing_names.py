"""``async_etl.typing``'s writer types, imported on first use, are still listed like the rest."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WRITER_TYPES = ("AsyncSink", "BlockingSink", "EncodedBatch", "Encoding", "IdRange",
                "ManagedAsyncSink", "RowError", "SendResult", "Target", "WorkUnit")  # fmt: skip

FRESH = (
    "import async_etl.typing as m\n"
    "listed = set(dir(m))\n"
    "star = {}\n"
    "exec('from async_etl.typing import *', star)\n"
    "print(' '.join(sorted(listed)))\n"
    "print(' '.join(sorted(star)))\n"
)


def _fresh_names() -> tuple[set[str], set[str]]:
    """``dir()`` and a star import's names of the module in a new interpreter (nothing used)."""
    done = subprocess.run([sys.executable, "-c", FRESH], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    listed, star = done.stdout.splitlines()
    return set(listed.split()), set(star.split())


def test_dir_and_star_import_list_the_writer_types_before_first_use() -> None:
    """In a fresh interpreter dir() and ``import *`` give the lazy names as they did when eager."""
    listed, star = _fresh_names()
    assert set(WRITER_TYPES) <= listed, sorted(set(WRITER_TYPES) - listed)
    assert set(WRITER_TYPES) <= star, sorted(set(WRITER_TYPES) - star)
    assert {"Row", "Holder", "Progress", "AsyncExecutor", "Limit", "Mode"} <= star


def test_every_public_name_imports_and_its_values_pickle() -> None:
    """``from async_etl.typing import X`` works for each name; a value round-trips a pickle."""
    import async_etl.typing as m

    for name in m.__all__:
        exec(f"from async_etl.typing import {name}", {})
    for value in (m.IdRange(5, 3), m.Encoding("pg_binary", "COPY t"), m.RowError(7, "why")):
        back = pickle.loads(pickle.dumps(value))
        assert back == value and type(back) is type(value)


def test_the_writer_types_hints_resolve_as_before_the_move() -> None:
    """get_type_hints resolves Encoding's and EncodedBatch's ``wire`` (WireFormat) at run time."""
    import typing

    import async_etl.typing as m

    for kind in (m.Encoding, m.EncodedBatch, m.IdRange, m.RowError, m.Target):
        hints = typing.get_type_hints(kind)
        assert "wire" not in hints or hints["wire"] == m.WireFormat, kind
