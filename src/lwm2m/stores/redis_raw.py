"""A Redis connection this package reads itself, for the paths every request takes.

Why: redis-py spends several coroutines, timeout scopes and a retry wrapper per
reply; the pub/sub feeds (:mod:`redis_subscription`) and the pipelined scripts
(:mod:`redis_pipeline`) instead read whole chunks of the socket and let hiredis
parse every reply in them. redis-py still opens the connection (address, AUTH,
TLS, database): its connection object is kept for that and for the disconnect,
its streams are taken over. Without hiredis, or with a redis-py whose connection
does not expose its streams, :func:`open_raw` returns None and the callers keep
redis-py.
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from hiredis import Reader as HiredisReader
    from hiredis import pack_command
except ImportError:  # pragma: no cover - hiredis comes with the redis extra
    HiredisReader = None  # type: ignore[assignment,misc]
    pack_command = None  # type: ignore[assignment]

#: Bytes asked of the socket per read: a burst of replies arrives as one chunk.
READ_CHUNK = 1 << 16


class RawConnection:
    """redis-py's connection with its streams taken over and a hiredis parser of its own."""

    def __init__(
        self, conn: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.conn = conn
        self.reader = reader
        self.writer = writer
        self._parser = HiredisReader()

    async def replies(self) -> list[Any]:
        """The complete replies of the next chunk, in order (none when it held only part of
        one); an error reply is an Exception in the list. ConnectionError when Redis closed."""
        chunk = await self.reader.read(READ_CHUNK)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        parser = self._parser
        parser.feed(chunk)
        out: list[Any] = []
        while (reply := parser.gets()) is not False:
            out.append(reply)
        return out

    async def close(self) -> None:
        await self.conn.disconnect()


def pack(command: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol (hiredis packs it)."""
    packed: bytes = pack_command(command)
    return packed


def available() -> bool:
    """Whether hiredis is there to parse and pack."""
    return HiredisReader is not None and pack_command is not None


async def open_raw(client: Any) -> RawConnection | None:
    """A new connection of redis-py ``client``'s pool settings (not taken from the pool);
    None when hiredis is absent or the connection does not expose its streams."""
    if not available():
        return None
    pool = client.connection_pool
    conn = pool.connection_class(**pool.connection_kwargs)
    await conn.connect()
    reader = getattr(conn, "_reader", None)
    writer = getattr(conn, "_writer", None)
    if not isinstance(reader, asyncio.StreamReader) or writer is None:
        await conn.disconnect()
        return None
    return RawConnection(conn, reader, writer)
