"""Gathering raw job settings from the job file, ``--set`` and the environment.

Pure helpers behind ``async_etl.jobs.spec``: the key schema, type checks and text coercion.
Each raises ``ValueError`` with the bare reason; the caller adds the file and key.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from async_etl.core import tomltext
from async_etl.core.auto_workers import parse_auto
from async_etl.core.coerce import did_you_mean, parse_bool, parse_float, parse_int
from async_etl.core.specs import is_identifier, is_table_name
from async_etl.core.urls import SCHEMES, mask_url, scheme_of, url_problem
from async_etl.errors import Fail

Gathered = dict[tuple[str, str], tuple[Any, str]]
"""(section, key) -> (raw value, where it came from, for messages)."""

# kind of each key; "" is the top level.  Defaults live on the dataclasses.
SCHEMA: dict[str, dict[str, str]] = {
    "": {"name": "str", "on_bad_row": "str", "mode": "str"},
    "source": {"url": "url", "query": "str", "table": "table", "key": "columns",
               "incremental": "column", "lookback": "int"},
    "target": {"url": "url", "table": "table", "schema_evolution": "str"},
    "scd": {"type": "int", "business_key": "columns", "tracked": "columns",
            "overwrite": "columns", "deletes": "str", "valid_from": "column",
            "valid_to": "column", "is_current": "column"},
    "parallel": {"enabled": "bool", "max_workers": "workers", "chunk_size": "int",
                 "min_rows_for_parallel": "int"},
    "state": {"url": "url", "forget_timeout": "number"},
    "retry": {"max_attempts": "int", "strategy": "str", "base_delay": "number",
              "max_delay": "number"},
}  # fmt: skip


def env_name(section: str, key: str) -> str:
    """The environment variable that sets ``section.key`` (``section=''`` for top level)."""
    return "_".join(p.upper() for p in ("ASYNC_ETL", section, key) if p)


def _toml_string(text: str) -> str | None:
    """``text`` read as one TOML string (``"expire"``, ``'a b'``); None when it is not one."""
    if text[:1] not in ('"', "'"):
        return None
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return None
    return value if isinstance(value, str) else None


def coerce_text(text: str, kind: str) -> Any:
    """Turn an environment / ``--set`` string into a value of ``kind`` (ValueError if bad).

    As in the job file, a value written as TOML is read as TOML (a quoted string, an array of
    column names); anything else is taken as the bare string.
    """
    stripped = text.strip()
    quoted = _toml_string(stripped)
    if quoted is not None and kind not in ("bool", "int", "number", "workers"):
        return [quoted] if kind == "columns" else quoted
    if kind == "bool":
        return parse_bool(stripped)
    if kind == "workers" and stripped.lower().startswith("auto"):
        parse_auto(stripped)
        return stripped
    if kind in ("int", "workers"):
        return parse_int(stripped)
    if kind == "number":
        return parse_float(stripped)
    if kind == "columns":
        if stripped.startswith("["):
            try:
                value = tomllib.loads(f"v = {stripped}")["v"]
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"expected a list of column names ({exc})") from None
            return value
        return [p.strip() for p in stripped.split(",") if p.strip()]
    return text


def check_kind(value: Any, kind: str) -> Any:
    """Check a job-file value against ``kind``; ValueError with the reason if it does not fit."""
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {type(value).__name__}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {type(value).__name__}")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value}")
        return float(value)
    if kind == "workers":
        if isinstance(value, str):
            parse_auto(value)
            return value
        return check_kind(value, "int")
    if kind == "columns":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("expected a column name or a list of column names")
        if not value:
            raise ValueError("expected at least one column name")
        bad = [v for v in value if not is_identifier(v)]
        if bad:
            raise ValueError(f"bad identifier {bad[0]!r} (want [A-Za-z_][A-Za-z0-9_]*)")
        if len(set(value)) != len(value):
            raise ValueError("a column is listed twice")
        return tuple(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    if kind == "column" and not is_identifier(value):
        raise ValueError(f"bad identifier {value!r} (want [A-Za-z_][A-Za-z0-9_]*)")
    if kind == "table" and not is_table_name(value):
        raise ValueError(f"bad identifier {value!r} (want name or schema.name)")
    if kind == "url" and scheme_of(value) not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(f"unknown URL scheme in {mask_url(value)} (use one of {known})")
    if kind == "url" and (problem := url_problem(value)) is not None:
        raise ValueError(f"{mask_url(value)}: {problem}")
    return value


def parse_toml(text: str, fail: Fail) -> dict[str, Any]:
    try:
        return tomltext.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail("malformed TOML", str(exc)) from exc


def file_values(doc: Mapping[str, Any], fail: Fail) -> Gathered:
    out: Gathered = {}
    sections = [s for s in SCHEMA if s]
    for name, value in doc.items():
        if name in SCHEMA[""]:
            out[("", name)] = (value, name)
        elif name in SCHEMA:
            if not isinstance(value, dict):
                raise fail(f"[{name}]", "expected a table (section)")
            for key, item in value.items():
                if key not in SCHEMA[name]:
                    hint = did_you_mean(key, list(SCHEMA[name]))
                    raise fail(f"[{name}] {key}", "unknown key" + hint)
                out[(name, key)] = (item, f"[{name}] {key}")
        else:
            options = sections + list(SCHEMA[""])
            raise fail(name, "unknown section or key" + did_you_mean(name, options))
    return out


def set_values(overrides: Sequence[str], fail: Fail) -> Gathered:
    out: Gathered = {}
    for item in overrides:
        where = f"--set {mask_url(item)}"
        dotted, eq, text = item.partition("=")
        if not eq:
            raise fail(where, "expected section.key=value")
        section, _, key = dotted.strip().rpartition(".")
        if section not in SCHEMA:
            raise fail(where, "unknown section" + did_you_mean(section, [s for s in SCHEMA if s]))
        if key not in SCHEMA[section]:
            raise fail(where, "unknown key" + did_you_mean(key, list(SCHEMA[section])))
        try:
            out[(section, key)] = (coerce_text(text, SCHEMA[section][key]), where)
        except ValueError as exc:
            raise fail(where, str(exc)) from None
    return out


def env_values(env: Mapping[str, str], fail: Fail) -> Gathered:
    known = {env_name(section, key) for section, keys in SCHEMA.items() for key in keys}
    prefixes = tuple(env_name(section, "") + "_" for section in SCHEMA if section)
    for var in sorted(env):  # a typo in a section's variable would be ignored without a word
        if var.startswith(prefixes) and var not in known:
            raise fail(var, "unknown setting" + did_you_mean(var, sorted(known)))
    out: Gathered = {}
    for section, keys in SCHEMA.items():
        for key, kind in keys.items():
            var = env_name(section, key)
            if var in env:
                where = var if kind == "url" else f"{var}={env[var]}"
                try:
                    out[(section, key)] = (coerce_text(env[var], kind), where)
                except ValueError as exc:
                    raise fail(where, str(exc)) from None
    return out
