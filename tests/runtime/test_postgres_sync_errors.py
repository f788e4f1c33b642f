from __future__ import annotations

import psycopg
import pytest

from async_etl.drivers.postgres_blocking import translate_psycopg
from async_etl.errors import LoadError, TransientLoadError


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ('connection failed: ... failed: FATAL:  database "nosuchdb" does not exist', False),
        (
            'connection failed: ... failed: FATAL:  password authentication failed for user "u"',
            False,
        ),
        ("connection failed: ... failed: FATAL:  sorry, too many connections already", True),
        ("connection failed: ... failed: FATAL:  the database system is starting up", True),
        ("connection failed: ... failed: Connection refused", True),
    ],
)
def test_connect_time_refusals_are_told_apart(message: str, transient: bool) -> None:
    """A server's FATAL at connect is permanent (bad database, auth) unless it means 'later'."""
    err = translate_psycopg(psycopg.OperationalError(message), "PostgreSQL x")
    assert isinstance(err, TransientLoadError) is transient
    assert isinstance(err, LoadError)
    assert "\n" not in err.message
