"""Pure error classification for retry decisions: SQLSTATE, Oracle codes, CrateDB HTTP.

No driver is imported here.  Adapters pull the code out of their driver's exception and ask
this module which ``ErrorKind`` it is; the retry policy acts on the kind:

* ``NETWORK`` / ``DB_TRANSIENT`` — worth another attempt after a backoff;
* ``DATA`` — the row is bad (too long, NOT NULL, duplicate key): reject it, do not retry;
* ``DB_PERMANENT`` — the statement or the setup is wrong (unknown table, auth): fail.

The tables follow ``reference/transient-errors.md`` and ``reference/cratedb-http.md``.
Deliberate narrowings (each documented where it applies): of the ``57P0x`` class only the
server-restart codes are transient (``57P04`` database dropped is not), and of ``58xxx`` only
``58000``/``58030`` (``58P01`` undefined file and ``58P02`` duplicate file do not heal).
"""

from __future__ import annotations

from async_etl.errors import AsyncEtlError, DataError, ErrorKind, LoadError, TransientLoadError

__all__ = [
    "CRATE_DUPLICATE_KEY",
    "classify_crate",
    "classify_oracle",
    "classify_sqlstate",
    "fatal_sqlstate",
    "is_transient",
    "load_error",
    "pg_kind",
    "tls_refusal",
]

# -- PostgreSQL -------------------------------------------------------------------------------

_PG_TRANSIENT = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "53300",  # too_many_connections
        "55P03",  # lock_not_available
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "57P05",  # idle_session_timeout: the session is gone, a new one works
        "58000",  # system_error
        "58030",  # io_error
    }
)


def classify_sqlstate(code: str) -> ErrorKind:
    """Classify a PostgreSQL SQLSTATE (``asyncpg.PostgresError.sqlstate``, psycopg ``sqlstate``).

    Class ``08`` (connection exception) and the codes in ``_PG_TRANSIENT`` are transient,
    classes ``22`` (data exception) and ``23`` (integrity violation) are data errors, everything
    else (``28xxx`` auth, ``3D000`` no database, ``42xxx`` syntax/access, unknown or malformed
    codes) is permanent.  Never raises.
    """
    state = code.strip().upper()
    if state.startswith("08") or state in _PG_TRANSIENT:
        return ErrorKind.DB_TRANSIENT
    if state[:2] in ("22", "23"):
        return ErrorKind.DATA
    return ErrorKind.DB_PERMANENT


_FATAL_TEXTS = (
    ("too many connections", "53300"),  # "sorry, too many connections already"
    ("starting up", "57P03"),  # "the database system is starting up"
    ("in recovery", "57P03"),  # "the database system is in recovery mode"
    ("shutting down", "57P01"),  # "the database system is shutting down"
    ("terminating connection", "57P01"),  # pg_terminate_backend, or 57P02 after a crash
)


def fatal_sqlstate(text: str) -> str | None:
    """The SQLSTATE a server's ``FATAL:`` refusal in ``text`` stands for; None without one.

    libpq (psycopg) reports a refusal at connect time as text, without a SQLSTATE; asyncpg
    gives the code.  Both PostgreSQL twins pass the code through ``classify_sqlstate``, so a
    message meaning "try later" maps to its transient code and any other ``FATAL`` (bad
    password, no such database, no pg_hba entry) to ``28000``, a permanent one.
    """
    if "FATAL:" not in text:
        return None
    lowered = text.lower()
    for words, code in _FATAL_TEXTS:
        if words in lowered:
            return code
    return "28000"


def pg_kind(code: str, *, fatal: bool) -> ErrorKind:
    """The kind of a PostgreSQL error with SQLSTATE ``code``; ``fatal``: severity FATAL.

    A FATAL error ends the session, so a transient one (restart, shutdown, terminated, too
    many connections) is a lost connection: ``NETWORK``, paced on the retry policy's slower
    connect clock.  Both PostgreSQL twins decide with this (asyncpg gives the severity,
    libpq's text says ``FATAL:``).
    """
    kind = classify_sqlstate(code)
    if fatal and kind is ErrorKind.DB_TRANSIENT:
        return ErrorKind.NETWORK
    return kind


# -- Oracle -----------------------------------------------------------------------------------

_ORA_TRANSIENT = frozenset(
    {
        3113,  # end-of-file on communication channel
        3114,  # not connected to ORACLE
        3135,  # connection lost contact
        12514,  # listener does not know of service
        12516,  # listener could not find available handler
        12519,  # no appropriate service handler found
        12520,  # listener could not find available handler for requested type of server
        12541,  # no listener
        60,  # deadlock detected
        8177,  # can't serialize access
        18,  # maximum number of sessions exceeded
        20,  # maximum number of processes exceeded
        2391,  # SESSIONS_PER_USER limit exceeded
    }
)
_ORA_DATA = frozenset(
    {
        1,  # unique constraint violated
        1400,  # cannot insert NULL
        1438,  # value larger than specified precision
        12899,  # value too large for column
        1722,  # invalid number
        1840,  # input value not long enough for date format
        1861,  # literal does not match format string
    }
)
_DPY_TRANSIENT = frozenset(
    {
        4011,  # the database or network closed the connection
        6005,  # cannot connect to database
    }
)


