"""Where a CrateDB sink points: the endpoint parsed from its URL, and its table.

Pure string work.  ``Endpoint`` keeps the password only to build the ``Authorization``
header; its ``repr`` and ``display`` never show it, and every ``ConfigError`` names the URL
through ``mask_url``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from async_etl.core.schema import quote_ident
from async_etl.core.urls import mask_url, url_problem
from async_etl.errors import ConfigError

__all__ = ["DEFAULT_PORT", "DEFAULT_SCHEMA", "CrateTable", "Endpoint", "mask_url", "qualified"]

DEFAULT_PORT = 4200

DEFAULT_SCHEMA = "doc"
"""The schema CrateDB puts an unqualified table in when no ``Default-Schema`` header is sent."""


def qualified(table: str, schema: str | None) -> str:
    """``schema.table`` as CrateDB resolves ``table`` sent with ``Default-Schema: schema``.

    A name with a dot is taken as qualified already; ``schema`` None: ``DEFAULT_SCHEMA``.
    The one place the default schema is decided (``Endpoint.qualify``, ``CrateTable``).
    """
    return table if "." in table else f"{schema or DEFAULT_SCHEMA}.{table}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A CrateDB HTTP endpoint parsed from a sink URL; ``repr`` and ``display`` hide the password.

    ``http://user:pw@host:4200/?schema=s`` — ``crate://`` means ``http://``; the port defaults
    to 4200; a path is refused (CrateDB's ``/_sql`` is at the root: a request there would miss a
    reverse proxy's prefix); ``schema`` is the only query parameter (``Default-Schema``).
    """

    scheme: Literal["http", "https"]
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    schema: str | None = None

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Parse a sink URL; raise ``ConfigError`` (one line, password masked) when invalid."""

        def bad(why: str) -> ConfigError:
            return ConfigError(f"invalid CrateDB URL {mask_url(url)!r}: {why}")

        problem = url_problem(url)
        if problem is not None:
            raise bad(problem)
        parts = urlsplit(url.strip())
        port = parts.port
        scheme = {"http": "http", "https": "https", "crate": "http"}.get(parts.scheme.lower())
        if scheme is None:
            raise bad("scheme must be http, https or crate")
        if not parts.hostname:
            raise bad("no host")
        if port == 0:
            raise bad("port must be 1..65535")
        if parts.path not in ("", "/"):
            raise bad(f"a path ({parts.path!r}) is not supported: /_sql is sent to the root")
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        unknown = sorted(set(query) - {"schema"})
        if unknown:
            raise bad(f"unknown query parameter {unknown[0]!r} (only 'schema' is allowed)")
        schemas = query.get("schema", [])
        if len(schemas) > 1 or (schemas and not schemas[0].strip()):
            raise bad("'schema' must be given once and not be empty")
        return cls(
            scheme="https" if scheme == "https" else "http",
            host=parts.hostname,
            port=port if port is not None else DEFAULT_PORT,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            schema=schemas[0].strip() if schemas else None,
        )

    def qualify(self, table: str) -> str:
        """``schema.table`` as this endpoint's requests resolve ``table`` (``qualified``)."""
        return qualified(table, self.schema)

    def __repr__(self) -> str:
        """Show the endpoint without its password."""
        return f"Endpoint({self.display!r}, schema={self.schema!r})"

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` without credentials, for the HTTP client."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def sql_url(self) -> str:
        """The ``/_sql`` URL."""
        return f"{self.base_url}/_sql"

    @property
    def display(self) -> str:
        """``scheme://user@host:port`` — safe for messages and logs (never the password)."""
        user = f"{self.user}@" if self.user else ""
        return self.base_url.replace("://", f"://{user}", 1)

    def headers(self) -> dict[str, str]:
        """Headers every request carries: content type, ``Authorization``, ``Default-Schema``."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.user is not None:
            token = f"{self.user}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
        if self.schema is not None:
            headers["Default-Schema"] = self.schema
        return headers


@dataclass(frozen=True, slots=True)
class CrateTable:
    """The statements a CrateDB sink runs on its table (identifiers validated and quoted).

    Raises ``ConfigError`` when ``name`` or ``id_column`` is not a valid identifier.
    """

    name: str
    id_column: str = "id"

    def __post_init__(self) -> None:
        quote_ident(self.name)
        quote_ident(self.id_column)

    def qualified(self, default_schema: str | None) -> str:
        """``schema.table`` as the server resolves it (``qualified``: ``doc`` by default)."""
        return qualified(self.name, default_schema)

    @property
    def refresh(self) -> str:
        """``REFRESH TABLE t``: make recent writes visible to non-PK filters."""
        return f"REFRESH TABLE {quote_ident(self.name)}"

    @property
    def max_id(self) -> str:
        """``SELECT max(id) FROM t`` (run after ``refresh``)."""
        return f"SELECT max({quote_ident(self.id_column)}) FROM {quote_ident(self.name)}"

    @property
    def count_range(self) -> str:
        """``SELECT count(*)`` of the ids in ``[?, ?)`` (args: start, stop)."""
        col = quote_ident(self.id_column)
        return f"SELECT count(*) FROM {quote_ident(self.name)} WHERE {col} >= ? AND {col} < ?"
