"""Shared fixtures come from the package's pytest plugin (``async_etl.testing.pytest_plugin``).

It is loaded by ``-p`` in ``pyproject.toml`` (and by its ``pytest11`` entry point when the
package is installed): ``pg_server_dsn``, ``pg_dsn`` and ``crate_standin``.  Here only what the
project's own suite needs on top.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from async_etl.log import install_library_default


@pytest.fixture(autouse=True)
def _library_logging() -> Iterator[None]:
    """A test that ran the CLI in-process configured logging: give the next test the default."""
    yield
    structlog.reset_defaults()
    install_library_default()
