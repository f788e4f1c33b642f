"""``load_schema``: the caller's side of ``core.schema.parse_schema`` reads the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from async_etl import load_schema
from async_etl.errors import ConfigError


def test_load_schema_reads_the_file_and_names_it_in_errors(tmp_path: Path) -> None:
    """A file's text is parsed, and a problem in it names the file."""
    good = tmp_path / "good.toml"
    good.write_text('[columns]\nid = { type = "bigint", gen = "sequence" }\n', encoding="utf-8")
    assert load_schema(good).names == ("id",)
    bad = tmp_path / "bad.toml"
    bad.write_text("[columns]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="missing or empty") as info:
        load_schema(bad)
    assert str(info.value).startswith(f"{bad}: ")


def test_load_missing_file(tmp_path: Path) -> None:
    """An unreadable file raises ConfigError naming it."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="cannot read schema file") as info:
        load_schema(path)
    assert str(path) in str(info.value)


def test_load_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are one ConfigError line naming the file, not a traceback."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[columns]\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_schema(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)
