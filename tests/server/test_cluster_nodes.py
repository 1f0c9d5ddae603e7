"""Node heartbeats in Redis: alive while beating, gone after the TTL or at a clean stop, and
how many registrations each node owns (real redis-server, real UDP, nodes in this process)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path as FsPath

from server_helpers import register_message

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.cluster_events import ClusterEvents, server_lane
from lwm2m.server.cluster_nodes import ClusterNodes, NodeState
from lwm2m.stores import open_stores
from lwm2m.stores.redis import RedisStores

#: Short beats, so that a missed key expires within a test (TTL = 3 intervals).
INTERVAL_S = 0.2


@dataclass
class Node:
    server: LwM2MServer
    stores: RedisStores
    nodes: ClusterNodes
    relay: ClusterEvents


@asynccontextmanager
async def cluster_node(
    url: str, tmp_path: FsPath, node_id: str, *, clean: bool = True, prune_after_s: float = 3600
) -> AsyncIterator[Node]:
    """A server node with its heartbeat and event relay; ``clean=False`` leaves like a crash."""
    stores = await open_stores(url, tmp_path / node_id, node_id=node_id)
    assert isinstance(stores, RedisStores)
    server = LwM2MServer(stores, config=ServerConfig(coap_port=0))
    await server.start()
    relay = ClusterEvents(stores.redis, node_id, [server_lane(server.events)])
    nodes = ClusterNodes.of_server(
        server, node_id, stores.redis, interval_s=INTERVAL_S, prune_after_s=prune_after_s
    )
    await relay.start()
    await nodes.start()
    try:
        yield Node(server, stores, nodes, relay)
    finally:
        await nodes.stop(clean=clean)
        await relay.stop()
        await server.stop()
        await stores.close()


async def until(check: object, timeout: float = 5.0) -> None:
    """Wait, bounded, until the async predicate holds (a TTL expiring is the event here)."""
    async with asyncio.timeout(timeout):
        while not await check():  # type: ignore[operator]
            await asyncio.sleep(INTERVAL_S / 4)


def by_id(states: list[NodeState]) -> dict[str, NodeState]:
    return {s.id: s for s in states}


async def test_beating_nodes_are_listed_alive_with_their_state(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with (
        cluster_node(redis_url, tmp_path, "a") as a,
        cluster_node(redis_url, tmp_path, "b") as b,
    ):
        a.server.http_address = ("127.0.0.1", 18080)
        await a.nodes.heartbeat()
        await b.nodes.heartbeat()
        states = by_id(await b.nodes.list())
        assert sorted(states) == ["a", "b"]
        assert all(s.alive for s in states.values())
        host, port = a.server.coap_address[:2]
        assert states["a"].coap == f"{host}:{port}"
        assert states["a"].http == "http://127.0.0.1:18080"
        assert states["a"].started == a.nodes.started
        assert states["a"].heartbeat == a.nodes.last_heartbeat
        assert not await a.nodes.is_alive("nobody")
        # The key follows the contract: JSON with a TTL of three intervals.
        raw = await a.stores.redis.client.get("lwm2m:node:a")
        doc = json.loads(raw)
        assert set(doc) == {"id", "http", "coap", "started", "heartbeat", "owned"}
        ttl_ms = await a.stores.redis.client.pttl("lwm2m:node:a")
        assert 0 < ttl_ms <= 3 * INTERVAL_S * 1000


async def test_a_node_that_stops_beating_is_gone_after_the_ttl_and_pruned_later(
    redis_url: str, tmp_path: FsPath
) -> None:
    # b's own loop does not prune during the test (its first look is a minute away).
    async with cluster_node(redis_url, tmp_path, "b") as b:
        async with cluster_node(redis_url, tmp_path, "a", clean=False) as a:
            await until(lambda: b.nodes.is_alive("a"))
            last = a.nodes.last_heartbeat
        # No DEL: "a" stays alive until its key expires by itself.
        await until(lambda: _not(b.nodes.is_alive("a")))
        gone = by_id(await b.nodes.list())["a"]
        assert not gone.alive and gone.heartbeat is not None and last is not None
        assert gone.heartbeat >= last
        assert by_id(await b.nodes.list())["b"].alive
        # Gone for less than prune_after_s: kept; for longer: forgotten.
        assert await b.nodes.prune() == 0
        b.nodes.prune_after_s = 0.0
        assert await b.nodes.prune() == 1
        assert [s.id for s in await b.nodes.list()] == ["b"]


async def test_the_beat_loop_forgets_gone_nodes_by_itself(redis_url: str, tmp_path: FsPath) -> None:
    async with cluster_node(redis_url, tmp_path, "b", prune_after_s=0.0) as b:
        async with cluster_node(redis_url, tmp_path, "a", clean=False):
            await until(lambda: b.nodes.is_alive("a"))
        await until(lambda: _listed_only(b, "b"))


async def _listed_only(node: Node, node_id: str) -> bool:
    return [s.id for s in await node.nodes.list()] == [node_id]


async def test_a_clean_stop_deletes_the_key_at_once(redis_url: str, tmp_path: FsPath) -> None:
    async with cluster_node(redis_url, tmp_path, "a") as a:
        async with cluster_node(redis_url, tmp_path, "b") as b:
            await b.nodes.heartbeat()
            assert await a.nodes.is_alive("b")
        assert not await a.nodes.is_alive("b")
        state = by_id(await a.nodes.list())["b"]
        assert not state.alive and state.heartbeat is not None


async def test_owned_registrations_follow_registers_updates_and_deregisters(
    redis_url: str, tmp_path: FsPath
) -> None:
    devices = [await Endpoint.create("127.0.0.1", 0) for _ in range(4)]

    async def owned(a: Node, b: Node) -> tuple[int | None, int | None]:
        await a.nodes.heartbeat()
        await b.nodes.heartbeat()
        states = by_id(await b.nodes.list())
        assert (states["a"].owned, states["b"].owned) == (a.nodes.owned, b.nodes.owned)
        return a.nodes.owned, b.nodes.owned

    try:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(cluster_node(redis_url, tmp_path, "a"))
            b = await stack.enter_async_context(cluster_node(redis_url, tmp_path, "b"))
            assert await owned(a, b) == (0, 0)
            locations = []
            for i, device in enumerate(devices):
                target = a if i < 3 else b
                reply = await device.request(
                    register_message((f"ep=own-{i}", "lt=3600")),
                    target.server.coap_address,
                    timeout=5,
                )
                assert reply.code == Code.CREATED
                locations.append(reply.location_path)
            assert await owned(a, b) == (3, 1)
            # own-0 updates through b: b owns it now.
            reply = await devices[0].request(
                Message(Code.POST, uri_path=locations[0]), b.server.coap_address, timeout=5
            )
            assert reply.code == Code.CHANGED
            assert await owned(a, b) == (2, 2)
            # own-1 de-registers through a.
            reply = await devices[1].request(
                Message(Code.DELETE, uri_path=locations[1]), a.server.coap_address, timeout=5
            )
            assert reply.code == Code.DELETED
            assert await owned(a, b) == (1, 2)
    finally:
        for device in devices:
            await device.close()


async def test_a_malformed_node_state_shows_as_unknown_fields(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with cluster_node(redis_url, tmp_path, "a") as a:
        client = a.stores.redis.client
        await client.sadd("lwm2m:nodes", "odd", "worse")
        await client.set("lwm2m:node:odd", '{"owned": "many", "http": 5, "heartbeat": true}')
        await client.set("lwm2m:node:worse", "[not json")
        states = by_id(await a.nodes.list())
        assert states["odd"] == NodeState("odd", True, None, None, None, None, None)
        assert states["worse"] == NodeState("worse", True, None, None, None, None, None)


async def _not(value: object) -> bool:
    return not await value  # type: ignore[misc]
