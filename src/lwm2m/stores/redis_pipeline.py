"""One pipelined Redis connection for the scripts on the registration path.

Why: each Register, Update and De-register of a cluster node runs one Lua
script, and through redis-py that was about a third of a node's CPU per
request: a connection taken from the pool and given back, a timeout scope
around the send and another around the read, a retry wrapper, a coroutine per
layer. Here the scripts of one loop turn are packed by hiredis, written to one
connection in one go, and their replies, which Redis sends in the order it ran
the commands, are parsed by hiredis and handed to the callers' futures in that
order; no pool, no per-command timeout scope.

redis-py still makes the connection (address, AUTH, TLS, database), as for the
pub/sub feeds. When the connection fails, every call waiting on it fails with
:class:`ConnectionError` (the store turns it into ``StoreError`` and the
request is answered 5.00, as before) and the next call connects again; a call
is never sent twice, since a script may have run before the connection broke.
A script unknown to Redis (restarted without persistence, ``SCRIPT FLUSH``) is
sent again in full with EVAL, which also loads it for the next EVALSHA.

Only for short commands: a reply of megabytes would hold back every reply
behind it. Without hiredis, or with a redis-py whose connection does not expose
its streams, :func:`open_pipeline` returns None and the store keeps redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

try:
    from hiredis import Reader as HiredisReader
    from hiredis import pack_command
except ImportError:  # pragma: no cover - hiredis comes with the redis extra
    HiredisReader = None  # type: ignore[assignment,misc]
    pack_command = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: Bytes asked of the socket per read.
READ_CHUNK = 1 << 16


class PipelinedScripts:
    """Scripts over one connection, replies matched to calls in order."""

    def __init__(self, client: Any, error: type[Exception]) -> None:
        self._client = client
        self._error = error
        self._conn: Any = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock | None = None
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._closing: set[asyncio.Task[None]] = set()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._closed = False

    async def evalsha(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """What ``script(keys=keys, args=args)`` of redis-py returns, raw (bytes, ints, lists)."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self._call(command)
        except self._error as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Unknown to this Redis: the source once, which loads it for the next EVALSHA.
        return await self._call(("EVAL", script.script, len(keys), *keys, *args))

    async def close(self) -> None:
        self._closed = True
        self._drop(ConnectionError("the Redis pipeline is closed"))

    # Private

    async def _call(self, command: tuple[Any, ...]) -> Any:
        if self._writer is None:
            await self._connect()
        writer = self._writer
        if writer is None:
            raise ConnectionError("Redis is not connected")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append(future)
        self._out.append(pack_command(command))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        writer = self._writer
        if not out or writer is None:
            return
        try:
            writer.write(b"".join(out))
        except (OSError, RuntimeError) as exc:
            self._drop(ConnectionError(f"Redis: {exc}"))

    async def _connect(self) -> None:
        if self._closed:
            raise ConnectionError("the Redis pipeline is closed")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None:
                return
            pool = self._client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            await conn.connect()
            reader = getattr(conn, "_reader", None)
            writer = getattr(conn, "_writer", None)
            if not isinstance(reader, asyncio.StreamReader) or writer is None:
                await conn.disconnect()
                raise ConnectionError("this redis-py does not expose its connection's streams")
            self._conn = conn
            self._writer = writer
            self._reader_task = asyncio.get_running_loop().create_task(
                self._read(reader, writer), name="redis pipeline"
            )

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = HiredisReader()
        try:
            while True:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    raise ConnectionError("Redis closed the connection")
                parser.feed(chunk)
                while (reply := parser.gets()) is not False:
                    if not self._waiting:
                        raise ConnectionError("Redis answered a command nobody sent")
                    future = self._waiting.popleft()
                    if future.done():
                        continue  # its caller was cancelled; the reply is still its own
                    if isinstance(reply, Exception):
                        future.set_exception(self._error(str(reply)))
                    else:
                        future.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket, or bytes hiredis cannot parse: start over
            if self._writer is writer:
                self._drop(ConnectionError(f"Redis: {exc}"))

    def _drop(self, error: Exception) -> None:
        """The connection is gone: every waiting call fails; the next call connects again."""
        conn, self._conn = self._conn, None
        self._writer = None
        self._out = []
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(error)
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if conn is not None:
            closing = asyncio.get_running_loop().create_task(self._disconnect(conn))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    @staticmethod
    async def _disconnect(conn: Any) -> None:
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)


def open_pipeline(client: Any, error: type[Exception]) -> PipelinedScripts | None:
    """A pipeline for ``client`` (redis-py), or None when hiredis is absent."""
    if HiredisReader is None or pack_command is None:
        return None
    return PipelinedScripts(client, error)
