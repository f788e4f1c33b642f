"""A fault-injecting TCP proxy for PostgreSQL: kill a session on the Nth matching statement.

Theory of operation: ``PgProxy`` listens on ``127.0.0.1:<port>`` and relays each client
connection to the real server byte for byte, except that it reads the client's side of the
wire protocol message by message.  ``SSLRequest`` / ``GSSENCRequest`` are answered ``N`` by the
proxy itself (so the stream stays readable); after the startup message every message is
``type byte + int32 length + body``.  The SQL text of ``Query`` (``Q``) and ``Parse`` (``P``)
messages is recorded in ``Faults.seen`` and matched against the armed rules.  When a rule
fires, the statement is *not* forwarded: the proxy closes the server side (the backend ends,
rolling back its transaction) and answers the client the way PostgreSQL answers a
``pg_terminate_backend``: ``FATAL 57P01 terminating connection due to administrator command``,
then closes.  So the statement never ran, and the client sees a real transient failure.
``Faults.refuse(n)`` closes the next ``n`` new connections as soon as they are accepted.
``Faults.lose_reply(pattern, after=...)`` is the other kind of fault: the statement *is*
forwarded and runs to its end (the server's ``ReadyForQuery``), but its answer never reaches
the client, whose connection is then closed: a ``COMMIT`` that reached the server while the
client saw its connection drop (a lost acknowledgement).  Only a statement sent as a simple
``Query`` (asyncpg's ``execute`` without arguments, its transactions' ``COMMIT``) can lose its
answer; ``after`` may match either kind.

Several proxies may share one ``Faults`` (e.g. one port for a job's source, one for its
target), so a rule counts statements across all of them.  Test-only: no TLS, no auth of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["Faults", "LostReply", "PgProxy", "Rule"]

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104
_TERMINATED = b"terminating connection due to administrator command"


@dataclass(slots=True)
class Rule:
    """Kill the session carrying the ``nth`` statement that matches ``pattern`` (a regex)."""

    pattern: re.Pattern[str]
    nth: int = 1
    matched: int = 0
    fired: bool = False


@dataclass(slots=True)
class LostReply:
    """Lose the answer to the first statement matching ``pattern`` after ``after`` on a session.

    ``after`` must have matched an earlier statement of that session (None: any session).
    """

    pattern: re.Pattern[str]
    after: re.Pattern[str] | None = None
    fired: bool = False


@dataclass(slots=True)
class Faults:
    """The armed rules and every statement seen, shared by one or more proxies."""

    rules: list[Rule] = field(default_factory=list)
    lost: list[LostReply] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    kills: int = 0
    refusals: int = 0
    """Connections still to be refused: closed as soon as they are accepted."""

    def arm(self, pattern: str, nth: int = 1) -> Rule:
        """Kill the session of the ``nth`` statement matching ``pattern`` (``re.search``)."""
        rule = Rule(re.compile(pattern, re.IGNORECASE | re.DOTALL), nth)
        self.rules.append(rule)
        return rule

    def lose_reply(self, pattern: str, after: str | None = None) -> LostReply:
        """Run the first statement matching ``pattern``, then cut its session unanswered.

        Only on a session that sent a statement matching ``after`` earlier, when given.
        """
        flags = re.IGNORECASE | re.DOTALL
        rule = LostReply(re.compile(pattern, flags), re.compile(after, flags) if after else None)
        self.lost.append(rule)
        return rule

    def loses(self, sql: str, primed: set[int], *, query: bool = True) -> bool:
        """True when the answer to ``sql`` must be lost (counts it as a kill).

        ``primed``: the ``lost`` rules (by position) whose ``after`` this session has sent;
        updated here.  ``query``: ``sql`` came as a simple ``Query`` message, which runs to
        its ``ReadyForQuery`` by itself; a ``Parse`` (``query=False``) only primes ``after``:
        its statement runs at a later ``Execute`` and answers after a ``Sync``, so waiting
        for the end of it there would wait for ever, the client's socket and the server
        session held open.
        """
        for i, rule in enumerate(self.lost):
            if rule.fired:
                continue
            if query and (rule.after is None or i in primed) and rule.pattern.search(sql):
                rule.fired = True
                self.kills += 1
                return True
            if rule.after is not None and rule.after.search(sql):
                primed.add(i)
        return False

    def refuse(self, connections: int = 1) -> None:
        """Close the next ``connections`` new connections at once (a server that is not up)."""
        self.refusals += connections

    def take_refusal(self) -> bool:
        """True when this new connection must be refused (counts it)."""
        if self.refusals <= 0:
            return False
        self.refusals -= 1
        self.kills += 1
        return True

    def check(self, sql: str) -> bool:
        """Record ``sql``; True when a rule fires on it (that session must be killed)."""
        self.seen.append(sql)
        for rule in self.rules:
            if not rule.fired and rule.pattern.search(sql):
                rule.matched += 1
                if rule.matched >= rule.nth:
                    rule.fired = True
                    self.kills += 1
                    return True
        return False


def statement_of(kind: bytes, body: bytes) -> str | None:
    """The SQL text of a ``Query`` or ``Parse`` message body (None for other messages)."""
    if kind == b"Q":
        return body.split(b"\0", 1)[0].decode("utf-8", "replace")
    if kind == b"P":
        parts = body.split(b"\0", 2)
        return parts[1].decode("utf-8", "replace") if len(parts) > 1 else None
    return None


def terminated_message() -> bytes:
    """The ``ErrorResponse`` a backend sends when an administrator terminates it."""
    fields = b"".join(
        code + text + b"\0"
        for code, text in (
            (b"S", b"FATAL"),
            (b"V", b"FATAL"),
            (b"C", b"57P01"),
            (b"M", _TERMINATED),
        )
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


class PgProxy:
    """A proxy in front of the PostgreSQL server of ``dsn`` (use as an async context manager)."""

    def __init__(self, dsn: str, faults: Faults | None = None) -> None:
        """Relay to the server that ``dsn`` names (TCP host:port, or a ``?host=`` socket dir)."""
        self.dsn = dsn
        self.faults = faults or Faults()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query))
        self._socket_dir = query.get("host") if query.get("host", "").startswith("/") else None
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 5432

    @property
    def url(self) -> str:
        """``dsn`` with the host and port of this proxy."""
        parts = urlsplit(self.dsn)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")]
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))

    async def __aenter__(self) -> PgProxy:
        """Start listening on a free local port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop listening and cut every relayed connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._socket_dir is not None:
            return await asyncio.open_unix_connection(f"{self._socket_dir}/.s.PGSQL.{self._port}")
        return await asyncio.open_connection(self._host, self._port)

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        swriter: asyncio.StreamWriter | None = None
        back: asyncio.Task[None] | None = None
        try:
            if self.faults.take_refusal():
                return
            sreader, swriter = await self._upstream()
            if not await self._startup(creader, cwriter, swriter):
                return
            back = asyncio.create_task(_copy(sreader, cwriter))
            primed: set[int] = set()
            while True:
                head = await creader.readexactly(5)
                body = await creader.readexactly(struct.unpack("!i", head[1:])[0] - 4)
                sql = statement_of(head[:1], body)
                if sql is not None and self.faults.check(sql):
                    back.cancel()
                    swriter.close()
                    cwriter.write(terminated_message())
                    await cwriter.drain()
                    return
                if sql is not None and self.faults.loses(sql, primed, query=head[:1] == b"Q"):
                    back.cancel()  # the answer is never relayed
                    with contextlib.suppress(asyncio.CancelledError):
                        await back
                    swriter.write(head + body)
                    await swriter.drain()
                    await _until_ready(sreader)  # it ran to its end; then the client is cut
                    return
                swriter.write(head + body)
                await swriter.drain()
        except (OSError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # the proxy is closing: end this relay quietly
            return
        finally:
            if back is not None:
                back.cancel()
            for w in (swriter, cwriter):
                if w is not None:
                    w.close()
            self._tasks.discard(task)

    async def _startup(
        self,
        creader: asyncio.StreamReader,
        cwriter: asyncio.StreamWriter,
        swriter: asyncio.StreamWriter,
    ) -> bool:
        """Relay the untyped startup message, refusing TLS / GSS encryption requests."""
        while True:
            size = struct.unpack("!i", await creader.readexactly(4))[0]
            body = await creader.readexactly(size - 4)
            code = struct.unpack("!i", body[:4])[0] if len(body) >= 4 else 0
            if code in (_SSL_REQUEST, _GSS_REQUEST):
                cwriter.write(b"N")
                await cwriter.drain()
                continue
            swriter.write(struct.pack("!i", size) + body)
            await swriter.drain()
            return True


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Relay ``reader`` to ``writer``, closing it when the reader ends (not when cancelled)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    writer.close()


async def _until_ready(reader: asyncio.StreamReader) -> None:
    """Read the server's messages up to and including ``ReadyForQuery`` (``Z``), dropping them."""
    while True:
        head = await reader.readexactly(5)
        await reader.readexactly(struct.unpack("!i", head[1:])[0] - 4)
        if head[:1] == b"Z":
            return
