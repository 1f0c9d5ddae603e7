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
from collections import deque
from collections.abc import Sequence
from typing import Any

from lwm2m.stores.redis_raw import RawConnection, available, open_raw, pack


class PipelinedScripts:
    """Scripts over one connection, replies matched to calls in order."""

    def __init__(self, client: Any, error: type[Exception]) -> None:
        self._client = client
        self._error = error
        self._raw: RawConnection | None = None
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
        if self._raw is None:
            await self._connect()
        if self._raw is None:
            raise ConnectionError("Redis is not connected")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append(future)
        self._out.append(pack(command))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        raw = self._raw
        if not out or raw is None:
            return
        try:
            raw.writer.write(b"".join(out))
        except (OSError, RuntimeError) as exc:
            self._drop(ConnectionError(f"Redis: {exc}"))

    async def _connect(self) -> None:
        if self._closed:
            raise ConnectionError("the Redis pipeline is closed")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._raw is not None:
                return
            raw = await open_raw(self._client)
            if raw is None:
                raise ConnectionError("this redis-py does not expose its connection's streams")
            self._raw = raw
            self._reader_task = asyncio.get_running_loop().create_task(
                self._read(raw), name="redis pipeline"
            )

    async def _read(self, raw: RawConnection) -> None:
        try:
            while True:
                for reply in await raw.replies():
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
            if self._raw is raw:
                self._drop(ConnectionError(f"Redis: {exc}"))

    def _drop(self, error: Exception) -> None:
        """The connection is gone: every waiting call fails; the next call connects again."""
        raw, self._raw = self._raw, None
        self._out = []
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(error)
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if raw is not None:
            closing = asyncio.get_running_loop().create_task(self._disconnect(raw))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    @staticmethod
    async def _disconnect(raw: RawConnection) -> None:
        with contextlib.suppress(Exception):
            await raw.conn.disconnect(nowait=True)


def open_pipeline(client: Any, error: type[Exception]) -> PipelinedScripts | None:
    """A pipeline for ``client`` (redis-py), or None when hiredis is absent."""
    if not available():
        return None
    return PipelinedScripts(client, error)
