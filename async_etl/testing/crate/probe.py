"""A minimal ``/_sql`` client for poking a stand-in (or a real CrateDB) from tests and scripts.

Not the engine's sink: no retries, no pooling policy, just one request and its decoded answer.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson


async def post_sql(
    session: aiohttp.ClientSession,
    url: str,
    stmt: str,
    args: list[Any] | None = None,
    bulk_args: list[list[Any]] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    query: str = "",
    compress: bool = False,
) -> tuple[int, dict[str, Any]]:
    """POST one statement to ``url/_sql`` and return ``(status, json body)``.

    Raises ``aiohttp.ClientError`` on connection problems and ``orjson.JSONDecodeError`` when
    the answer is not JSON (a 401 is returned as ``{"text": ...}`` instead).
    """
    body: dict[str, Any] = {"stmt": stmt}
    if args is not None:
        body["args"] = args
    if bulk_args is not None:
        body["bulk_args"] = bulk_args
    data = orjson.dumps(body)
    sent = dict(headers or {})
    sent.setdefault("Content-Type", "application/json")
    if compress:
        data = gzip.compress(data)
        sent["Content-Encoding"] = "gzip"
    async with session.post(f"{url}/_sql{query}", data=data, headers=sent) as response:
        raw = await response.read()
        if response.content_type != "application/json":
            return response.status, {"text": raw.decode(errors="replace")}
        decoded: dict[str, Any] = orjson.loads(raw)
        return response.status, decoded
