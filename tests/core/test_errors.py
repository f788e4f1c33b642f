"""The error hierarchy: a source-side failure keeps its message, kind and retry hint."""

from __future__ import annotations

from async_etl.errors import (
    ConfigError,
    DataError,
    ErrorKind,
    ExtractError,
    LoadError,
    StopRequested,
    TransientExtractError,
    TransientLoadError,
    extract_error,
    network,
)


def test_a_network_failure_becomes_a_transient_extract_error() -> None:
    """Lost connection: TransientExtractError, kind NETWORK, same message and retry_after."""
    err = extract_error(network("source x: connection problem", retry_after=2.5))
    assert type(err) is TransientExtractError
    assert err.retryable and err.kind is ErrorKind.NETWORK
    assert err.message == "source x: connection problem" and err.retry_after == 2.5


def test_a_transient_database_failure_stays_retryable() -> None:
    """A deadlock or a restarting server (DB_TRANSIENT) is retried on the source side too."""
    err = extract_error(TransientLoadError("source x: deadlock detected"))
    assert isinstance(err, TransientExtractError) and err.retryable
    assert err.kind is ErrorKind.DB_TRANSIENT


def test_a_permanent_failure_becomes_an_extract_error_of_the_same_kind() -> None:
    """A missing table, or a value the source query cannot compute, fails for good."""
    missing = extract_error(LoadError("source x: relation does not exist"))
    assert type(missing) is ExtractError and not missing.retryable
    assert missing.kind is ErrorKind.DB_PERMANENT
    data = extract_error(DataError("source x: division by zero"))
    assert type(data) is ExtractError and data.kind is ErrorKind.DATA
    assert not isinstance(data, LoadError)


def test_bad_input_and_stops_are_not_extract_errors() -> None:
    """A ConfigError, a stop request or an ExtractError comes back as it is."""
    for err in (
        ConfigError("source x: sslmode"),
        StopRequested("stop"),
        ExtractError("source x: gone"),
    ):
        assert extract_error(err) is err
