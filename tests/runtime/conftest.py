"""Runtime-test plumbing: tests marked ``both_loops`` run on asyncio and on asyncio + uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_loops: run on the stdlib loop and on uvloop")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]] | None:
    factories: dict[str, Callable[[], Any]] = {"asyncio": asyncio.new_event_loop}
    if item.get_closest_marker("both_loops") is None:
        return factories
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories
