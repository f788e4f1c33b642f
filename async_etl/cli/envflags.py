"""Environment overrides for a command's flags: ``<PREFIX><DEST>`` variables become defaults.

A command opts in with ``parser.set_defaults(env_prefix="ASYNC_ETL_ORCHESTRATE_")``; before
the command line is parsed, ``apply_env`` turns each such variable into the default of the
flag whose destination it names (``ASYNC_ETL_ORCHESTRATE_LOCAL_MAX=4`` for ``--local-max``,
``..._UVLOOP=N`` for ``--no-uvloop``), so a flag given on the command line still wins:
flags > environment > defaults, as for ``bench`` and job files.  Values go through the one
coercion table (``core.coerce``) and the flag's own ``type`` and ``choices``; a bad value or an
unknown variable with the prefix is a one-line ``ConfigError`` naming the variable.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from async_etl.core.coerce import PARSERS, coerce, did_you_mean, parse_bool
from async_etl.errors import ConfigError

_SKIP = (argparse._HelpAction, argparse._VersionAction, argparse._AppendAction)


def env_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The variable name of each flag ``parser`` lets the environment set (none: no prefix)."""
    prefix = parser.get_default("env_prefix")
    if not prefix:
        return {}
    return {
        prefix + action.dest.upper(): action
        for action in parser._actions
        if action.option_strings and not isinstance(action, _SKIP)
    }


def _value(action: argparse.Action, raw: str) -> Any:
    if action.nargs == 0:  # store_true / store_false / store_const
        value = parse_bool(raw)  # the destination's own value: ..._UVLOOP=N is --no-uvloop
        if isinstance(action.const, bool):
            return value
        return action.const if value else action.default
    choices = None if action.choices is None else [str(c) for c in action.choices]
    kind: Any = action.type or str
    if isinstance(kind, type) and kind in PARSERS:
        return coerce(raw, kind, choices)
    converted = kind(raw.strip())  # an argparse type function: ValueError / ArgumentTypeError
    if choices is not None and str(converted) not in choices:
        raise ValueError(f"expected {' | '.join(choices)}, got {raw!r}")
    return converted


def apply_env(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Make the environment's values ``parser``'s defaults (see the module doc).

    Raises ``ConfigError`` for a malformed value or an unknown variable with the prefix.
    """
    flags = env_flags(parser)
    if not flags:
        return
    prefix: str = parser.get_default("env_prefix")
    for var in sorted(v for v in env if v.startswith(prefix) and v not in flags):
        raise ConfigError(f"{var}: unknown setting{did_you_mean(var, sorted(flags))}")
    for var, action in flags.items():
        if var not in env:
            continue
        try:
            value = _value(action, env[var])
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"{var}: {exc}") from None
        parser.set_defaults(**{action.dest: value})
        action.required = False  # the environment gave it
