"""The import floors of ``async_etl``: data flows one way, the core does no I/O.

The floors, lowest first (README, "Layout"); a module may import from its own floor and the
floors below it, never from one above:

0. ``core``, ``errors``, ``typing`` — pure: no I/O library, no file read, no environment;
1. ``drivers`` (only ``core`` / ``errors`` / ``typing``), ``config``, ``log``;
2. ``sinks``, ``sources``;
3. ``runtime``;
4. ``jobs``;
5. ``orchestrator``;
6. ``runs``;
7. ``cli``, ``testing``, the package itself (``__init__``, ``__main__``).

Only ``drivers`` (and the test helpers in ``testing``) import a database driver library
(asyncpg, psycopg, oracledb, aiohttp, urllib3).  Nothing outside ``testing`` imports
``testing``.  Every import counts, wherever it is written (module level, inside a function,
under ``TYPE_CHECKING``).  The checker reads source text with ``ast`` and imports nothing, so
it is tested on planted violations too.  No two modules import each other, not even through
a function-local import (only imports under ``TYPE_CHECKING`` may close a circle).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = "async_etl"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

FLOORS: tuple[tuple[str, ...], ...] = (
    ("core", "errors", "typing", "_launch"),
    ("drivers", "config", "log"),
    ("sinks", "sources"),
    ("runtime",),
    ("jobs",),
    ("orchestrator",),
    ("runs",),
    ("cli", "testing", "__init__", "__main__"),
)
FLOOR_OF = {area: n for n, areas in enumerate(FLOORS) for area in areas}

IO_LIBRARIES = frozenset(
    {
        "aiohttp",
        "anyio",
        "asyncio",
        "asyncpg",
        "concurrent",
        "multiprocessing",
        "oracledb",
        "os",
        "psutil",
        "psycopg",
        "ray",
        "selectors",
        "socket",
        "subprocess",
        "threading",
        "urllib3",
    }
)
"""What ``core`` may not import: I/O, concurrency, processes and the environment."""

FILE_CALLS = frozenset({"open", "read_text", "read_bytes", "write_text", "write_bytes"})
"""Calls that read or write a file: none in ``core`` (the caller reads, the core parses)."""

DRIVER_DEPENDENCIES = frozenset({"core", "errors", "typing", "drivers"})

DRIVER_LIBRARIES = frozenset({"aiohttp", "asyncpg", "oracledb", "psycopg", "urllib3"})
"""What only ``drivers`` (and ``testing``, the stand-in and test databases) may import."""


def package_sources(root: Path = ROOT) -> dict[str, str]:
    """``{dotted module name: source text}`` of every module of the package under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path.read_text(encoding="utf-8")
    return out


