"""README's record schema names the very PostgreSQL types bench creates its table with."""

from __future__ import annotations

import re
from pathlib import Path

from async_etl.core.schema import default_schema

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_record_schema_matches_the_create_table() -> None:
    """Every column README lists for the built-in schema has the type of the real CREATE."""
    text = " ".join(README.read_text().split())
    head = r"The built-in schema(?:, as PostgreSQL creates it)?: (.*?)\. (?:\(CrateDB|With `--p)"
    listed = re.search(head, text)
    assert listed is not None
    said = re.sub(r"\([^)]*\)", "", listed.group(1)).replace("`", "")
    said_cols = [c.strip().split(" ", 1) for c in said.split(",")]
    schema = default_schema()
    real = [[c.name, schema.pg_type(c)] for c in schema.columns]
    assert [[n, t.strip()] for n, t in said_cols] == real
