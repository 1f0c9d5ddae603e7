"""The shared pub/sub loop: order, handlers that wait, bad handlers, both read paths, restarts.

Against a real redis-server. With hiredis (the ``redis`` extra) the loop reads
the subscribed connection itself; the same tests run with that path switched
off, through redis-py's ``listen()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from redis_helpers import RedisServer

from lwm2m.stores import redis_raw
from lwm2m.stores.redis_subscription import Subscription, _RawFeed

pytest.importorskip("redis", reason="redis-py is not installed (pip install 'lwm2m[redis]')")


@pytest.fixture(params=["raw", "listen"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "raw":
        pytest.importorskip(
            "hiredis", reason="hiredis is not installed (pip install 'lwm2m[redis]')"
        )
    else:
        monkeypatch.setattr(redis_raw, "HiredisReader", None)
    mode: str = request.param
    return mode


@pytest.fixture
async def connection(redis_url: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from lwm2m.stores.redis import RedisConnection

    client = aioredis.Redis.from_url(redis_url)
    yield RedisConnection(client, "t:", RedisError)
    await client.aclose()


async def test_messages_arrive_in_order_through_waiting_and_failing_handlers(
    connection: Any, path: str
) -> None:
    got: list[bytes] = []

    async def slow(data: bytes) -> None:
        await asyncio.sleep(0.01)
        got.append(data)

    def on_message(channel: str, data: bytes) -> Awaitable[None] | None:
        assert channel in ("t:a", "t:b")
        if data.startswith(b"boom"):
            raise RuntimeError("a handler's bug")
        if data.startswith(b"slow"):
            return slow(data)
        got.append(data)
        return None

    feed = Subscription(connection, ["t:a", "t:b"], on_message, name="test")
    await feed.start()
    try:
        assert isinstance(feed._pubsub, _RawFeed) == (path == "raw")
        sent = []
        pipe = connection.client.pipeline(transaction=False)
        for n in range(2000):  # many per socket read: the raw path parses them in one go
            data = [b"m%d" % n, b"slow%d" % n, b"boom%d" % n][n % 3] if n % 97 == 0 else b"m%d" % n
            pipe.publish("t:a" if n % 2 else "t:b", data)
            if not data.startswith(b"boom"):
                sent.append(data)
        await pipe.execute()
        async with asyncio.timeout(10):
            while len(got) < len(sent):
                await asyncio.sleep(0.01)
        assert got == sent
    finally:
        await feed.close()


async def test_the_feed_comes_back_after_redis_restarts(
    redis_server: RedisServer, path: str
) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from lwm2m.stores.redis import RedisConnection

    client = aioredis.Redis.from_url(redis_server.url)
    connection = RedisConnection(client, "t:", RedisError)
    got: list[bytes] = []
    lost: list[str] = []

    async def back() -> None:
        lost.append("back")

    feed = Subscription(
        connection,
        ["t:a"],
        lambda channel, data: got.append(data),
        name="test",
        on_lost=lambda: lost.append("lost"),
        on_back=back,
    )
    await feed.start()
    try:
        redis_server.restart()
        async with asyncio.timeout(20):
            while True:
                with contextlib.suppress(OSError, RedisError):  # not back yet
                    await client.publish("t:a", b"after")
                if got:
                    break
                await asyncio.sleep(0.1)
        assert got[0] == b"after" and lost[:2] == ["lost", "back"]
    finally:
        await feed.close()
        await client.aclose()


async def test_a_cancelled_close_still_ends_its_listener_then_raises(connection: Any) -> None:
    """A close bounded by a shutdown's deadline: its cancel comes while it waits for the
    listener (here one that does not end by itself); the listener must not outlive it."""
    feed = Subscription(connection, ["t:a"], lambda channel, data: None, name="test")
    await feed.start()
    assert feed._listener is not None
    feed._listener.cancel()  # stand in a listener that ignores the closed connection
    feed._listener = asyncio.ensure_future(asyncio.Event().wait())
    stuck = feed._listener
    closing = asyncio.ensure_future(feed.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # within its 1 s for the listener
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert stuck.cancelled()
