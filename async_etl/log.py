"""Logging: silent by default for a host app, configured once at the edge (the CLI).

Library code only gets loggers (``async_etl.log.get_logger(__name__)``).  Until someone
configures structlog, their events go through the standard library's ``logging`` under the
``async_etl.*`` logger names, and importing ``async_etl`` gives the ``async_etl`` logger a
``NullHandler`` — so an embedded engine, writer or job prints nothing until the host configures
``logging`` (e.g. ``logging.basicConfig(level="INFO")``).  structlog's global configuration is
never set on import: a host on structlog's defaults keeps printing its own events.
The CLI replaces all of this with ``configure_logging`` (JSON or readable lines on stderr).

structlog is imported with rich hidden: structlog's own modules import rich (and through it
pygments and attrs) only to draw exception tracebacks in colour, about 40 ms of every
``async-etl`` start.  Without rich structlog prints plain tracebacks.  rich stays importable
afterwards (the progress bar and the tables import it when they draw); a process that
imported structlog or rich before ``async_etl`` keeps them as they are.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson

from async_etl.core.urls import mask_text

_HIDE_RICH = "structlog" not in sys.modules and "rich" not in sys.modules
if _HIDE_RICH:  # see the module doc: ``import rich`` raises ImportError while structlog loads
    sys.modules["rich"] = None  # type: ignore[assignment]
try:
    import structlog
finally:
    if _HIDE_RICH:
        del sys.modules["rich"]


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def mask_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """A structlog processor: mask URL secrets in every string value of the event (backstop)."""
    return {k: mask_text(v) if isinstance(v, str) else v for k, v in event.items()}


_LIBRARY_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    mask_secrets,
    structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
]


class _LibraryLogger:
    """A module's logger, decided at each call (a configuration may come after the import).

    Once anyone configured structlog (the CLI's ``configure_logging``, the host, or
    ``structlog.testing.capture_logs``) events follow that configuration; until then they go
    through the standard library's ``logging.getLogger(name)``, rendered as ``key=value``.
    structlog's global configuration is never touched, so a host on structlog's defaults keeps
    printing its own events.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if structlog.is_configured():
            return getattr(structlog.get_logger(self._name), attr)
        quiet = structlog.wrap_logger(
            logging.getLogger(self._name),
            processors=_LIBRARY_PROCESSORS,
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        return getattr(quiet, attr)


def get_logger(name: str) -> Any:
    """The logger for module ``name`` (see ``_LibraryLogger``); raises nothing."""
    return _LibraryLogger(name)


def install_library_default() -> None:
    """Give the ``async_etl`` stdlib logger a ``NullHandler`` (silent until the host adds handlers).

    structlog's own configuration is left alone: a host that never configures it keeps
    structlog's defaults for its own events (``get_logger`` routes ours apart).
    """
    root = logging.getLogger("async_etl")
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    """A logger on the ``sys.stderr`` of the moment, not the one seen at configuration.

    A host (or pytest's capture) may swap ``sys.stderr`` after the CLI configured logging;
    writing to the stream captured then would fail with ``ValueError`` once it is closed.
    """
    return structlog.PrintLogger(sys.stderr)


def configure_logging(fmt: str, *, level: int = logging.INFO) -> None:
    """Send structlog events to stderr as JSON lines (``json``) or readable lines (``console``).

    The stream is looked up at each event (loggers are not cached), so it follows
    ``sys.stderr`` when it is replaced.
    """
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
