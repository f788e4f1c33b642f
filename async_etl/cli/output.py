"""``--json-out`` files: checked before a command does any work, written after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from async_etl.errors import ConfigError


def json_out_path(path: str | None) -> Path | None:
    """The ``--json-out`` path, made ready (parent created, writable); ``ConfigError`` if not.

    Checked up front so that a typo does not surface as a traceback after a long run.
    """
    if path is None:
        return None
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_dir():
            raise ConfigError(f"--json-out {path}: is a directory")
        existed = out.exists()
        with out.open("ab"):
            pass
        if not existed:  # leave no empty file behind: its presence means "the run wrote it"
            out.unlink()
    except OSError as exc:
        raise ConfigError(f"--json-out {path}: cannot write there ({exc.strerror})") from None
    return out


def write_json(out: Path | None, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``out`` (from ``json_out_path``); nothing if None."""
    if out is not None:
        out.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