def area_of(module: str) -> str:
    """The floor-plan name of a package module: its first sub-package, or ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(module: str, tree: ast.AST, modules: Mapping[str, str]) -> Iterator[str]:
    """Every module name ``module`` imports (relative imports resolved)."""
    here = module.split(".") if _is_package(module, modules) else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                sub = f"{base}.{alias.name}"
                yield sub if sub in modules else base


@functools.cache
def _parse(text: str) -> ast.Module:
    """The syntax tree of ``text`` (cached: planted copies reparse only the planted module)."""
    return ast.parse(text)


def _is_package(module: str, modules: Mapping[str, str]) -> bool:
    return any(other.startswith(module + ".") for other in modules)


def _file_calls(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = (
                fn.id
                if isinstance(fn, ast.Name)
                else fn.attr
                if isinstance(fn, ast.Attribute)
                else ""
            )
            if name in FILE_CALLS:
                yield node.lineno, name


def floor_violations(modules: Mapping[str, str]) -> list[str]:
    """One line per import (or file call) that breaks the floors, for ``{module: source}``."""
    found: list[str] = []
    for module, text in sorted(modules.items()):
        area = area_of(module)
        if area not in FLOOR_OF:
            found.append(f"{module}: {area!r} is on no floor (add it to FLOORS and the README)")
            continue
        tree = _parse(text)
        for target in sorted(set(_imports(module, tree, modules))):
            top = target.split(".")[0]
            if top != PACKAGE:
                if area == "core" and top in IO_LIBRARIES:
                    found.append(f"{module}: core imports the I/O library {target}")
                elif top in DRIVER_LIBRARIES and area not in ("drivers", "testing"):
                    found.append(f"{module}: imports {target}; only drivers/ talk to a driver")
                continue
            other = area_of(target)
            if other == area:
                continue
            if other not in FLOOR_OF:
                found.append(f"{module}: imports {target}, which is on no floor")
            elif FLOOR_OF[other] > FLOOR_OF[area]:
                found.append(f"{module}: imports {target} from a floor above ({other} over {area})")
            elif area == "drivers" and other not in DRIVER_DEPENDENCIES:
                found.append(f"{module}: drivers import only core, errors and typing, not {target}")
            elif other == "testing":
                found.append(f"{module}: imports {target}; only the tests may use testing/")
        if area == "core":
            found += [f"{module}:{line}: core calls {name}()" for line, name in _file_calls(tree)]
    return found


def _runtime_imports(module: str, tree: ast.Module, modules: Mapping[str, str]) -> set[str]:
    """The package modules ``module`` imports when run: anywhere but under TYPE_CHECKING."""
    found: set[str] = set()
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            for name in _imports(module, ast.Module([node], []), modules):
                while name not in modules and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in modules and name != module:
                    found.add(name)
        todo.extend(ast.iter_child_nodes(node))
    return found


def import_circles(modules: Mapping[str, str]) -> list[list[str]]:
    """Each circle of imports, as the modules on it (first one repeated last).

    A function-local import counts: deferring an import hides a circle, it does not end it.
    """
    graph = {m: _runtime_imports(m, _parse(text), modules) for m, text in modules.items()}
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(module: str) -> None:
        state[module] = 1
        path.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                circles.append([*path[path.index(other) :], other])
            elif other not in state:
                walk(other)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module)
    return circles


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    """The package's modules, read once."""
    return package_sources()


def test_the_tree_keeps_its_floors(sources: dict[str, str]) -> None:
    """No module imports upward, the core imports no I/O library and reads no file."""
    assert len(sources) > 100  # the whole package was read, not an empty directory
    assert floor_violations(sources) == []


def test_every_area_of_the_tree_is_on_a_floor(sources: dict[str, str]) -> None:
    """Each sub-package and top-level module has a floor, and each floor name exists."""
    areas = {area_of(m) for m in sources}
    assert areas == set(FLOOR_OF)


PLANTS = [
    ("async_etl.core.batching", "import asyncio\n", "core imports the I/O library asyncio"),
    ("async_etl.core.batching", "from urllib3 import PoolManager\n", "I/O library urllib3"),
    ("async_etl.core.schema", "import os\n", "core imports the I/O library os"),
    (
        "async_etl.core.retry",
        "def f():\n    from async_etl.runtime import engine\n",
        "imports async_etl.runtime.engine from a floor above (runtime over core)",
    ),
    (
        "async_etl.core.schema",
        "def f(p):\n    return open(p).read()\n",
        "core calls open()",
    ),
    (
        "async_etl.core.schema",
        "def f(p):\n    return p.read_text()\n",
        "core calls read_text()",
    ),
    (
        "async_etl.drivers.postgres",
        "from async_etl.config import BenchSettings\n",
        "drivers import only core, errors and typing, not async_etl.config",
    ),
    (
        "async_etl.drivers.cratedb",
        "from async_etl.sinks import cratedb\n",
        "imports async_etl.sinks.cratedb from a floor above (sinks over drivers)",
    ),
    (
        "async_etl.sinks.postgres",
        "from async_etl.jobs.api import JobResult\n",
        "imports async_etl.jobs.api from a floor above (jobs over sinks)",
    ),
    (
        "async_etl.runtime.metrics",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from async_etl.jobs import api\n",
        "imports async_etl.jobs.api from a floor above (jobs over runtime)",
    ),
    (
        "async_etl.jobs.state",
        "from ..orchestrator.state import lock_key\n",
        "imports async_etl.orchestrator.state from a floor above (orchestrator over jobs)",
    ),
    (
        "async_etl.jobs.rejects",
        "def f():\n    import asyncpg\n",
        "imports asyncpg; only drivers/ talk to a driver",
    ),
    (
        "async_etl.sinks.null",
        "from psycopg import Connection\n",
        "imports psycopg; only drivers/ talk to a driver",
    ),
    (
        "async_etl.cli.bench",
        "from async_etl.testing.crate import CrateStandIn\n",
        "only the tests may use testing/",
    ),
]


