"""The exception hierarchy: one base, a stage axis and a retryable-vs-fatal axis.

Stage axis: where it went wrong (configuration, extraction, loading, checkpoints).
Retry axis: ``TransientError`` subclasses are worth another attempt after a backoff;
everything else is fatal for the unit of work that raised it.  Adapters translate driver
exceptions (asyncpg, aiohttp, oracledb, psycopg, urllib3) into these at their boundary and
always chain the original (``raise TransientLoadError(...) from exc``).

Every message is one line that names what is wrong and where, so the CLI can print it as is;
the constructor also masks any URL secret the text still holds (``mask_text``: a backstop for
driver messages, since every URL is masked where it is formatted).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from async_etl.core.urls import mask_text


class ErrorKind(StrEnum):
    """A coarse classification used for retry decisions and reports."""

    NETWORK = "network"
    DB_TRANSIENT = "database-transient"
    DB_PERMANENT = "database-permanent"
    CONFIGURATION = "configuration"
    DATA = "data"


class AsyncEtlError(Exception):
    """Base of every error async_etl raises on purpose."""

    retryable: bool = False
    kind: ErrorKind = ErrorKind.DB_PERMANENT

    def __init__(self, message: str) -> None:
        # keep messages to one line, without secrets: the CLI prints them verbatim
        super().__init__(mask_text(" ".join(str(message).split())))

    @property
    def message(self) -> str:
        """The one-line message."""
        return str(self.args[0]) if self.args else ""


class TransientError(AsyncEtlError):
    """Raised when another attempt may succeed (lost connection, 503, deadlock, ...)."""

    retryable = True
    kind = ErrorKind.DB_TRANSIENT

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(AsyncEtlError):
    """Raised when user input (flags, URLs, schema or job files, environment) is invalid."""

    kind = ErrorKind.CONFIGURATION


class ExtractError(AsyncEtlError):
    """Raised when reading from a source fails for good (bad query, missing table, auth)."""


class TransientExtractError(ExtractError, TransientError):
    """Raised when reading from a source failed in a way worth retrying."""


class LoadError(AsyncEtlError):
    """Raised when writing to a sink fails for good (bad table, auth, analysis error)."""


class TransientLoadError(LoadError, TransientError):
    """Raised when writing to a sink failed in a way worth retrying."""


class DataError(LoadError):
    """Raised when the target refuses rows for their content (too long, NOT NULL, bad cast)."""

    kind = ErrorKind.DATA


class CheckpointError(AsyncEtlError):
    """Raised when run or chunk state cannot be read or written consistently."""


class StopRequested(AsyncEtlError):  # noqa: N818 - it is a signal, not a failure
    """Raised inside a unit of work when a stop was requested at a safe point."""

    kind = ErrorKind.CONFIGURATION


class Fail:
    """Builds the one-line ``ConfigError`` for a problem in a file the user wrote.

    ``Fail("job", "a.toml")("[scd] type", "expected 1 or 2")`` is
    ``ConfigError("job file a.toml: [scd] type: expected 1 or 2")``; job and plan files use it.
    """

    def __init__(self, kind: str, path: str) -> None:
        self.kind, self.path = kind, path

    def __call__(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.kind} file {self.path}: {where}: {problem}")


def unusable(message: str, cause: AsyncEtlError) -> ConfigError:
    """A ``ConfigError`` for a database a job cannot use, keeping the cause's kind.

    ``async-etl run`` exits 2 for it either way; an orchestrator reads ``kind`` and retries a
    database that was unreachable (NETWORK / DB_TRANSIENT) instead of failing the job for good.
    """
    err = ConfigError(message)
    err.kind = cause.kind
    return err


def network(message: str, *, retry_after: float | None = None) -> TransientLoadError:
    """Build a transient load error classified as a network failure."""
    err = TransientLoadError(message, retry_after=retry_after)
    err.kind = ErrorKind.NETWORK
    return err


def extract_error(err: AsyncEtlError) -> AsyncEtlError:
    """The source-side twin of a translated driver error: same message, kind and retry hint.

    A transient error becomes a ``TransientExtractError``, any other ``LoadError`` an
    ``ExtractError``; a ``ConfigError`` (bad input, not a failed read) or an error that is
    already an ``ExtractError`` comes back unchanged.
    """
    if isinstance(err, ExtractError | ConfigError) or not isinstance(err, LoadError):
        return err
    out: ExtractError
    if isinstance(err, TransientError):
        out = TransientExtractError(err.message, retry_after=err.retry_after)
    else:
        out = ExtractError(err.message)
    out.kind = err.kind
    return out


def first_etl_error(group: BaseExceptionGroup[Any]) -> AsyncEtlError | None:
    """The first ``AsyncEtlError`` inside a (nested) exception group, if any."""
    for exc in group.exceptions:
        if isinstance(exc, AsyncEtlError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = first_etl_error(exc)
            if found is not None:
                return found
    return None
