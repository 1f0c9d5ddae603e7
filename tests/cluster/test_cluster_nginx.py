"""Three ``lwm2m server`` nodes behind nginx's UDP load balancing, 300 simulated devices (issue 12).

Real processes throughout: redis-server with AOF, nginx with the stream
configuration of docs/cluster-nginx.conf, three nodes, and ``lwm2m client
--count 300`` sending to nginx's port. The tests share one cluster and run in
file order; the destructive ones come last.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from cluster_helpers import FLEET_SIZE, LIFETIME_S, NODE_IDS, Cluster, SseParser, wait_until

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat

pytestmark = pytest.mark.slow

#: A sample of the fleet for the per-device REST checks (a Read costs a round trip through nginx).
SAMPLE = 30
Frame = tuple[str, dict[str, Any]]


def _sample(endpoints: list[str]) -> list[str]:
    return endpoints[:: max(1, len(endpoints) // SAMPLE)][:SAMPLE]


async def _reads(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Reads of /3/0/0 (Manufacturer), (REST base URL, endpoint) each, at once; the failed ones."""
    async with httpx.AsyncClient(timeout=20) as client:

        async def read(base_url: str, ep: str) -> bool:
            reply = await client.get(f"{base_url}/api/clients/{ep}/3/0/0", params={"timeout": 3})
            return reply.status_code == 200 and reply.json().get("status") == "CONTENT"

        done = await asyncio.gather(*(read(url, ep) for url, ep in pairs))
    return [pair for pair, ok in zip(pairs, done, strict=True) if not ok]


