"""``WireFormat``: how a worker encodes a batch (public as ``async_etl.typing.WireFormat``).

A module of its own so that ``async_etl.typing`` and ``core.writer_types`` both import it at run
time without importing each other.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

WireFormat: TypeAlias = Literal["crate_json", "pg_binary", "none"]
"""How a worker encodes a batch: CrateDB ``bulk_args`` JSON body, PostgreSQL binary COPY
payload, or nothing at all (the null sink still gets the rows generated and counted)."""
