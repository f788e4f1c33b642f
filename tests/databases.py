"""Fresh PostgreSQL databases for tests (kept for imports; lives in ``async_etl.testing``)."""

from __future__ import annotations

from async_etl.testing.databases import fresh_database, with_database

__all__ = ["fresh_database", "with_database"]
