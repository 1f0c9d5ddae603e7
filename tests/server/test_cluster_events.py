"""Every event to every node, once: the relay over Redis between three server nodes
(real redis-server, real UDP devices, nodes in this process)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path as FsPath

import pytest
from cluster_devices import TEXT, Battery
from redis_helpers import RedisServer
from server_helpers import register_message
from test_cluster_nodes import Node, cluster_node

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.server.cluster_event_codec import event_to_json
from lwm2m.server.events import (
    AwakeEvent,
    NotificationEvent,
    ServerEvent,
    Subscription,
)


async def drain_until_fences(
    events: Subscription[ServerEvent], fences: set[str]
) -> list[ServerEvent]:
    """Every event until each fence (an AWAKE of one of ``fences``) has come; fences left out."""
    seen = []
    waiting = set(fences)
    while waiting:
        event = await events.get(timeout=5)
        if isinstance(event, AwakeEvent) and event.endpoint in waiting:
            waiting.discard(event.endpoint)
            continue
        seen.append(event)
    return seen


def kinds(events: list[ServerEvent]) -> Counter[tuple[str, str | None]]:
    return Counter((e.type.name, e.origin) for e in events)


async def test_each_event_reaches_every_node_exactly_once(redis_url: str, tmp_path: FsPath) -> None:
    battery = Battery()
    device = await Endpoint.create("127.0.0.1", 0, handler=battery.handle)
    other = await Endpoint.create("127.0.0.1", 0)
    try:
        async with AsyncExitStack() as stack:
            nodes: dict[str, Node] = {}
            subs: dict[str, Subscription[ServerEvent]] = {}
            for name in "abc":
                nodes[name] = await stack.enter_async_context(
                    cluster_node(redis_url, tmp_path, name)
                )
            for name, node in nodes.items():
                subs[name] = stack.enter_context(node.server.events.subscribe())
            a, b = nodes["a"], nodes["b"]
            reply = await device.request(
                register_message(("ep=bat", "lt=3600"), b"</3/0>"), a.server.coap_address, timeout=5
            )
            assert reply.code == Code.CREATED
            await a.server.observe("bat", "/3/0/9", timeout=5)
            (observation,) = battery.observations
            for value in (b"43", b"44", b"45"):
                await observation.notify(
                    Message(Code.CONTENT, payload=value, content_format=TEXT), confirmable=True
                )
            upd = await device.request(
                Message(Code.POST, uri_path=reply.location_path), a.server.coap_address, timeout=5
            )
            assert upd.code == Code.CHANGED
            # The other way: a device registering on b is seen by a and c.
            reply_b = await other.request(
                register_message(("ep=other", "lt=3600")), b.server.coap_address, timeout=5
            )
            assert reply_b.code == Code.CREATED
            gone = await device.request(
                Message(Code.DELETE, uri_path=reply.location_path), a.server.coap_address, timeout=5
            )
            assert gone.code == Code.DELETED
            # Fences: one event from each relaying node, the last of its events; Redis keeps
            # one publisher's order, so everything before it has arrived (or never will).
            a.server.events.publish(AwakeEvent("fence-a", 0.0, "-"))
            b.server.events.publish(AwakeEvent("fence-b", 0.0, "-"))
            seen = {
                name: await drain_until_fences(sub, {"fence-a", "fence-b"})
                for name, sub in subs.items()
            }

            on_a = kinds([e for e in seen["a"] if e.endpoint == "bat"])
            assert on_a == Counter(
                {
                    ("REGISTRATION", None): 1,
                    ("NOTIFICATION", None): 3,
                    ("UPDATED", None): 1,
                    ("DEREGISTRATION", None): 1,
                }
            )
            for name in "bc":
                bat = [e for e in seen[name] if e.endpoint == "bat"]
                assert kinds(bat) == Counter(
                    {
                        ("REGISTRATION", "a"): 1,
                        ("NOTIFICATION", "a"): 3,
                        ("UPDATED", "a"): 1,
                        ("DEREGISTRATION", "a"): 1,
                    }
                ), name
                # In a's order, and equal to what a published.
                assert bat == [e for e in seen["a"] if e.endpoint == "bat"]
                notes = [e for e in bat if isinstance(e, NotificationEvent)]
                assert [n.content.value for n in notes] == [43, 44, 45]  # type: ignore[union-attr]
            for name in "ac":
                others = [e for e in seen[name] if e.endpoint == "other"]
                assert kinds(others) == Counter({("REGISTRATION", "b"): 1}), name
            assert kinds([e for e in seen["b"] if e.endpoint == "other"]) == Counter(
                {("REGISTRATION", None): 1}
            )
            assert a.relay.malformed == 0 and a.relay.dropped == 0
    finally:
        await device.close()
        await other.close()


async def test_malformed_relay_messages_are_logged_and_dropped_and_the_listener_goes_on(
    redis_url: str, tmp_path: FsPath, caplog: pytest.LogCaptureFixture
) -> None:
    async with cluster_node(redis_url, tmp_path, "b") as b:
        client = b.stores.redis.client
        good = AwakeEvent("dev-x", 1.0, "r-x")
        message = {"v": 1, "origin": "x", "lane": "server", "event": event_to_json(good)}
        bad = [
            b"\xff\xfe not json",
            b"[1, 2]",
            json.dumps({**message, "v": 2}),  # version 2 holds "events"
            json.dumps({**message, "v": 3}),
            json.dumps({**message, "origin": 7}),
            json.dumps({**message, "lane": 7}),
            json.dumps({**message, "event": {"type": "awake", "endpoint": "e"}}),
            json.dumps({**message, "event": {**event_to_json(good), "type": "exploded"}}),
        ]
        with caplog.at_level(logging.WARNING), b.server.events.subscribe() as events:
            for raw in bad:
                await client.publish("lwm2m:events", raw)
            # A role b does not run: skipped, not an error.
            await client.publish("lwm2m:events", json.dumps({**message, "lane": "moon"}))
            await client.publish("lwm2m:events", json.dumps(message))
            event = await events.get(timeout=5)
        assert event == good and event.origin == "x"
        assert b.relay.malformed == len(bad)
        assert b.relay.ignored == 1
        assert b.relay.received == 1
        dropped = [
            r
            for r in caplog.records
            if r.getMessage().startswith(("cluster event message dropped", "cluster event dropped"))
        ]
        assert len(dropped) == len(bad)


async def test_a_batch_relays_its_good_events_and_drops_its_bad_ones(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with cluster_node(redis_url, tmp_path, "b") as b:
        client = b.stores.redis.client
        first, second = AwakeEvent("dev-1", 1.0, "r-1"), AwakeEvent("dev-2", 2.0, "r-2")
        items = [
            {"lane": "server", "event": event_to_json(first)},
            {"lane": "server", "event": {"type": "exploded"}},
            "not an item",
            {"lane": "moon", "event": {}},
            {"lane": "server", "event": event_to_json(second)},
        ]
        with b.server.events.subscribe() as events:
            await client.publish(
                "lwm2m:events", json.dumps({"v": 2, "origin": "x", "events": items})
            )
            got = [await events.get(timeout=5), await events.get(timeout=5)]
        assert got == [first, second] and {e.origin for e in got} == {"x"}
        assert (b.relay.received, b.relay.malformed, b.relay.ignored) == (2, 2, 1)


async def _relayed(node: Node, count: int) -> None:
    """Until ``node`` counted ``count`` relayed events (5 s at most): its count goes up once
    PUBLISH has answered, which can be after a subscriber got the message."""
    async with asyncio.timeout(5):
        while node.relay.relayed < count:
            await asyncio.sleep(0.01)


async def test_the_events_of_one_loop_turn_go_in_one_message(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with cluster_node(redis_url, tmp_path, "a") as a:
        pubsub = a.stores.redis.client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe("lwm2m:events")
        try:
            for n in range(300):  # one loop turn, as a registration storm's answers
                a.server.events.publish(AwakeEvent(f"dev-{n}", float(n), f"r-{n}"))
            docs = []
            async with asyncio.timeout(5):
                while sum(len(d["events"]) for d in docs) < 300:
                    message = await pubsub.get_message(timeout=1)
                    if message is not None:
                        docs.append(json.loads(message["data"]))
            assert len(docs) == 1 and docs[0]["v"] == 2 and docs[0]["origin"] == "a"
            endpoints = [item["event"]["endpoint"] for item in docs[0]["events"]]
            assert endpoints == [f"dev-{n}" for n in range(300)]
            await _relayed(a, 300)
            assert a.relay.relayed == 300
        finally:
            await pubsub.aclose()


async def test_the_relay_comes_back_after_redis_restarts(
    redis_server: RedisServer, tmp_path: FsPath
) -> None:
    async with (
        cluster_node(redis_server.url, tmp_path, "a") as a,
        cluster_node(redis_server.url, tmp_path, "b") as b,
    ):
        redis_server.restart()  # both lose their subscription; pub/sub keeps nothing
        with b.server.events.subscribe() as events:
            deadline = time.monotonic() + 20
            n = 0
            while True:  # until a's sender and b's subscription are both back
                n += 1
                a.server.events.publish(AwakeEvent("dev-r", float(n), "r-r"))
                try:
                    event = await events.get(timeout=0.5)
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline, "the relay did not come back"
        assert event.endpoint == "dev-r" and event.origin == "a"


async def test_own_messages_and_relayed_events_are_not_relayed_again(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with cluster_node(redis_url, tmp_path, "a") as a:
        client = a.stores.redis.client
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe("lwm2m:events")
        try:
            with a.server.events.subscribe() as events:
                # One from "x" is re-published here and must not go back to Redis; one that
                # claims to be a's own is ignored.
                relayed = AwakeEvent("dev-x", 1.0, "r-x")
                doc = {"v": 1, "lane": "server", "event": event_to_json(relayed)}
                await client.publish("lwm2m:events", json.dumps({**doc, "origin": "a"}))
                await client.publish("lwm2m:events", json.dumps({**doc, "origin": "x"}))
                event = await events.get(timeout=5)
                assert event.origin == "x"
                a.server.events.publish(AwakeEvent("fence", 2.0, "-"))
                assert (await events.get(timeout=5)).endpoint == "fence"
            origins = []
            async with asyncio.timeout(5):
                while True:
                    # None: the subscription's confirmation (ignored) or no message yet.
                    message = await pubsub.get_message(timeout=1)
                    if message is None:
                        continue
                    doc = json.loads(message["data"])
                    origins.append(doc["origin"])
                    # The test's own messages are version 1, the relay's version 2.
                    sent = doc["events"] if doc["v"] == 2 else [doc]
                    if sent[-1]["event"]["endpoint"] == "fence":
                        break
            # What went through the channel: the two test messages and a's fence only.
            assert origins == ["a", "x", "a"]
            await _relayed(a, 1)
            assert a.relay.relayed == 1 and a.relay.received == 1
        finally:
            await pubsub.aclose()


async def test_bootstrap_events_travel_on_their_own_lane(redis_url: str, tmp_path: FsPath) -> None:
    from lwm2m.bootstrap.events import (
        BootstrapEvent,
        BootstrapEventBus,
        SessionFinished,
        bootstrap_event_from_json,
    )
    from lwm2m.server.cluster_events import ClusterEvents, EventLane

    def lane(bus: BootstrapEventBus) -> EventLane[BootstrapEvent]:
        return EventLane(
            "bootstrap",
            bus,
            lambda event: event.to_json(),
            lambda data, origin: bootstrap_event_from_json(data, origin=origin),
        )

    async with (
        cluster_node(redis_url, tmp_path, "a") as a,
        cluster_node(redis_url, tmp_path, "b") as b,
    ):
        buses = {"a": BootstrapEventBus(), "b": BootstrapEventBus()}
        relays = [
            ClusterEvents(node.stores.redis, name, [lane(buses[name])])
            for name, node in (("a", a), ("b", b))
        ]
        for relay in relays:
            await relay.start()
        try:
            with buses["b"].subscribe() as on_b, b.server.events.subscribe() as server_on_b:
                finished = SessionFinished("s1", "dev-bs", 5.0)
                buses["a"].publish(finished)
                got = await on_b.get(timeout=5)
                assert got == finished and got.origin == "a"
                assert server_on_b.get_nowait() is None  # not on the server's bus
        finally:
            for relay in relays:
                await relay.stop()


async def test_a_cancelled_stop_still_ends_the_sender_and_the_subscription_then_raises(
    redis_url: str, tmp_path: FsPath
) -> None:
    """A shutdown that bounds the relay's stop must see its cancellation come back: the
    stop used to swallow it (``suppress(CancelledError)`` around its wait for the sender)
    and went on as if it had not been cancelled."""
    from lwm2m.server.cluster_events import ClusterEvents, server_lane

    async with cluster_node(redis_url, tmp_path, "a") as node:
        relay = ClusterEvents(node.stores.redis, "a", [server_lane(node.server.events)])
        never_done = asyncio.Event()

        async def stuck_sender() -> None:  # a sender held up by Redis, say
            await never_done.wait()

        relay._send_loop = stuck_sender  # type: ignore[method-assign]
        await relay.start()
        sender = relay._tasks[0]
        stopping = asyncio.create_task(relay.stop(timeout=30))
        await asyncio.sleep(0.05)
        assert not stopping.done()  # waiting for the sender, within its 30 s
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(stopping, 5)
        assert sender.cancelled()
        assert not relay._subscription.up.is_set()
        assert relay._subscription._listener is not None and relay._subscription._listener.done()


async def test_a_crashed_sender_is_logged_and_the_stop_still_closes_the_subscription(
    redis_url: str, tmp_path: FsPath, caplog: pytest.LogCaptureFixture
) -> None:
    from lwm2m.server.cluster_events import ClusterEvents, server_lane

    async with cluster_node(redis_url, tmp_path, "a") as node:
        relay = ClusterEvents(node.stores.redis, "a", [server_lane(node.server.events)])

        async def crashing_sender() -> None:
            raise RuntimeError("sender bug")

        relay._send_loop = crashing_sender  # type: ignore[method-assign]
        await relay.start()
        await asyncio.sleep(0)
        with caplog.at_level(logging.ERROR, logger="lwm2m.server.cluster_events"):
            await relay.stop(timeout=5)
        assert "sender bug" in caplog.text
        assert not relay._subscription.up.is_set()
        assert relay._subscription._listener is not None and relay._subscription._listener.done()
