"""Database URLs: which dialect a URL speaks, and how to print one without its password.

Pure string work (no connection is made here).  Every error message that shows a URL must pass
it through ``mask_url`` first.
"""

from __future__ import annotations

from typing import Literal, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

Dialect: TypeAlias = Literal["postgresql", "oracle", "cratedb"]

SCHEMES: dict[str, Dialect] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "oracle": "oracle",
    "http": "cratedb",
    "https": "cratedb",
    "crate": "cratedb",
}
"""Every URL scheme a job file may use, and the dialect it selects."""

_SECRET_PARAMS = frozenset({"password", "pwd", "passwd", "pass", "token"})


def mask_url(url: str) -> str:
    """Return ``url`` with its password (userinfo or ``?password=`` style) replaced by ``***``.

    Never raises: a string that does not parse as a URL is returned with everything between
    ``://`` and the last ``@`` masked when it contains a ``:``.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            if ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                netloc = f"{user}:***@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
                masked = [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs]
                query = urlencode(masked, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        head, sep, tail = url.partition("://")
        if sep and "@" in tail:
            userinfo, _, rest = tail.rpartition("@")
            if ":" in userinfo:
                return f"{head}://{userinfo.split(':', 1)[0]}:***@{rest}"
        return url


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url`` ('' when it has none)."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def dialect_of(url: str) -> Dialect | None:
    """The dialect ``url`` selects, or None when its scheme is not one we know."""
    return SCHEMES.get(scheme_of(url))