@pytest.mark.parametrize(("module", "line", "expected"), PLANTS)
def test_a_planted_violation_is_caught(
    sources: dict[str, str], module: str, line: str, expected: str
) -> None:
    """Adding one bad import (or file read) to a real module is reported, naming it."""
    planted = {**sources, module: sources[module] + "\n" + line}
    found = floor_violations(planted)
    assert len(found) == 1, found
    assert found[0].startswith(module)
    assert expected in found[0]


def test_a_new_sub_package_must_be_given_a_floor(sources: dict[str, str]) -> None:
    """A module in a sub-package the floor plan does not name is reported."""
    found = floor_violations({**sources, "async_etl.plugins.x": "import asyncio\n"})
    assert found == [
        "async_etl.plugins.x: 'plugins' is on no floor (add it to FLOORS and the README)"
    ]


def test_the_readme_layout_names_every_part_of_the_tree() -> None:
    """README's layout block lists each sub-package and top-level module the package has."""
    readme = (ROOT.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("```\nasync_etl/\n", 1)[1].split("```", 1)[0]
    parts = {p.name + "/" for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    parts |= {p.name for p in ROOT.glob("*.py") if p.name != "__main__.py"}
    missing = sorted(part for part in parts if part not in block)
    assert parts and missing == []


def test_no_modules_import_each_other(sources: dict[str, str]) -> None:
    """No import circle (jobs/endpoints and the target drivers had one, through lazy imports)."""
    assert import_circles(sources) == []


def test_a_planted_import_circle_is_caught(sources: dict[str, str]) -> None:
    """An import back into a module that imports it is a circle, unless under TYPE_CHECKING."""
    planted = {
        **sources,
        "async_etl.core.urls": sources["async_etl.core.urls"] + "\nfrom async_etl import errors\n",
    }
    circles = import_circles(planted)
    assert len(circles) == 1
    assert set(circles[0]) == {"async_etl.core.urls", "async_etl.errors"}
    hidden = (
        "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from async_etl import errors\n"
    )
    assert (
        import_circles({**sources, "async_etl.core.urls": sources["async_etl.core.urls"] + hidden})
        == []
    )


TARGET_DRIVERS = frozenset(
    {"async_etl.jobs.pg_driver", "async_etl.jobs.crate_driver", "async_etl.jobs.oracle_driver"}
)
"""The concrete job targets; ``jobs.endpoints.make_target`` picks one, the rest use the port."""

PORT_USERS = ("async_etl.jobs.planning",)
"""Modules that decide through the ``jobs.endpoints.Target`` port, never a concrete driver."""


def port_violations(modules: Mapping[str, str]) -> list[str]:
    """One line per import of a concrete target driver by a module of ``PORT_USERS``."""
    return [
        f"{module}: imports {target}; use the Target port (jobs.endpoints)"
        for module in PORT_USERS
        for target in sorted(set(_imports(module, _parse(modules[module]), modules)))
        if target in TARGET_DRIVERS
    ]


def test_planning_uses_the_target_port_only(sources: dict[str, str]) -> None:
    """Planning imports no concrete target driver (it asks the Target port), planted or not."""
    assert port_violations(sources) == []
    planted = {
        **sources,
        "async_etl.jobs.planning": sources["async_etl.jobs.planning"]
        + "\ndef f():\n    from async_etl.jobs.crate_driver import CrateTarget\n",
    }
    assert port_violations(planted) == [
        "async_etl.jobs.planning: imports async_etl.jobs.crate_driver; use the Target port "
        "(jobs.endpoints)"
    ]
