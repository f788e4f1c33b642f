"""Oracle: connections (python-oracledb's asyncio API, thin mode) and error translation.

``oracle_connection`` takes a budget token, opens ``oracledb.connect_async`` from an
``oracle://user:password@host:1521/service`` URL, sets the session time zone to UTC (the run's
as-of time is bound as naive UTC) and code-point order for text (``NLS_SORT`` and ``NLS_COMP``
``BINARY``: chunk ranges mean the same keys in every database), fetches non-integer ``NUMBER``
columns as ``Decimal`` (a float would round their 38 digits), yields the connection, and
closes it (shielded).  Every ``oracledb.Error`` inside the block is translated at this boundary
by ``translate_oracle`` (``core.classify.classify_oracle`` on ``full_code`` and
``isrecoverable``) and chained.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio

from async_etl.core.classify import classify_oracle, is_transient
from async_etl.core.exact import oracle_number_as_decimal
from async_etl.core.scd_sql_oracle import SESSION_SQL
from async_etl.core.urls import mask_url
from async_etl.errors import (
    AsyncEtlError,
    ConfigError,
    DataError,
    ErrorKind,
    LoadError,
    TransientLoadError,
    network,
)
from async_etl.typing import Holder

__all__ = [
    "is_data_error",
    "oracle_code",
    "oracle_connection",
    "oracle_error",
    "oracle_errors",
    "oracle_params",
    "translate_oracle",
]


def oracle_params(url: str) -> dict[str, Any]:
    """``connect_async`` keyword arguments from an ``oracle://`` URL; ``ConfigError`` if bad."""
    try:
        parts = urlsplit(url)
        port = parts.port or 1521
    except ValueError as exc:
        raise ConfigError(f"invalid Oracle URL {mask_url(url)}: {exc}") from exc
    service = parts.path.strip("/")
    if not parts.hostname or not service:
        raise ConfigError(
            f"invalid Oracle URL {mask_url(url)}: want oracle://user:pw@host:port/service"
        )
    return {
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "dsn": f"{parts.hostname}:{port}/{service}",
    }


def oracle_error() -> type[Exception]:
    """``oracledb.Error``, the base of every error python-oracledb raises (imported lazily)."""
    import oracledb

    error: type[Exception] = oracledb.Error
    return error


def oracle_code(exc: BaseException) -> str:
    """The ``ORA-nnnnn`` code of an oracledb error (empty when it has none)."""
    args = getattr(exc, "args", ())
    return str(getattr(args[0], "full_code", "") if args else "")


def is_data_error(exc: BaseException) -> bool:
    """True for an Oracle error about a row's content (``classify_oracle`` says DATA)."""
    code = oracle_code(exc)
    return bool(code) and classify_oracle(code) is ErrorKind.DATA


def translate_oracle(exc: BaseException, where: str) -> AsyncEtlError:
    """The async_etl error for an oracledb (or socket) failure at ``where``; chain it yourself."""
    args = getattr(exc, "args", ())
    detail = args[0] if args else None
    code = str(getattr(detail, "full_code", "") or "")
    if code:
        kind = classify_oracle(code, getattr(detail, "isrecoverable", None))
        text = f"{where}: {getattr(detail, 'message', exc)}"
        if is_transient(kind):
            return TransientLoadError(text)
        if kind is ErrorKind.DATA:
            return DataError(text)
        return LoadError(text)
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return network(f"{where}: connection problem: {type(exc).__name__}: {exc}")
    return LoadError(f"{where}: {type(exc).__name__}: {exc}")


def oracle_errors() -> tuple[type[BaseException], ...]:
    """What an Oracle adapter should catch and pass through ``translate_oracle``."""
    import oracledb

    return (oracledb.Error, OSError, TimeoutError)


def _exact_numbers(cursor: Any, metadata: Any) -> Any:
    """Fetch non-integer ``NUMBER`` columns as ``Decimal`` (``core.exact``), not floats."""
    import oracledb

    if metadata.type_code is oracledb.DB_TYPE_NUMBER and oracle_number_as_decimal(
        metadata.precision, metadata.scale
    ):
        return cursor.var(Decimal, arraysize=cursor.arraysize)
    return None


@asynccontextmanager
async def oracle_connection(
    url: str, holder: Holder, *, where: str = "", translate_inside: bool = True
) -> AsyncIterator[Any]:
    """An Oracle connection under a budget token; errors inside translated (see module doc).

    With ``translate_inside=False`` what the block raises passes unchanged (as
    ``drivers.postgres_connections.pg_connection``).
    """
    try:
        import oracledb
    except ImportError as exc:  # pragma: no cover - an optional dependency
        raise ConfigError(
            "Oracle needs the 'oracledb' package (pip install async-etl[oracle])"
        ) from exc
    label = where or f"Oracle {mask_url(url)}"
    errors = oracle_errors()
    async with holder(url):
        try:
            conn = await oracledb.connect_async(**oracle_params(url))
            conn.outputtypehandler = _exact_numbers
            cursor = conn.cursor()
            await cursor.execute(SESSION_SQL.text)
        except errors as exc:
            raise translate_oracle(exc, label) from exc
        try:
            yield conn
        except AsyncEtlError:
            raise
        except errors as exc:
            if not translate_inside:
                raise
            raise translate_oracle(exc, label) from exc
        finally:
            with anyio.CancelScope(shield=True):
                with suppress(*errors):
                    await conn.close()
