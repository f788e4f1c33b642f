"""Databases for ``pg_dsn``, reset and handed to the next test instead of created anew each time.

CREATE DATABASE and DROP DATABASE cost 0.3-0.6 s together on a busy machine (the template's
pages are WAL-logged and fsynced); about 700 tests take ``pg_dsn``.  Emptying a used database
costs a few tens of milliseconds, so a test's database is reset after it and reused:

1. every other session on it is terminated (what ``DROP DATABASE ... WITH (FORCE)`` would do),
   and the reset waits until they are gone;
2. every schema the test made is dropped with what it holds, ``public`` recreated as
   PostgreSQL 15 makes it (owned by ``pg_database_owner``, usage granted to PUBLIC), and the
   database's own settings (``ALTER DATABASE ... SET``) reset;
3. the catalogue is read back (:data:`SIGNATURE`: user objects of every kind, the database's
   owner, grants and settings, objects roles hold in it, sessions, prepared transactions) and
   compared with that of a new database after the same reset.

Only a database whose signature equals the new one's is reused; any other (an event trigger,
an extension, a grant to a role, a session that would not end) is dropped, as before.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg

from async_etl.testing.databases import with_database

# Every kind of object a test could leave in a database that a new database lacks.  Objects of
# a new database have oids below 16384 (FirstNormalObjectId); pg_temp schemas are reused ones.
_NEW_OIDS = ("pg_type", "pg_proc", "pg_cast", "pg_language", "pg_collation", "pg_ts_config",
             "pg_ts_dict", "pg_operator", "pg_opfamily", "pg_conversion", "pg_am", "pg_trigger",
             "pg_rewrite")  # fmt: skip
_ANY = ("pg_event_trigger", "pg_publication", "pg_default_acl", "pg_foreign_data_wrapper",
        "pg_foreign_server", "pg_user_mapping", "pg_largeobject_metadata", "pg_transform",
        "pg_policy", "pg_statistic_ext", "pg_seclabel")  # fmt: skip
_OF_THIS_DATABASE = (("pg_db_role_setting", "setdatabase"), ("pg_shdepend", "dbid"),
                     ("pg_subscription", "subdbid"))  # fmt: skip
SIGNATURE = "SELECT concat_ws(' | ', " + ",\n".join([
    "(SELECT string_agg(nspname || ':' || nspowner::regrole::text || ':' "
    "|| coalesce(nspacl::text, ''), ',' ORDER BY nspname) "
    "FROM pg_namespace WHERE nspname !~ '^pg_(toast_)?temp_')",
    "(SELECT count(*) FROM pg_class WHERE oid >= 16384 AND relnamespace <> ALL("
    "SELECT oid FROM pg_namespace WHERE nspname ~ '^pg_(toast_)?temp_'))",
    "(SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension)",
    "(SELECT count(*) FROM pg_description WHERE objoid >= 16384)",
    "(SELECT count(*) FROM pg_init_privs WHERE objoid >= 16384)",
    "(SELECT d.datdba::regrole::text || ':' || coalesce(d.datacl::text, '') || ':' "
    "|| d.datconnlimit || ':' || d.datallowconn || ':' || d.datistemplate "
    "FROM pg_database d WHERE d.datname = current_database())",
    "(SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid())",
    "(SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database())",
    "(SELECT count(*) FROM pg_replication_slots WHERE database = current_database())",
    *(f"(SELECT count(*) FROM {t} WHERE oid >= 16384)" for t in _NEW_OIDS),
    *(f"(SELECT count(*) FROM {t})" for t in _ANY),
    *(f"(SELECT count(*) FROM {t} s JOIN pg_database d ON d.oid = s.{c} "
      "WHERE d.datname = current_database())" for t, c in _OF_THIS_DATABASE),
]) + ")"  # fmt: skip

_TERMINATE = (
    "SELECT bool_and(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
    "WHERE datname = $1 AND pid <> pg_backend_pid()"
)

_EMPTY = """
DO $$ DECLARE s name; BEGIN
  FOR s IN SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog',
      'information_schema') AND nspname !~ '^pg_(toast|temp_|toast_temp_)' LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
  EXECUTE format('ALTER DATABASE %I RESET ALL', current_database());
END $$;
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
GRANT USAGE ON SCHEMA public TO PUBLIC;
COMMENT ON SCHEMA public IS 'standard public schema';
"""


@dataclass
class DatabasePool:
    """Databases on one server, each either in a test's hands or empty and free."""

    server_dsn: str
    free: list[str] = field(default_factory=list)
    made: set[str] = field(default_factory=set)
    clean: str | None = None  # the signature of a new database after a reset

    async def take(self) -> str:
        """A database no test holds, empty as a new one: a reset one, else a new one."""
        if self.free:
            return with_database(self.server_dsn, self.free.pop())
        name = f"aetl_{uuid.uuid4().hex[:12]}"
        await self._as_admin(f'CREATE DATABASE "{name}"')
        self.made.add(name)
        if self.clean is None:
            self.clean = await self._reset(name)
        return with_database(self.server_dsn, name)

    async def give_back(self, dsn: str) -> None:
        """Reset the database of ``dsn`` for the next test, or drop it when it cannot be."""
        name = dsn.partition("?")[0].rsplit("/", 1)[1]
        try:
            signature = await self._reset(name)
        except (OSError, asyncpg.PostgresError):
            signature = None
        if signature is not None and signature == self.clean:
            self.free.append(name)
        else:
            await self._drop(name)

    async def close(self) -> None:
        """Drop every database the pool made."""
        for name in sorted(self.made):
            await self._drop(name)

    async def _reset(self, name: str) -> str:
        """End the other sessions on ``name``, empty it; its signature after."""
        await self._as_admin(_TERMINATE, name)
        conn = await asyncpg.connect(with_database(self.server_dsn, name))
        try:
            await conn.execute(_EMPTY)
            return str(await conn.fetchval(SIGNATURE))
        finally:
            await conn.close()

    async def _drop(self, name: str) -> None:
        await self._as_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made.discard(name)

    async def _as_admin(self, sql: str, *args: object) -> None:
        """Run one statement on the server's maintenance database, on a connection of its own."""
        admin = await asyncpg.connect(self.server_dsn)
        try:
            if args:
                await admin.fetchval(sql, *args)
            else:
                await admin.execute(sql)  # simple protocol: CREATE / DROP DATABASE
        finally:
            await admin.close()
