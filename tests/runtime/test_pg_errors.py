from __future__ import annotations

import asyncpg

from async_etl.drivers.postgres import translate_pg
from async_etl.errors import ConfigError, ErrorKind


def test_a_bad_connection_parameter_is_a_config_error_not_a_network_retry() -> None:
    """asyncpg's ClientConfigurationError (e.g. sslmode=bogus) is bad input, never retried."""
    exc = asyncpg.exceptions.ClientConfigurationError("`sslmode` parameter must be one of: ...")
    err = translate_pg(exc, "PostgreSQL postgresql://u@h/db")
    assert isinstance(err, ConfigError) and not err.retryable
    assert err.kind is ErrorKind.CONFIGURATION and "sslmode" in err.message


def test_a_refused_connection_stays_a_network_retry() -> None:
    """A refused connection is still transient, of kind network (paced retries)."""
    err = translate_pg(ConnectionRefusedError(111, "Connection refused"), "PostgreSQL x")
    assert err.retryable and err.kind is ErrorKind.NETWORK
