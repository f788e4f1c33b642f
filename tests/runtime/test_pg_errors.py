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


def test_a_missing_certificate_file_is_a_config_error_naming_the_url_files() -> None:
    """sslrootcert naming no file (asyncpg's bare FileNotFoundError) is bad input, not a retry."""
    where = "PostgreSQL postgresql://u:***@h/db?sslrootcert=/nonexist/root.crt&sslmode=verify-ca"
    for exc in (FileNotFoundError(2, "No such file or directory"), NotADirectoryError(20, "x"),
                PermissionError(13, "Permission denied")):  # fmt: skip
        err = translate_pg(exc, where)
        assert isinstance(err, ConfigError) and not err.retryable
        assert "connection problem" not in err.message
        assert err.message.startswith(f"{where}: cannot read a file the URL names (sslrootcert, ")
        assert type(exc).__name__ in err.message


def test_sslmode_require_to_a_server_without_ssl_is_a_config_error() -> None:
    """asyncpg's 'rejected SSL upgrade' (sslmode=require, no ssl on the server): no retry."""
    exc = ConnectionError('PostgreSQL server at "127.0.0.1:5432" rejected SSL upgrade')
    err = translate_pg(exc, "PostgreSQL postgresql://u@h/db?sslmode=require")
    assert isinstance(err, ConfigError) and not err.retryable
    assert "rejected SSL upgrade; the server does not accept SSL" in err.message
