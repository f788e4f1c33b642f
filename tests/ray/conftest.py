"""Ray-test plumbing: one small in-process Ray instance shared by the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

OBJECT_STORE_BYTES = 80 * 1024 * 1024


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """A local Ray (2 CPUs, a small object store), started once; the ``ray`` module."""
    from async_etl.runtime.ray_cluster import connect

    ray = connect("local", num_cpus=2, object_store_memory=OBJECT_STORE_BYTES)
    yield ray
    ray.shutdown()