def _split_code(full_code: str) -> tuple[str, int] | None:
    prefix, sep, number = full_code.strip().upper().partition("-")
    if not sep or not number.isdigit():
        return None
    return prefix, int(number)


def classify_oracle(full_code: str, isrecoverable: bool | None = None) -> ErrorKind:
    """Classify a python-oracledb error by ``full_code`` (``"ORA-03113"``, ``"DPY-4011"``).

    Known transient codes (lost connection, listener, deadlock, serialization, session and
    process limits) are transient; known data codes (unique, NOT NULL, too large, bad number or
    date) are data errors; the rest is permanent.  ``isrecoverable=True`` (Transaction Guard /
    Application Continuity) upgrades a permanent code to transient, never a data error;
    ``False`` or ``None`` changes nothing.  Never raises: a malformed code is permanent.
    """
    parsed = _split_code(full_code)
    kind = ErrorKind.DB_PERMANENT
    if parsed is not None:
        prefix, number = parsed
        if prefix == "ORA" and number in _ORA_TRANSIENT:
            kind = ErrorKind.DB_TRANSIENT
        elif prefix == "ORA" and number in _ORA_DATA:
            kind = ErrorKind.DATA
        elif prefix == "DPY" and number in _DPY_TRANSIENT:
            kind = ErrorKind.DB_TRANSIENT
    if isrecoverable and kind is ErrorKind.DB_PERMANENT:
        return ErrorKind.DB_TRANSIENT
    return kind


# -- CrateDB HTTP -----------------------------------------------------------------------------

CRATE_DUPLICATE_KEY = 4091
"""CrateDB's error code for a duplicate primary key (HTTP 409, or per item in a bulk)."""

_CRATE_TRANSIENT_CODES = frozenset({4290, 5002, 5003, *range(5030, 5040)})


def classify_crate(http_status: int | None, code: int | None = None) -> ErrorKind:
    """Classify a CrateDB HTTP outcome from its status and the error ``code`` of its body.

    ``http_status=None`` means no response at all (connection refused, reset, timeout) and is
    ``NETWORK``.  A known code decides first: ``4290``, ``5002``/``5003`` (shards unavailable /
    failed) and ``503x`` are transient, ``4091`` (duplicate key) is a data error, any other
    ``4xxx`` is permanent.  Otherwise the status decides: 429, 503 and any other 5xx (proxies
    answer 502/504 while a node restarts) are transient, 4xx permanent.  A per-item code under
    status 200 that is none of the above (``5000``, ``5001``) is permanent.  Never raises.
    """
    if http_status is None:
        return ErrorKind.NETWORK
    if code is not None:
        if code in _CRATE_TRANSIENT_CODES:
            return ErrorKind.DB_TRANSIENT
        if code == CRATE_DUPLICATE_KEY:
            return ErrorKind.DATA
        if 4000 <= code < 5000 or 40000 <= code < 50000:
            return ErrorKind.DB_PERMANENT
    if http_status == 429 or http_status >= 500:
        return ErrorKind.DB_TRANSIENT
    return ErrorKind.DB_PERMANENT


def is_transient(kind: ErrorKind) -> bool:
    """True when another attempt may succeed (``NETWORK`` or ``DB_TRANSIENT``)."""
    return kind in (ErrorKind.NETWORK, ErrorKind.DB_TRANSIENT)


def load_error(kind: ErrorKind, message: str) -> AsyncEtlError:
    """The load-side error for a classified failure: transient, data, or permanent."""
    if is_transient(kind):
        return TransientLoadError(message)
    if kind is ErrorKind.DATA:
        return DataError(message)
    return LoadError(message)


# -- TLS ----------------------------------------------------------------------------------------

_TLS_CURES = (
    ("WRONG_VERSION_NUMBER", "the server does not answer TLS on this port: for a plain HTTP "
     "server use http://"),
    ("CERTIFICATE_VERIFY_FAILED", "the server's certificate is not trusted here: give its CA, "
     "or check the host name"),
    ("rejected SSL upgrade", "the server does not accept SSL: drop sslmode=require (or set "
     "prefer), or enable ssl on the server"),
    ("server does not support SSL", "the server does not accept SSL: drop sslmode=require (or "
     "set prefer), or enable ssl on the server"),
)  # fmt: skip


def tls_refusal(text: str) -> str | None:
    """What to change when a connection failed for a TLS reason no retry cures, or None.

    ``text``: the driver's message.  TLS spoken to a plain port (``WRONG_VERSION_NUMBER``), an
    untrusted certificate, a server that refuses SSL: each fails the same way every time, so a
    retry (up to 14 s of them) only delays the one line that says so.  A reset, refused or cut
    connection (a restarting server) is None: still a network failure.
    """
    for mark, cure in _TLS_CURES:
        if mark in text:
            return cure
    return None
