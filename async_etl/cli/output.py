"""``--json-out`` files: checked before a command does any work, written after it.

``--json-out -`` writes the JSON to stdout instead; the command then prints its table or
summary line to stderr (``text_stream``), so stdout holds nothing but the JSON document.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final, TextIO

import orjson

from async_etl.errors import ConfigError

STDOUT: Final = Path("-")
"""What ``json_out_path("-")`` returns: write the JSON to stdout (compare with ``is``)."""


def json_out_path(path: str | None, flag: str = "--json-out") -> Path | None:
    """The ``--json-out`` path, made ready (parent created, writable); ``ConfigError`` if not.

    ``"-"`` gives ``STDOUT``.  Checked up front so that a typo does not surface as a traceback
    after a long run.  ``flag``: the option the user gave the path with, for the message.
    """
    if path is None:
        return None
    if path == "-":
        return STDOUT
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_dir():
            raise ConfigError(f"{flag} {path}: is a directory")
        existed = out.exists()
        with out.open("ab"):
            pass
        if not existed:  # leave no empty file behind: its presence means "the run wrote it"
            out.unlink()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot write there ({exc.strerror})") from None
    return out


def text_stream(out: Path | None) -> TextIO:
    """Where the human-readable summary goes: stderr when the JSON takes stdout, else stdout."""
    return sys.stderr if out is STDOUT else sys.stdout


def write_json(out: Path | None, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``out`` (from ``json_out_path``); nothing if None."""
    if out is None:
        return
    body = orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
    if out is STDOUT:
        sys.stdout.flush()
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    else:
        out.write_bytes(body)
