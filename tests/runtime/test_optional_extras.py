"""The main job needs only the base install: no optional extra is imported on its path."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# import names of the optional extras' packages (pyproject's [project.optional-dependencies])
IMPORT_NAMES = {
    "psycopg[binary]": "psycopg",
    "prometheus-client": "prometheus_client",
    "cratedb-sqlparse": "cratedb_sqlparse",
}
MAIN_JOB_MODULES = (
    "async_etl",
    "async_etl.cli",
    "async_etl.cli.bench",
    "async_etl.runtime.engine",
    "async_etl.sinks",
    "async_etl.sinks.postgres",
    "async_etl.sinks.cratedb",
    "async_etl.drivers.postgres",
    "async_etl.drivers.postgres_embedded",
    "async_etl.drivers.cratedb",
    "async_etl.runs",
)


def _optional_imports() -> list[str]:
    """The import names of every package only an extra (not the base install) brings."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_name(d) for d in project["dependencies"]}
    names = set()
    for group, deps in project["optional-dependencies"].items():
        if group == "dev":
            continue
        for dep in deps:
            name = _name(dep)
            if name not in base:
                names.add(IMPORT_NAMES.get(name, name.replace("-", "_")))
    return sorted(names)


def _name(requirement: str) -> str:
    for stop in "<>=!; ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip()


def test_the_main_jobs_modules_import_without_any_extra() -> None:
    """With every extra's package unimportable, the bench / writer / job modules still import."""
    blocked = _optional_imports()
    assert "psycopg" in blocked and "urllib3" in blocked and "ray" in blocked
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        f"import importlib\nfor m in {MAIN_JOB_MODULES!r}: importlib.import_module(m)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