class EventStreams:
    """The SSE streams (/api/event) of some nodes, collected in the background."""

    def __init__(self, nodes: dict[str, str]) -> None:
        self.nodes = nodes
        self.frames: dict[str, list[Frame]] = collections.defaultdict(list)
        self._opened = {node_id: asyncio.Event() for node_id in nodes}
        self._changed = asyncio.Event()

    async def _follow(self, client: httpx.AsyncClient, node_id: str) -> None:
        parser = SseParser()
        async with client.stream("GET", f"{self.nodes[node_id]}/api/event") as reply:
            reply.raise_for_status()
            self._opened[node_id].set()
            async for line in reply.aiter_lines():
                frame = parser.feed(line)
                if frame is not None:
                    self.frames[node_id].append(frame)
                    self._changed.set()

    async def until(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Wait for ``check()`` to hold, re-checked on every frame that arrives."""
        try:
            async with asyncio.timeout(timeout_s):
                while not check():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}") from None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, nodes: dict[str, str]) -> AsyncIterator[EventStreams]:
        streams = cls(nodes)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
            tasks = [asyncio.create_task(streams._follow(client, n)) for n in nodes]
            try:
                async with asyncio.timeout(10):
                    for opened in streams._opened.values():
                        await opened.wait()
                yield streams
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


def _urls(cluster: Cluster, *node_ids: str) -> dict[str, str]:
    return {n: cluster.nodes[n].base_url for n in node_ids or NODE_IDS}


def _lists(
    listing: Callable[[], dict[str, str]], truth: dict[str, str], endpoints: list[str]
) -> bool:
    listed = listing()
    return all(listed.get(ep) == truth[ep] for ep in endpoints)


# -- a: registration through nginx --------------------------------------------------------


def test_every_device_registers_through_nginx_and_every_node_lists_it(cluster: Cluster) -> None:
    fleet = cluster.live_fleet()
    truth = cluster.registrations()
    for node in cluster.nodes.values():
        wait_until(
            functools.partial(_lists, node.endpoints, truth, fleet.endpoints),
            10,
            f"node {node.node_id} lists the {FLEET_SIZE} devices",
        )
    owners = cluster.owners()
    spread = collections.Counter(owners[truth[ep]] for ep in fleet.endpoints)
    assert len(spread) > 1, spread  # nginx's hash on address:port spreads one address's devices


# -- b: Read through the REST API ----------------------------------------------------------


async def test_every_device_is_readable_through_its_owner(cluster: Cluster) -> None:
    fleet = cluster.live_fleet()
    truth, owners = cluster.registrations(), cluster.owners()
    pairs = [(cluster.nodes[owners[truth[ep]]].base_url, ep) for ep in _sample(fleet.endpoints)]
    assert await _reads(pairs) == []


async def test_every_device_is_readable_through_every_node(cluster: Cluster) -> None:
    fleet = cluster.live_fleet()
    pairs = [
        (node.base_url, ep) for ep in _sample(fleet.endpoints) for node in cluster.nodes.values()
    ]
    assert await _reads(pairs) == []


# -- c: notifications on every node's SSE stream -------------------------------------------


async def _observed_notification(cluster: Cluster, watcher: str) -> None:
    """Observe a device owned by node a through node a; ``watcher``'s stream must show a notification."""
    fleet = cluster.live_fleet()
    truth, owners = cluster.registrations(), cluster.owners()
    ep = next(ep for ep in fleet.endpoints if owners[truth[ep]] == "a")
    a = cluster.nodes["a"].base_url
    async with (
        EventStreams.open(_urls(cluster, watcher)) as streams,
        httpx.AsyncClient(timeout=15) as client,
    ):
        path = f"{a}/api/clients/{ep}/3/0/13"
        reply = await client.put(f"{path}/attributes", params={"pmax": 1, "timeout": 5})
        assert reply.status_code == 200, reply.text
        reply = await client.post(f"{path}/observe", params={"timeout": 3})
        assert reply.status_code == 200, reply.text
        try:
            await streams.until(
                lambda: any(
                    kind == "NOTIFICATION" and data.get("ep") == ep
                    for kind, data in streams.frames[watcher]
                ),
                5,
                f"a NOTIFICATION of {ep} on node {watcher}'s stream",
            )
        finally:
            await client.delete(f"{path}/observe")


async def test_a_notification_reaches_the_owner_nodes_event_stream(cluster: Cluster) -> None:
    await _observed_notification(cluster, "a")


async def test_a_notification_reaches_another_nodes_event_stream(cluster: Cluster) -> None:
    await _observed_notification(cluster, "c")


# -- d: one endpoint name, two clients, two nodes ------------------------------------------


async def test_one_name_registered_by_two_clients_on_two_nodes_is_a_conflict(
    cluster: Cluster,
) -> None:
    # NoSec "same client" is the same IP address, so the second client is on 127.0.0.2. They
    # reach the nodes directly: behind nginx every device shows nginx's address.
    async def answer(request: Any) -> Message:
        return Message(Code.CONTENT, payload=b"x", content_format=int(ContentFormat.TEXT))

    first = await Endpoint.create("127.0.0.1", 0, handler=answer)
    second = await Endpoint.create("127.0.0.2", 0, handler=answer)
    try:
        register = Message(
            Code.POST,
            uri_path=("rd",),
            uri_query=("ep=contested", f"lt={LIFETIME_S}"),
            payload=b"</1/0>,</3/0>",
            content_format=int(ContentFormat.LINK_FORMAT),
        )
        a, b = cluster.nodes["a"], cluster.nodes["b"]
        replies = await asyncio.gather(
            first.request(register, ("127.0.0.1", a.coap_port), timeout=10),
            second.request(register, ("127.0.0.1", b.coap_port), timeout=10),
        )
        assert sorted(r.code.dotted for r in replies) == ["2.01", "4.09"]
        created = next(r for r in replies if r.code == Code.CREATED)
        winner, node = (first, a) if replies[0] is created else (second, b)
        gone = await winner.request(
            Message(Code.DELETE, uri_path=created.location_path),
            ("127.0.0.1", node.coap_port),
            timeout=10,
        )
        assert gone.code == Code.DELETED
    finally:
        await first.close()
        await second.close()


# -- e: one DEREGISTRATION per expiry, over all nodes --------------------------------------


async def test_a_fleet_that_vanishes_expires_once_per_device(cluster: Cluster) -> None:
    fleet = cluster.live_fleet()
    truth = cluster.registrations()
    ids = {truth[ep] for ep in fleet.endpoints}
    async with EventStreams.open(_urls(cluster)) as streams:

        def expired() -> dict[str, collections.Counter[str]]:
            return {
                node_id: collections.Counter(
                    data["registrationId"]
                    for kind, data in streams.frames[node_id]
                    if kind == "DEREGISTRATION" and data.get("registrationId") in ids
                )
                for node_id in NODE_IDS
            }

        fleet.kill()  # no De-register: every registration has to expire
        total = LIFETIME_S + 15  # lifetime, grace, expiry interval and slack
        # The node that removed a registration publishes its DEREGISTRATION and the relay
        # brings it to the two others: wait until every node saw every one.
        await streams.until(
            lambda: all(set(counts) == ids for counts in expired().values()),
            total,
            f"a DEREGISTRATION of each of the {FLEET_SIZE} registrations on every node",
        )
        await asyncio.sleep(1.0)  # a duplicate, if there were one, would arrive meanwhile
        counts = expired()
        for reg_id in ids:
            seen = [counts[node_id][reg_id] for node_id in NODE_IDS]
            assert seen == [1, 1, 1], (reg_id, seen)  # removed once, relayed once
        assert all(
            data["expired"]
            for node_id in NODE_IDS
            for kind, data in streams.frames[node_id]
            if kind == "DEREGISTRATION" and data["registrationId"] in ids
        )
    assert not set(fleet.endpoints) & set(cluster.registrations())


# -- f: a node killed ----------------------------------------------------------------------


def test_the_devices_of_a_killed_node_move_to_the_survivors_with_their_registrations(
    cluster: Cluster,
) -> None:
    # An Update sent half a lifetime before the end must get past the two datagrams nginx
    # drops on a dead node's session, and a retransmission or two more under load: 30 s.
    fleet = cluster.live_fleet(lifetime_s=30)
    before = {ep: cluster.registrations()[ep] for ep in fleet.endpoints}
    owners = cluster.owners()
    on_a = [ep for ep in fleet.endpoints if owners[before[ep]] == "a"]
    assert on_a, "node a owns no device"
    cluster.nodes["a"].kill()

    def moved() -> bool:
        now, owners = cluster.registrations(), cluster.owners()
        lost = [ep for ep in before if now.get(ep) != before[ep]]
        assert lost == [], f"registrations lost or replaced: {lost[:10]}"
        return all(owners.get(reg_id) in ("b", "c") for reg_id in before.values())

    wait_until(moved, 2 * fleet.lifetime_s, "every device updated through a surviving node")
    owners = cluster.owners()
    pairs = [(cluster.nodes[owners[before[ep]]].base_url, ep) for ep in _sample(on_a)]
    assert asyncio.run(_reads(pairs)) == []


# -- g: everything restarted ---------------------------------------------------------------


def test_a_restart_of_every_node_and_of_redis_keeps_every_registration(cluster: Cluster) -> None:
    fleet = cluster.live_fleet(lifetime_s=30)
    # The devices hold still meanwhile, so that what the nodes list is what they restored
    # (with them sending, Updates lost during the restart would make some register anew).
    fleet.pause()
    try:
        before = cluster.registrations()
        assert set(fleet.endpoints) <= set(before)
        for node in cluster.nodes.values():
            node.kill()
        cluster.redis.kill()  # SIGKILL: only the AOF (appendfsync always) is left
        cluster.redis.start()
        for node in cluster.nodes.values():
            node.start()
        for node in cluster.nodes.values():
            node.wait_ready()
            listed = node.endpoints()
            assert {ep: listed.get(ep) for ep in before} == before, node.node_id
    finally:
        fleet.resume()
    # And the devices go on with the same registrations, through the restarted nodes (once the
    # fleet's Updates, all due at once after the pause, have been served).
    ep = fleet.endpoints[0]
    owner = cluster.nodes[cluster.owners()[before[ep]]].base_url
    wait_until(lambda: asyncio.run(_reads([(owner, ep)])) == [], 20, f"a Read of {ep}")
    assert cluster.registrations()[ep] == before[ep]
