"""One look for every command's ``--help``: reflowed prose, kept lists, no reST, an epilog.

Each command module calls ``add_command`` with its module docstring, its exit statuses and the
environment variables it reads; ``build_parser`` also gives every subparser the same
``HelpFormatter``, so a command added later reads like the others (``tests`` check that every
command's help has no reST markup, lists its choices and ends with exit statuses).

How ``HelpFormatter`` treats a description or epilog: reST literals (````x````) lose their
backquotes; paragraphs are reflowed to the terminal width; a line starting ``*`` or ``-``
begins a list item (reflowed with a hanging indent); an indented line is kept as written
(usage lines, tables of exit statuses and variables).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

_LITERAL = re.compile(r"``(.+?)``", re.S)
_BULLET = re.compile(r"^([*-]) ")


def plain(text: str) -> str:
    """``text`` without reST literal markup: ````--json-out```` becomes ``--json-out``."""
    return _LITERAL.sub(r"\1", text)


def fill(text: str, width: int, indent: str = "") -> str:
    """Reflow ``text`` (see the module doc) to ``width`` columns, each line after ``indent``."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", textwrap.dedent(plain(text)).strip("\n")):
        items: list[list[str]] = []  # [first line, continuations...]; "" first: kept lines
        for line in block.splitlines():
            last = items[-1] if items else None
            in_bullet = last is not None and _BULLET.match(last[0]) is not None
            if line.startswith(" ") and not in_bullet:
                items.append(["", line])
            elif _BULLET.match(line) or last is None or last[0] == "":
                items.append([line])
            else:
                last.append(line)
        lines: list[str] = []
        for item in items:
            if item[0] == "":  # an indented line, kept
                lines.extend(indent + raw for raw in item[1:])
                continue
            bullet = _BULLET.match(item[0])
            hang = " " * (len(bullet.group(0)) if bullet else 0)
            words = " ".join(" ".join(item).split())
            lines.extend(
                textwrap.wrap(
                    words,
                    max(width, 20),
                    initial_indent=indent,
                    subsequent_indent=indent + hang,
                    break_on_hyphens=False,
                )
            )
        out.append("\n".join(lines))
    return "\n\n".join(out)


def terminal_columns() -> int:
    """The terminal's width in columns, as ``shutil.get_terminal_size().columns`` reads it.

    ``COLUMNS`` when it is a positive integer, else stdout's terminal, else 80.  Read here, not
    through ``shutil`` (which argparse imports for it): every ``add_argument`` builds a
    formatter, and a job run would import ``shutil`` and its compression modules (about 1.6 ms)
    for a width it never prints.
    """
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with ``fill`` for descriptions and epilogs, and plain help texts.

    The width is argparse's (the terminal's columns less 2), read by ``terminal_columns``.
    """

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
        width: int | None = None,
    ) -> None:  # fmt: skip
        if width is None:
            width = terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return fill(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return None if action.help is None else plain(action.help)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, as every other bad input is.

    ``async-etl: error: bench: argument --mode: invalid choice: 'x' (choose from ...)``; exit 2.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)  # also while flags are added
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("async-etl").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"async-etl: error: {where}{' '.join(message.split())}\n")


def epilog(exit_codes: Mapping[int, str], env: Sequence[tuple[str, str]] = ()) -> str:
    """The epilog every command ends with: its exit statuses, then the variables it reads."""
    lines = ["exit status:"]
    codes = {**exit_codes, 141: "stdout's reader went away (`| head`): output cut short"}
    lines += [f"  {code:<3} {meaning}" for code, meaning in sorted(codes.items())]
    if env:
        lines += ["", "environment:"]
        width = max(len(name) for name, _ in env)
        lines += [f"  {name:<{width}}  {meaning}" for name, meaning in env]
    return "\n".join(lines)


def add_command(
    sub: Any,
    name: str,
    *,
    help: str,
    doc: str | None,
    exit_codes: Mapping[int, str],
    env: Sequence[tuple[str, str]] = (),
) -> argparse.ArgumentParser:
    """A subparser with the shared formatter, ``doc`` as description and the standard epilog."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=doc,
        epilog=epilog(exit_codes, env),
        formatter_class=HelpFormatter,
    )
    return parser


BAD_INPUT = "bad input: a flag, file, URL or variable (one line on stderr; nothing was done)"
PLAN_NOT_FROM_STDIN = (
    "a plan cannot come from stdin (its job paths are relative to its file); give its path"
)
"""Why ``check -`` and ``orchestrate -`` refuse a plan piped in, after the command's name."""
LOG_FORMATS = ("auto", "console", "json")
