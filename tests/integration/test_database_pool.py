"""The suite's pool of ``pg_dsn`` databases hands out only databases as empty as new ones."""

from __future__ import annotations

import uuid

import asyncpg

from tests.database_pool import DatabasePool


async def _user_objects(dsn: str) -> tuple[int, int, list[str]]:
    """(user tables, database settings, schemas) of the database of ``dsn``."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetchval("SELECT count(*) FROM pg_class WHERE oid >= 16384")
        settings = await conn.fetchval(
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d "
            "ON d.oid = s.setdatabase WHERE d.datname = current_database()"
        )
        schemas = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_' ORDER BY 1"
        )
        return int(tables), int(settings), [r[0] for r in schemas]
    finally:
        await conn.close()


async def test_a_used_database_comes_back_empty_with_its_sessions_ended(
    pg_server_dsn: str,
) -> None:
    """Tables, schemas, a setting and an open session are gone when the database is reused."""
    pool = DatabasePool(pg_server_dsn)
    try:
        dsn = await pool.take()
        new = await _user_objects(dsn)
        conn = await asyncpg.connect(dsn)
        await conn.execute("CREATE SCHEMA src; CREATE TABLE src.t (a int); CREATE TABLE x (a int)")
        await conn.execute(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET extra_float_digits = 0', "
            "current_database()); END $$"
        )
        await pool.give_back(dsn)
        assert conn.is_closed()
        assert await pool.take() == dsn
        assert await _user_objects(dsn) == new == (0, 0, ["information_schema", "public"])
    finally:
        await pool.close()


async def test_a_database_the_reset_cannot_empty_is_dropped(pg_server_dsn: str) -> None:
    """A connection limit or a role's grant outlives the reset: the database is dropped."""
    role = f"aetl_pool_{uuid.uuid4().hex[:8]}"
    pool = DatabasePool(pg_server_dsn)
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'CREATE ROLE "{role}"')
        for sql in (
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I CONNECTION LIMIT 50', "
            "current_database()); END $$",
            "DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO " + role + "', "
            "current_database()); END $$",
        ):
            dsn = await pool.take()
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()
            await pool.give_back(dsn)
            assert pool.free == []
            name = dsn.rsplit("/", 1)[1]
            assert not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await pool.close()
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
