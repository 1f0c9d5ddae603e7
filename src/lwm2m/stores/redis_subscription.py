"""A Redis pub/sub subscription that outlives a Redis restart.

Every cluster piece that listens to Redis (the store's change feed, forwarded
REST requests, the event relay) must keep listening when Redis restarts or the
connection drops, and must not act on a view built from messages it may have
missed. So they share one loop: subscribe, deliver, and when the connection
goes, say so once at ERROR, let the owner drop what it derived from the feed,
subscribe again with backoff, let the owner rebuild (a failed rebuild is one
more attempt), and say once at INFO that it is back.

Pub/sub delivers nothing that was published while a subscriber was away: the
owner's ``on_back`` is where it re-reads what it needs.

Every node hears every change and event of the cluster, one message per
write, so the read side is on every request's path. redis-py's ``listen()``
costs several coroutines, a health check and a retry wrapper per message;
with hiredis (a dependency of the ``redis`` extra) this module reads the
subscribed connection itself instead: one read per chunk of the socket, every
complete message in it parsed by hiredis and handed over in order, and a
handler that has nothing to wait for returns None and costs no coroutine.
redis-py still makes the connection (address, AUTH, TLS) and sends SUBSCRIBE.
Without hiredis, or with a redis-py whose connection does not expose its
stream, the feed goes through ``listen()`` as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from lwm2m.coap.tasks import wait_then_cancel
from lwm2m.stores.base import StoreError
from lwm2m.stores.redis_raw import RawConnection, open_raw

logger = logging.getLogger(__name__)

#: Seconds between two attempts to subscribe again (the last one repeats).
RESUBSCRIBE_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

#: Called with the channel and the raw data, in the order Redis published them; returns
#: None when done, else what to await before the next message is delivered.
MessageHandler = Callable[[str, bytes], Awaitable[None] | None]


class _RawFeed:
    """A subscribed connection read directly (:mod:`redis_raw`): chunks in, messages out."""

    def __init__(self, raw: RawConnection) -> None:
        self._raw = raw

    @classmethod
    async def open(cls, redis: Any, channels: Sequence[str]) -> _RawFeed | None:
        """None when this redis-py (or the lack of hiredis) does not allow it."""
        raw = await open_raw(redis.client)
        if raw is None:
            return None
        try:
            await raw.conn.send_command("SUBSCRIBE", *channels)
        except BaseException:
            await raw.close()
            raise
        return cls(raw)

    async def read(self) -> list[tuple[bytes, bytes]]:
        """The messages of the next chunk (none when it held only confirmations or part
        of a message); raises :class:`_Lost` when the connection ends."""
        out: list[tuple[bytes, bytes]] = []
        try:
            replies = await self._raw.replies()
        except ConnectionError:
            raise _Lost("Redis closed the subscription") from None
        for reply in replies:
            if isinstance(reply, Exception):
                raise _Lost(f"Redis: {reply}")
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                out.append((reply[1], reply[2]))
        return out

    async def aclose(self) -> None:
        await self._raw.close()


class _Lost(Exception):
    """The subscription ended under the listener (closed by Redis or the client)."""


class Subscription:
    """Channels of one connection, delivered in the order Redis published them."""

    def __init__(
        self,
        redis: Any,
        channels: Sequence[str],
        on_message: MessageHandler,
        *,
        name: str,
        on_lost: Callable[[], None] | None = None,
        on_back: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``redis`` is a :class:`~lwm2m.stores.redis.RedisConnection`; ``name`` is what
        the log lines call this feed. ``on_message`` gets the channel and the raw data;
        what it raises is logged and the next message is delivered."""
        self._redis = redis
        self._channels = list(channels)
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_back = on_back
        self.name = name
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        #: Set while subscribed; cleared from the moment the connection is found lost.
        self.up = asyncio.Event()

    async def start(self) -> None:
        """Subscribe; messages published after this returns are delivered.

        The first subscription fails loudly (:class:`StoreError`): a node
        that cannot reach Redis at start should not start.
        """
        self._pubsub = await self._subscribe()
        self.up.set()
        self._listener = asyncio.create_task(self._listen(), name=f"redis-{self.name}")

    async def close(self) -> None:
        """Stop listening; the owner's handlers are not called any more."""
        # Closing the subscription ends the listener's read: redis-py's listen() can
        # absorb a plain cancel while it reads, so the cancel is only the fallback.
        self._closing = True
        self.up.clear()
        if self._pubsub is not None:
            with contextlib.suppress(OSError, self._redis.error):
                await self._pubsub.aclose()
        listener = self._listener
        if listener is not None:
            await wait_then_cancel([listener], 1.0)
            if not listener.cancelled():
                listener.result()  # a listener's failure is the close's, as it was

    async def _subscribe(self) -> Any:
        try:
            raw = await _RawFeed.open(self._redis, self._channels)
        except (OSError, self._redis.error) as exc:
            raise StoreError(f"Redis: {exc}") from None
        if raw is not None:
            return raw
        pubsub = self._redis.client.pubsub()
        try:
            await pubsub.subscribe(*self._channels)
        except (OSError, self._redis.error) as exc:
            with contextlib.suppress(OSError, self._redis.error):
                await pubsub.aclose()
            raise StoreError(f"Redis: {exc}") from None
        return pubsub

    async def _listen(self) -> None:
        while not self._closing:
            try:
                await self._follow()
            except (OSError, self._redis.error, _Lost) as exc:
                if self._closing:
                    return
                self.up.clear()
                logger.error("Redis %s feed lost (%s); subscribing again", self.name, exc)
            if self._closing:
                return
            if self._on_lost is not None:
                self._on_lost()
            await self._resubscribe()

    async def _follow(self) -> None:
        feed = self._pubsub
        assert feed is not None
        if isinstance(feed, _RawFeed):
            while not self._closing:
                for channel, data in await feed.read():
                    pending = self._call(channel, data)
                    if pending is not None:
                        await self._wait(pending, data)
            return
        async for message in feed.listen():
            if message.get("type") != "message":
                continue
            channel = message.get("channel")
            data = message.get("data")
            raw = data if isinstance(data, bytes) else str(data).encode()
            pending = self._call(
                channel if isinstance(channel, bytes) else str(channel).encode(), raw
            )
            if pending is not None:
                await self._wait(pending, raw)
        if not self._closing:
            raise _Lost("the subscription ended")

    def _call(self, channel: bytes, data: bytes) -> Awaitable[None] | None:
        try:
            return self._on_message(channel.decode(errors="replace"), data)
        except Exception:
            # A handler's bug or a message it did not foresee must not end the feed.
            logger.exception("Redis %s message %r not handled", self.name, data)
            return None

    async def _wait(self, pending: Awaitable[None], data: bytes) -> None:
        try:
            await pending
        except Exception:
            logger.exception("Redis %s message %r not handled", self.name, data)

    async def _resubscribe(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(OSError, self._redis.error):
                await self._pubsub.aclose()
            self._pubsub = None
        attempt = 0
        while not self._closing:
            await asyncio.sleep(RESUBSCRIBE_BACKOFF_S[min(attempt, len(RESUBSCRIBE_BACKOFF_S) - 1)])
            attempt += 1
            try:
                pubsub = await self._subscribe()
            except StoreError:
                continue
            if self._on_back is not None:
                try:
                    await self._on_back()
                except StoreError as exc:
                    logger.debug(
                        "Redis %s: rebuilding after the feed came back failed: %s", self.name, exc
                    )
                    with contextlib.suppress(OSError, self._redis.error):
                        await pubsub.aclose()
                    continue
            self._pubsub = pubsub
            self.up.set()
            logger.info("Redis %s feed back after %d attempt(s)", self.name, attempt)
            return
