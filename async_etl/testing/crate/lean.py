"""The stand-in's lean HTTP/1.1 layer: one ``asyncio.Protocol`` per connection, no aiohttp.

Theory of operation
-------------------
The aiohttp layer costs the stand-in about as much CPU per request as the statement itself
(request and response objects, routing, header multidicts, a task per request).  In a
benchmark the stand-in shares the machine with the client it measures, so that cost is taken
from the client.  This layer speaks just the HTTP/1.1 our clients (aiohttp, urllib3) send and
hands every decision to the same ``CrateStandIn.sql_reply`` / ``info_reply`` the aiohttp layer
uses: the answers, counters and faults are the same, only the parsing of bytes differs.

Per connection, requests are served one at a time, in order (HTTP/1.1 keep-alive; a pipelined
request waits in the buffer until the one before it is answered; past 1 MiB buffered while a
request is served, reading pauses until it is answered, so a client cannot fill memory):

1. buffer bytes until the head (the blank line) and ``Content-Length`` body bytes are in
   (a head with ``Expect: 100-continue`` is answered ``100 Continue`` while its body is due);
   a head not complete ``head_timeout`` seconds after its first byte is a 408, a head over
   64 KiB a 431, a body over ``max_body_bytes`` a 413, chunked bodies (which
   neither client sends) a 411, a head that is not HTTP/1.x (a bare LF or CR, a field with no
   colon or a control character, a ``Content-Length`` not plain digits or given twice
   differing, a ``Transfer-Encoding`` other than ``chunked``) a 400, as aiohttp's parser
   refuses it — each then closes the connection after a lingering read: the answer is sent,
   the sending side shut, and what the client still sends is read and dropped until it
   closes (5 s at most), since closing a socket with unread bytes resets the connection and
   the client would see the reset, not the answer;
2. ``Content-Encoding: gzip`` / ``deflate`` bodies are inflated (a bad one is a 400, one
   inflating past ``max_body_bytes`` a 413, as aiohttp's limit);
3. ``GET /`` answers ``info_reply``, ``POST /_sql[/...]`` runs ``sql_reply`` in one task,
   anything else is a 404 (405 for another method on a known path);
4. the ``Reply`` is written as one buffer; ``close`` (or the request's ``Connection: close``,
   or an HTTP/1.0 request: this layer keeps only HTTP/1.1 connections alive) closes after
   writing, ``drop`` aborts.  An exception of the request logic is a 500 naming it, and the
   connection closes (the aiohttp layer answers a 500 too).

The connection's ``Default-Schema`` is read from its first request, as the aiohttp layer does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs

from async_etl.testing.crate.exchange import TEXT, Exchange, Reply

if TYPE_CHECKING:
    import socket

    from async_etl.testing.crate.server import CrateStandIn

__all__ = ["LeanServer", "serve_lean"]

_MAX_HEAD = 64 * 1024
_MAX_PIPELINED = 1024 * 1024  # buffered while a request is served: reading pauses past it
_LINGER_S = 5.0  # the most a refused connection is read (and dropped) before it is closed
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: a method or field name
_VERSIONS = frozenset(("HTTP/1.0", "HTTP/1.1"))
_HEAD_BYTES = bytes(sorted({9, 10, 13, *range(32, 127), *range(128, 256)}))
"""The bytes a head may hold: no control character but tab, CR and LF (RFC 9110 5.5)."""
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _plain(status: int, text: str) -> Reply:
    """A plain-text error answer that closes the connection."""
    return Reply(status, f"{status}: {text}".encode(), TEXT, close=True)


def render(reply: Reply) -> bytes:
    """The HTTP/1.1 bytes of ``reply`` (status line, headers, body)."""
    ctype = reply.content_type + ("; charset=utf-8" if reply.content_type == TEXT else "")
    head = [
        f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}",
        f"Content-Type: {ctype}",
        f"Content-Length: {len(reply.body)}",
    ]
    head += [f"{name}: {value}" for name, value in reply.headers]
    if reply.close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body


def _inflate(body: bytes, encoding: str, limit: int) -> bytes | Reply:
    """``body`` inflated per ``Content-Encoding``, or the answer that refuses it.

    400 when it is not valid for that encoding; 413 when it inflates past ``limit`` bytes
    (``max_body_bytes``, which aiohttp's ``client_max_size`` applies to the inflated body too):
    inflating stops there, so a small body cannot take unbounded memory.
    """
    if encoding in ("", "identity"):
        return body
    formats = {"gzip": (31,), "deflate": (15, -15)}  # raw deflate too, as some clients send it
    for bits in formats.get(encoding, ()):
        inflater = zlib.decompressobj(bits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit:
            return _plain(413, "Payload Too Large")
        if inflater.eof:
            return out
    return _plain(400, "Can not decode content-encoding")


def _parse_head(lines: list[str]) -> dict[str, str] | None:
    """The head's headers (names lower-cased), or None when it is not HTTP/1.x as RFC 9112 says.

    The request line is ``METHOD SP target SP HTTP/1.x``; each field is ``token ":" value``
    (no blank before the colon, only blanks and tabs around the value; the caller refuses
    control characters); ``Content-Length`` is ASCII digits only, below 2**64, and given
    twice only with one value; ``Transfer-Encoding`` lines are one list, and ``chunked``
    alone is a coding — ``+20``, ``2_0``, a no-break space, two lengths or ``identity`` would
    frame the body differently from another parser (aiohttp's refuses them with a 400 too).
    """
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or parts[2] not in _VERSIONS:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            return None
        name, value = name.lower(), value.strip(" \t")
        if name == "content-length" and (
            not (value.isascii() and value.isdigit())
            or len(value.lstrip("0")) > 20  # int() of a long string raises
            or int(value) >= 2**64
            or headers.get(name, value) != value
        ):
            return None
        if name == "transfer-encoding":
            value = ", ".join(filter(None, (headers.get(name), value)))
            if value.lower() != "chunked":
                return None
        headers[name] = value
    return headers


class _Connection(asyncio.Protocol):
    """One client connection: parse requests in order, answer through the stand-in."""

    def __init__(self, server: LeanServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.schema: str | None = None
        self.continued = False  # the buffered request's 100 Continue is sent
        self.paused = False  # reading paused: the buffer is full while a request is served
        self.head_timer: asyncio.TimerHandle | None = None  # the buffered head's deadline
        self.linger: asyncio.TimerHandle | None = None  # refused: read and drop until this

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.task is not None:
            self.task.cancel()
        for timer in (self.head_timer, self.linger):
            if timer is not None:
                timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.linger is not None:
            return  # refused: read and dropped until the client closes
        self.buffer += data
        if self.task is None:
            self._next()
        self._pace()

    def _pace(self) -> None:
        """Pause reading while a request is served and the buffer is full; resume after."""
        transport = self.transport
        full = self.task is not None and len(self.buffer) >= _MAX_PIPELINED
        if transport is None or full == self.paused or transport.is_closing():
            return
        self.paused = full
        if full:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _next(self) -> None:
        """Start serving the next complete request in the buffer, if there is one."""
        buf, transport = self.buffer, self.transport
        if transport is None or transport.is_closing() or self.linger is not None:
            return
        end = buf.find(b"\r\n\r\n")
        head = buf[:end] if end >= 0 else buf.rstrip(b"\r")
        if head.count(b"\n") != head.count(b"\r") or head.count(b"\n") != head.count(b"\r\n"):
            self._refuse(400, "Bad Request")  # a bare LF or CR: the head would never end
            return
        if end < 0 or end > _MAX_HEAD:
            if len(buf) > _MAX_HEAD:
                self._refuse(431, "Request Header Fields Too Large")
            else:
                self._time_head(bool(buf))
            return
        self._time_head(False)
        lines = head.decode("latin-1").split("\r\n")  # head is buf[:end] here
        control = head.translate(None, _HEAD_BYTES)  # what is left: control characters
        headers = None if control else _parse_head(lines)
        if headers is None:
            self._refuse(400, "Bad Request")
            return
        if "transfer-encoding" in headers:  # chunked, the only coding _parse_head lets by
            self._refuse(411, "Length Required")
            return
        length = int(headers.get("content-length", "0"))
        if length > self.server.standin.config.max_body_bytes:
            self._refuse(413, "Payload Too Large")
            return
        start = end + 4
        if len(buf) < start + length:
            expects = headers.get("expect", "").lower() == "100-continue"
            if expects and not self.continued and lines[0].endswith(" HTTP/1.1"):
                self.continued = True  # the client waits for this before sending the body
                transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        raw = bytes(buf[start : start + length])
        del buf[: start + length]
        self.continued = False
        method, target, version = lines[0].split(" ")
        tokens = {t.strip() for t in headers.get("connection", "").lower().split(",")}
        close = version == "HTTP/1.0" or "close" in tokens  # a token list (RFC 9110 7.6.1)
        self.task = asyncio.get_running_loop().create_task(
            self._serve(method, target, headers, raw, close=close)
        )

    async def _serve(
        self, method: str, target: str, headers: dict[str, str], raw: bytes, *, close: bool
    ) -> None:
        try:
            reply = await self._reply(method, target, headers, raw)
        except Exception as exc:  # a fault of the stand-in itself: a 500 that closes, as aiohttp
            reply = _plain(500, f"Internal Server Error ({type(exc).__name__}: {exc})")
        self.task = None
        if close:  # the request's Connection: close, or HTTP/1.0 (no keep-alive here)
            reply = dataclasses.replace(reply, close=True)
        self._send(reply)
        if not reply.close and not reply.drop and self.buffer:
            self._next()
        self._pace()

    async def _reply(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        standin = self.server.standin
        path, _, query = target.partition("?")
        authorization = headers.get("authorization", "")
        if path == "/":
            if method != "GET":
                return _plain(405, "Method Not Allowed")
            return standin.info_reply(authorization)
        if path != "/_sql" and not path.startswith("/_sql/"):
            return _plain(404, "Not Found")
        if method != "POST":
            return _plain(405, "Method Not Allowed")
        limit = standin.config.max_body_bytes
        body = _inflate(raw, headers.get("content-encoding", "").lower(), limit)
        if isinstance(body, Reply):
            return body
        if self.schema is None:
            self.schema = headers.get("default-schema") or "doc"
        flags = parse_qs(query, keep_blank_values=True) if query else {}
        exchange = Exchange(
            transport=self.transport,
            authorization=authorization,
            schema=self._schema,
            read=_ready(body),
            trace=flags.get("error_trace", ["false"])[-1] != "false",
            types=flags.get("types", ["false"])[-1] != "false",
        )
        return await standin.sql_reply(exchange)

    def _schema(self) -> str:
        return self.schema or "doc"

    def _time_head(self, due: bool) -> None:
        """Start the head's deadline when ``due`` (a head is coming) and none runs; else end it."""
        timeout = self.server.standin.config.head_timeout
        if due and self.head_timer is None and timeout > 0:
            loop = asyncio.get_running_loop()
            self.head_timer = loop.call_later(timeout, self._refuse, 408, "Request Timeout")
        elif not due and self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _refuse(self, status: int, text: str) -> None:
        """Answer a request refused before it is served; close after a lingering read.

        Closing a socket with unread bytes (the rest of a large head or body, pipelined
        requests) makes the kernel reset the connection, and the client sees the reset, not
        the answer: so the answer is sent, the sending side shut, and what comes in is dropped
        until the client closes (EOF closes the transport) or ``_LINGER_S`` passed.
        """
        transport = self.transport
        self._time_head(False)
        if transport is None or transport.is_closing() or self.linger is not None:
            return
        transport.write(render(_plain(status, text)))
        self.buffer.clear()
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.linger = asyncio.get_running_loop().call_later(_LINGER_S, transport.close)
        if self.paused:
            self.paused = False
            transport.resume_reading()

    def _send(self, reply: Reply) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if reply.drop:
            transport.abort()
            return
        transport.write(render(reply))
        if reply.close:
            transport.close()


def _ready(body: bytes) -> Callable[[], Awaitable[bytes]]:
    """A ``read()`` for ``Exchange``: the body is already in memory."""

    async def read() -> bytes:
        return body

    return read


class LeanServer:
    """The listening socket and its open connections; ``close()`` stops both."""

    def __init__(self, standin: CrateStandIn) -> None:
        self.standin = standin
        self.connections: set[_Connection] = set()
        self.server: asyncio.AbstractServer | None = None

    async def close(self) -> None:
        """Stop listening and abort every open connection."""
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if server is not None:
            await server.wait_closed()


async def serve_lean(standin: CrateStandIn, sock: socket.socket) -> LeanServer:
    """Serve ``standin`` on the bound ``sock`` with the lean layer, in the running loop."""
    lean = LeanServer(standin)
    loop = asyncio.get_running_loop()
    lean.server = await loop.create_server(lambda: _Connection(lean), sock=sock, backlog=1024)
    return lean
