from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import asyncpg

import async_etl

README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "postgresql://postgres@127.0.0.1:5432/test"


def readme_block(heading: str) -> str:
    """The first ```python block under ``heading`` in README.md, as written there."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no python block under {heading!r}"
    return match.group(1)


async def test_readme_embedding_example_loads_postgres(pg_dsn: str) -> None:
    """The README's 'Embedding the engine' block runs verbatim (its URL aimed at a test DB)."""
    source = readme_block("### Embedding the engine")
    assert source.count(README_URL) == 1  # the only change made: where the database is
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile(source.replace(README_URL, pg_dsn), "README.md", "exec", flags=flags)
    namespace: dict[str, Any] = {}
    await eval(code, namespace)  # top-level await: evaluating the block gives a coroutine
    summary = namespace["summary"]
    assert namespace["settings"].records == 100_000
    assert summary.ok and summary.records == summary.reconciled == 100_000
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(DISTINCT id) FROM bench") == 100_000
    finally:
        await conn.close()


def test_public_names_are_exported() -> None:
    """Everything in __all__ is importable from the package root."""
    for name in async_etl.__all__:
        assert hasattr(async_etl, name), name
