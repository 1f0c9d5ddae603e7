"""The pipelined connection of the registration scripts, against a real redis-server.

Replies are matched to calls by order only, so each test checks that every
caller gets its own reply: under concurrency, after an error reply, after a
cancelled caller, after Redis forgot the script, and across a Redis restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis_helpers import RedisServer

pytest.importorskip("redis", reason="redis-py is not installed (pip install 'lwm2m[redis]')")
pytest.importorskip("hiredis", reason="hiredis is not installed (pip install 'lwm2m[redis]')")

from redis.exceptions import RedisError

from lwm2m.stores.redis_pipeline import PipelinedScripts, open_pipeline

ECHO = "return {ARGV[1], tonumber(ARGV[2]) * 2}"
FAIL = "if ARGV[1] == 'bad' then return redis.error_reply('refused ' .. ARGV[1]) end return ARGV[1]"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _pipeline(client: Any) -> PipelinedScripts:
    pipeline = open_pipeline(client, RedisError)
    assert pipeline is not None
    return pipeline


async def test_concurrent_calls_each_get_their_own_reply(client: Any) -> None:
    pipeline = _pipeline(client)
    echo = client.register_script(ECHO)
    try:
        replies = await asyncio.gather(
            *(pipeline.evalsha(echo, [], [f"n{i}", str(i)]) for i in range(500))
        )
        assert replies == [[f"n{i}".encode(), 2 * i] for i in range(500)]
    finally:
        await pipeline.close()


async def test_an_error_reply_fails_its_call_only(client: Any) -> None:
    pipeline = _pipeline(client)
    script = client.register_script(FAIL)
    try:
        calls = [pipeline.evalsha(script, [], [arg]) for arg in ("a", "bad", "c")]
        first, refused, third = await asyncio.gather(*calls, return_exceptions=True)
        assert (first, third) == (b"a", b"c")
        assert isinstance(refused, RedisError) and "refused bad" in str(refused)
    finally:
        await pipeline.close()


async def test_a_cancelled_call_leaves_the_next_ones_their_replies(client: Any) -> None:
    pipeline = _pipeline(client)
    echo = client.register_script(ECHO)
    try:
        early = asyncio.ensure_future(pipeline.evalsha(echo, [], ["early", "1"]))
        later = asyncio.ensure_future(pipeline.evalsha(echo, [], ["later", "2"]))
        await asyncio.sleep(0)  # both queued, not answered yet
        early.cancel()
        assert await later == [b"later", 4]
        assert await pipeline.evalsha(echo, [], ["after", "3"]) == [b"after", 6]
    finally:
        await pipeline.close()


async def test_a_script_redis_forgot_is_sent_in_full(client: Any) -> None:
    pipeline = _pipeline(client)
    echo = client.register_script(ECHO)
    try:
        assert await pipeline.evalsha(echo, [], ["x", "1"]) == [b"x", 2]
        await client.script_flush()
        assert await pipeline.evalsha(echo, [], ["y", "2"]) == [b"y", 4]
        assert (await client.script_exists(echo.sha)) == [True]  # loaded again by EVAL
    finally:
        await pipeline.close()


async def test_a_redis_restart_fails_the_calls_in_flight_and_the_next_connect_again(
    redis_server: RedisServer,
) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_server.url)
    pipeline = _pipeline(client)
    slow = client.register_script("local t = redis.call('TIME') return ARGV[1]")
    try:
        assert await pipeline.evalsha(slow, [], ["before"]) == b"before"
        redis_server.restart()
        outcome: object = None
        async with asyncio.timeout(20):
            while outcome != b"after":
                try:
                    outcome = await pipeline.evalsha(slow, [], ["after"])
                except (OSError, RedisError) as exc:  # the restart: refused, then back
                    outcome = exc
                    await asyncio.sleep(0.1)
    finally:
        with contextlib.suppress(Exception):
            await pipeline.close()
        await client.aclose()


async def test_a_closed_pipeline_refuses_calls(client: Any) -> None:
    pipeline = _pipeline(client)
    echo = client.register_script(ECHO)
    assert await pipeline.evalsha(echo, [], ["x", "1"]) == [b"x", 2]
    await pipeline.close()
    with pytest.raises(ConnectionError):
        await pipeline.evalsha(echo, [], ["y", "1"])


def _moved(reg: Any, port: int) -> Any:
    """``reg`` after an Update from another port (its number as the time)."""
    return reg.renewed(
        address=("127.0.0.1", port),
        transport="udp",
        updated_at=float(port),
        lifetime_s=60,
        sms_number=None,
        binding="U",
        queue_mode=False,
        links=reg.links,
    )


async def test_a_change_older_than_the_nodes_own_write_does_not_evict_it(
    redis_url: str, tmp_path: Any
) -> None:
    """Two nodes' Updates of one registration race: each node hears the other's change,
    and the node whose write Redis ran last keeps the registration (write numbers)."""
    from lwm2m.stores import open_stores
    from lwm2m.stores.records import Registration

    a = await open_stores(redis_url, tmp_path / "a", node_id="a")
    b = await open_stores(redis_url, tmp_path / "b", node_id="b")
    try:
        reg = Registration(
            id="race1",
            endpoint="racer",
            address=("127.0.0.1", 1),
            lifetime_s=60,
            registered_at=1.0,
            updated_at=1.0,
        )
        await a.registrations.add(reg)
        await b.registrations.update(_moved(reg, 2))
        await a.registrations.update(_moved(reg, 3))
        mine = a.registrations._write_numbers["race1"]
        a.registrations.refresh("race1", "b", mine - 1)  # b's write, before a's
        assert a.registrations.get("race1") is not None
        a.registrations.refresh("race1", "b", mine + 1)  # a write after a's
        assert a.registrations.get("race1") is None
        assert await a.registrations.fetch("race1") is not None  # still in Redis
        await a.registrations.update(_moved(reg, 4))
        a.registrations.refresh("race1", "b")  # a message without a number: as before
        assert a.registrations.get("race1") is None
    finally:
        await a.close()
        await b.close()
