"""What the stand-in's HTTP layers hand to the request logic, and what they get back.

``CrateStandIn.sql_reply`` decides every ``/_sql`` answer from an ``Exchange`` and returns a
``Reply``; the aiohttp layer (``server``) and the lean asyncio-Protocol layer (``lean``) only
turn bytes into an ``Exchange`` and a ``Reply`` into bytes, so both answer alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

JSON = "application/json"
TEXT = "text/plain"


@dataclass(frozen=True, slots=True)
class Exchange:
    """One ``POST /_sql`` as the request logic sees it.

    ``transport`` identifies the connection (peak-connection counting), ``authorization`` is
    the raw header (``""`` when absent), ``schema()`` the connection's ``Default-Schema``,
    ``read()`` the (inflated) body, ``trace`` / ``types`` the ``error_trace`` / ``types`` flags.
    """

    transport: object
    authorization: str
    schema: Callable[[], str]
    read: Callable[[], Awaitable[bytes]]
    trace: bool
    types: bool


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: status, body bytes, content type and extra headers.

    ``close`` ends the connection after it, ``drop`` aborts the connection instead of answering.
    """

    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False
    drop: bool = False


DROP = Reply(0, b"", drop=True)
"""Abort the connection without an answer (the injected drop faults)."""
