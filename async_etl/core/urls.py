"""Database URLs: which dialect a URL speaks, and how to print one without its secrets.

Also where the metrics endpoint listens by default (``METRICS_HOST``), here so that a job run
finds it without importing the bench settings (``async_etl.config``).

Pure string work (no connection is made here).  ``mask_url`` is the project's one masker:
every message, log event, summary, JSON file and table that shows a URL passes it through
``mask_url`` first, and the two exits every line leaves by (the structlog chain and the CLI's
error line) pass whole texts through ``mask_text`` as a last line of defence.

What counts as a secret
-----------------------
* the password of the user-info, ``scheme://user:SECRET@host``, even when it holds an
  unescaped ``@``, ``/``, ``?`` or ``#`` (user-info runs to the *last* ``@``; masking a little
  too much is preferred to leaking);
* the value of every parameter whose name says it is one (``password``, ``sslpassword``,
  ``passwd``, ``pwd``, ``token``, ``secret``, ``api_key``, ...), in a query string
  (``?password=SECRET&...``) or in a libpq ``key=value`` string (``password=SECRET`` or
  ``password='SEC RET'``), up to the next ``&name=`` or white space.
"""

from __future__ import annotations

import re
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

Dialect: TypeAlias = Literal["postgresql", "oracle", "cratedb"]

METRICS_HOST = "127.0.0.1"
"""Where ``/metrics`` listens unless ``--metrics-host`` says otherwise: this machine only."""

SCHEMES: dict[str, Dialect] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "oracle": "oracle",
    "http": "cratedb",
    "https": "cratedb",
    "crate": "cratedb",
}
"""Every URL scheme a job file may use, and the dialect it selects."""

MASK = "***"
"""What a secret is replaced by."""

_SECRET_NAME = r"[\w.-]*(?:pass|pwd|secret|token|credential|api[_-]?key|auth)[\w.-]*"
_QUOTED = r"(?:'(?:[^'\\]|\\.)*(?:'|$))?"
# in a URL query: the value runs to white space or the next `&name=`
_SECRET_PARAM = re.compile(
    rf"(?P<name>(?<![\w.-]){_SECRET_NAME}\s*=\s*)"
    rf"(?P<value>{_QUOTED}[^\s&]*(?:&(?![\w.-]+=)[^\s&]*)*)",
    re.IGNORECASE,
)
# in a libpq key=value string: the value is quoted, or runs to white space
_LIBPQ_PARAM = re.compile(
    rf"(?P<name>(?<![\w.-]){_SECRET_NAME}\s*=\s*)(?P<value>{_QUOTED}\S*)", re.IGNORECASE
)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


Span: TypeAlias = tuple[int, int]


def _param_spans(
    text: str, *, trim: str = "", pattern: re.Pattern[str] = _SECRET_PARAM
) -> list[Span]:
    """Where the value of every secret-named ``name=value`` in ``text`` lies.

    ``trim``: punctuation not counted at the end of a value (free text: ``password=***:``).
    """
    spans = []
    for m in pattern.finditer(text):
        value = m["value"].rstrip(trim) or m["value"]
        if value:
            spans.append((m.start("value"), m.start("value") + len(value)))
    return spans


def _userinfo_span(url: str, offset: int = 0) -> list[Span]:
    """Where the password lies: from the user-info's first ``:`` to the last ``@``."""
    scheme_end = url.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    at = url.rfind("@", start)
    colon = url.find(":", start, at) if at > start else -1
    return [(offset + colon + 1, offset + at)] if colon >= 0 else []


def _apply(text: str, spans: list[Span]) -> str:
    """``text`` with each (merged) span replaced by ``***``."""
    out, pos = [], 0
    for start, end in sorted(spans):
        if end <= pos:
            continue
        out.append(text[pos:start] if start > pos else "")
        out.append("" if start < pos else MASK)
        pos = max(pos, end)
    out.append(text[pos:])
    return "".join(out)


def mask_url(url: str) -> str:
    """``url`` (a URL or a libpq ``key=value`` string) with every secret replaced by ``***``.

    Never raises, whatever the string: a URL that does not parse is masked all the same.
    """
    pattern = _SECRET_PARAM if "://" in url else _LIBPQ_PARAM
    return _apply(url, _userinfo_span(url) + _param_spans(url, pattern=pattern))


def mask_text(text: str) -> str:
    """Free ``text`` with the secrets of every URL and ``password=...`` in it masked.

    A URL in text ends at white space, and a value does not take the punctuation that ends a
    phrase (``:,;'")``), so a password holding a space (or ending in such a character) is only
    safe when the URL went through ``mask_url`` first (which is the rule; this is the backstop).
    """
    if "://" not in text and "=" not in text:
        return text
    spans = _param_spans(text, trim=":,;'\")")
    for m in _URL_IN_TEXT.finditer(text):
        spans += _userinfo_span(m[0], m.start())
    return _apply(text, spans) if spans else text


def url_problem(url: str) -> str | None:
    """Why ``url`` would not parse the same way everywhere (None when it is fine).

    A password holding an unescaped ``@``, ``/``, ``?`` or ``#`` makes the URL ambiguous: the
    drivers and ``urllib`` split it at different places (and may even connect to a host made of
    part of the password), so such URLs are refused before use.  The reason never quotes the URL.
    """
    hint = "percent-encode special characters of the password (@ %40, / %2F, ? %3F, # %23)"
    if re.search(r"%(?![0-9A-Fa-f]{2})", url):
        return f"a '%' is not followed by two hex digits ({hint}, % %25)"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return f"the port is not a number 1..65535 ({hint})"
    if parts.netloc.count("@") > 1 or "@" in parts.path or "@" in parts.fragment:
        return f"more than one '@' or an '@' after the host ({hint})"
    if parts.query and any("=" not in field for field in parts.query.split("&")):
        return f"every query parameter must be name=value ({hint})"
    return None


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url`` ('' when it has none)."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def dialect_of(url: str) -> Dialect | None:
    """The dialect ``url`` selects, or None when its scheme is not one we know."""
    return SCHEMES.get(scheme_of(url))
