"""Firmware campaigns and images across two server nodes on one real Redis.

Two ``LwM2MServer`` nodes in this process share a redis-server; each has its
firmware repository (bytes shared through Redis), its campaign manager (a
:class:`~lwm2m.server.firmware.campaign_cluster.CampaignCluster` member) and its
REST API. Simulated devices register some on node a, some on node b; a node's
message tracer shows that it never talks to a device the other node owns. The
nodes' liveness keys are SET by the fixture (the node registry refreshes them in
a running cluster).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import httpx
from campaign_helpers import CountingInstaller, firmware, fleet, package, until

from lwm2m.client.client import LwM2MClient
from lwm2m.client.simulator import Simulator
from lwm2m.coap.endpoint import Address
from lwm2m.coap.message import Message
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.firmware import FirmwareRepository
from lwm2m.server.firmware.campaign_cluster import CampaignCluster, parse_change
from lwm2m.server.firmware.campaigns import CampaignManager
from lwm2m.server.firmware.shared_images import RedisImageBlobs
from lwm2m.stores import open_stores
from lwm2m.stores.records import Registration
from lwm2m.stores.redis import RedisStores
from lwm2m.web.app import WebServer, create_app


@dataclass
class Node:
    id: str
    server: LwM2MServer
    stores: RedisStores
    repository: FirmwareRepository
    campaigns: CampaignManager
    http: httpx.AsyncClient
    #: CoAP messages this node sent and received: (direction, peer, message).
    traffic: list[tuple[str, Address, Message]] = field(default_factory=list)
    #: The simulated devices registered on this node (by :func:`_cluster`).
    devices: list[LwM2MClient] = field(default_factory=list)

    def peers(self) -> set[Address]:
        return {peer for _, peer, _ in self.traffic}


@asynccontextmanager
async def _node(url: str, tmp_path: FsPath, node_id: str) -> AsyncIterator[Node]:
    stores = await open_stores(url, tmp_path / node_id, node_id=node_id)
    assert isinstance(stores, RedisStores)
    repository = await FirmwareRepository.open(
        stores.documents, tmp_path / node_id, blobs=RedisImageBlobs(stores.redis)
    )
    server = LwM2MServer(
        stores,
        config=ServerConfig(coap_port=0, request_timeout_s=10.0),
        firmware=repository,
    )
    await server.start()
    campaigns = CampaignManager(
        server, repository, poll_s=0.5, cluster=CampaignCluster(stores.redis, node_id)
    )
    await campaigns.start()
    await stores.redis.run(
        ("SET", stores.redis.key(f"node:{node_id}"), json.dumps({"id": node_id}))
    )
    app = create_app(server, None, campaigns=campaigns)
    web = WebServer(app, "127.0.0.1", 0)
    await web.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}", timeout=30) as http:
        node = Node(node_id, server, stores, repository, campaigns, http)

        def trace(direction: str, message: Message, peer: Address) -> None:
            node.traffic.append((direction, peer, message))

        server.add_message_tracer(trace)
        try:
            yield node
        finally:
            await web.stop()
            await campaigns.stop()
            await server.stop()
            await stores.close()


@asynccontextmanager
async def _cluster(
    url: str,
    tmp_path: FsPath,
    *,
    per_node: int = 2,
    customize: Callable[[LwM2MClient, int], None] | None = None,
) -> AsyncIterator[tuple[Node, Node]]:
    """Nodes a and b; devices ``a-<i>`` registered on a, ``b-<i>`` on b."""
    async with _node(url, tmp_path, "a") as a, _node(url, tmp_path, "b") as b:
        sims: list[Simulator] = []
        try:
            for node in (a, b):
                sim = fleet(node.server, per_node, base=node.id, customize=customize)
                sims.append(sim)
                await sim.start()
                node.devices = sim.clients
            await until(lambda: all(len(_own(n)) == per_node for n in (a, b)))
            assert await a.stores.registrations.fetch_count() == 2 * per_node
            yield a, b
        finally:
            for sim in sims:
                await sim.stop()


def _own(node: Node) -> list[Registration]:
    """The registrations of the devices registered on ``node`` (its memory holds them)."""
    return [r for r in node.server.registrations() if r.endpoint.startswith(node.id)]


def _owned(node: Node) -> set[Address]:
    """The addresses of the devices registered on ``node``."""
    return {r.address for r in _own(node)}


async def _upload(node: Node, version: str, size: int = 5000) -> str:
    response = await node.http.post(
        "/api/firmware",
        params={"name": "demo", "version": version},
        content=package(version, size),
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    image_id: str = response.json()["id"]
    return image_id


async def _view(node: Node, campaign_id: str) -> dict[str, Any]:
    response = await node.http.get(f"/api/campaigns/{campaign_id}")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def _until_view(
    node: Node, campaign_id: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            view = await _view(node, campaign_id)
            if check(view):
                return view
            await asyncio.sleep(0.05)


async def test_campaign_from_node_a_updates_devices_of_both_nodes_each_from_its_owner(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with _cluster(redis_url, tmp_path) as (a, b):
        image_id = await _upload(a, "2.0")
        devices = ["a-0", "a-1", "b-0", "b-1"]
        created = await a.http.post(
            "/api/campaigns",
            json={"firmware": image_id, "endpoints": devices, "method": "coap", "timeout": 30},
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]

        def ended(view: dict[str, Any]) -> bool:
            return view["state"] == "finished"

        view_a = await _until_view(a, campaign_id, ended)
        view_b = await _until_view(b, campaign_id, ended)
        owned_a, owned_b = _owned(a), _owned(b)

    assert view_a == view_b
    assert {d["endpoint"]: d["state"] for d in view_a["devices"]} == dict.fromkeys(
        devices, "updated"
    )
    assert view_a["totals"]["updated"] == 4 and view_a["totals"]["done"] == 4
    assert all(d["newVersion"] == "2.0" for d in view_a["devices"])
    # Each device was driven by its owner alone: not one message between it and the other node.
    assert len(owned_a) == 2 and len(owned_b) == 2
    assert not a.peers() & owned_b and not b.peers() & owned_a
    # The image uploaded on a reached b's devices from b, block by block over CoAP.
    served_by_b = [
        m
        for direction, peer, m in b.traffic
        if direction == "out" and peer in owned_b and m.block2 is not None and m.payload
    ]
    assert len(served_by_b) >= 2 * 5  # 5000 bytes in 1024-byte blocks, to two devices
    assert (tmp_path / "b" / "firmware" / f"{image_id}.bin").read_bytes() == package("2.0", 5000)


async def test_pause_on_b_stops_a_and_an_image_in_use_cannot_be_deleted_from_b(
    redis_url: str, tmp_path: FsPath
) -> None:
    gate = asyncio.Event()

    def hold_first(client: LwM2MClient, index: int) -> None:
        if client.endpoint_name == "a-0":
            firmware(client).installer = CountingInstaller(release=gate)

    async with _cluster(redis_url, tmp_path, per_node=3, customize=hold_first) as (a, b):
        image_id = await _upload(a, "3.0")
        devices = ["a-0", "a-1", "a-2"]
        created = await a.http.post(
            "/api/campaigns",
            json={"firmware": image_id, "endpoints": devices, "concurrency": 1, "timeout": 30},
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        await _until_view(
            b, campaign_id, lambda v: v["devices"][0]["state"] in ("downloading", "updating")
        )
        paused = await b.http.post(f"/api/campaigns/{campaign_id}/pause")
        assert paused.status_code == 200, paused.text
        await until(lambda: a.campaigns.get(campaign_id).state.value == "paused")

        refused = await b.http.delete(f"/api/firmware/{image_id}")
        assert refused.status_code == 409, refused.text

        gate.set()  # a-0 finishes its update; nothing else starts on a
        await _until_view(a, campaign_id, lambda v: v["devices"][0]["state"] == "updated")
        run = a.campaigns._runs[campaign_id]
        await until(lambda: not run.drivers)
        await a.http.get(f"/api/campaigns/{campaign_id}")  # a round trip: a's loop had its turn
        seen_by_b = await _until_view(
            b, campaign_id, lambda v: v["devices"][0]["state"] == "updated"
        )
        states = [d["state"] for d in seen_by_b["devices"]]
        assert states == ["updated", "pending", "pending"]

        resumed = await b.http.post(f"/api/campaigns/{campaign_id}/resume")
        assert resumed.status_code == 200, resumed.text
        view = await _until_view(a, campaign_id, lambda v: v["state"] == "finished")
        assert [d["state"] for d in view["devices"]] == ["updated"] * 3

        deleted = await b.http.delete(f"/api/firmware/{image_id}")
        assert deleted.status_code == 204, deleted.text
        assert (await a.http.get(f"/api/firmware/{image_id}")).status_code == 404
        assert (await a.http.get(f"/fw/{image_id}")).status_code == 404
        assert not (tmp_path / "a" / "firmware" / f"{image_id}.bin").exists()
        assert await RedisImageBlobs(a.stores.redis).get(image_id) is None


async def test_cancel_on_b_cancels_what_both_nodes_had_not_started(
    redis_url: str, tmp_path: FsPath
) -> None:
    gate = asyncio.Event()

    def hold_first(client: LwM2MClient, index: int) -> None:
        if index == 0:
            firmware(client).installer = CountingInstaller(release=gate)

    async with _cluster(redis_url, tmp_path, customize=hold_first) as (a, b):
        image_id = await _upload(a, "3.1")
        # A filter selects from the fleet in Redis: a's memory holds a's devices only.
        created = await a.http.post(
            "/api/campaigns",
            json={"firmware": image_id, "filter": {"endpoint": "*"}, "concurrency": 1},
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]

        def both_executed(view: dict[str, Any]) -> bool:
            states = {d["endpoint"]: d["state"] for d in view["devices"]}
            return states["a-0"] == states["b-0"] == "updating"

        await _until_view(a, campaign_id, both_executed)
        cancelled = await b.http.post(f"/api/campaigns/{campaign_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        gate.set()
        view = await _until_view(a, campaign_id, lambda v: v["finished"] is not None)
        assert view == await _until_view(b, campaign_id, lambda v: v["finished"] is not None)

    assert view["state"] == "cancelled"
    assert {d["endpoint"]: d["state"] for d in view["devices"]} == {
        "a-0": "updated",  # told to Execute before the cancel: confirmed, not abandoned
        "b-0": "updated",
        "a-1": "cancelled",
        "b-1": "cancelled",
    }


async def test_an_image_uploaded_on_a_is_served_by_b_over_http_and_checked(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with _node(redis_url, tmp_path, "a") as a, _node(redis_url, tmp_path, "b") as b:
        image_id = await _upload(a, "4.0", size=300_000)
        listed = (await b.http.get("/api/firmware")).json()
        assert [i["id"] for i in listed] == [image_id]
        ranged = await b.http.get(f"/fw/{image_id}", headers={"range": "bytes=1000-1999"})
        assert ranged.status_code == 206
        assert ranged.content == package("4.0", 300_000)[1000:2000]
        # A damaged shared copy is refused (never cached, never served) on a third node.
        blobs = RedisImageBlobs(a.stores.redis)
        await a.stores.redis.run(("HSET", blobs.key(image_id), "0", b"x" * blobs.chunk_bytes))
        async with _node(redis_url, tmp_path, "c") as c:
            broken = await c.http.get(f"/fw/{image_id}")
            assert broken.status_code == 503
            assert not (tmp_path / "c" / "firmware" / f"{image_id}.bin").exists()


class _Balancer:
    """A UDP load balancer in miniature: one upstream socket per device, the target switchable.

    Switching ``target`` is what a take-over looks like to the nodes: the device's
    next datagram (its Update) reaches the other node, which becomes the owner.
    """

    def __init__(self, target: Address) -> None:
        self.target = target
        self.front: asyncio.DatagramTransport | None = None
        self.backs: dict[Address, asyncio.DatagramTransport] = {}
        self.opening: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        balancer = self

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                device = (addr[0], addr[1])
                back = balancer.backs.get(device)
                if back is None:
                    task = loop.create_task(balancer._open(device, data))
                    balancer.opening.add(task)
                    task.add_done_callback(balancer.opening.discard)
                else:
                    back.sendto(data, balancer.target)

        self.front, _ = await loop.create_datagram_endpoint(Front, local_addr=("127.0.0.1", 0))
        port: int = self.front.get_extra_info("sockname")[1]
        return port

    async def _open(self, device: Address, first: bytes) -> None:
        balancer = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if balancer.front is not None:
                    balancer.front.sendto(data, device)

        loop = asyncio.get_running_loop()
        back, _ = await loop.create_datagram_endpoint(Back, local_addr=("127.0.0.1", 0))
        self.backs[device] = back
        back.sendto(first, self.target)

    def upstream(self) -> set[Address]:
        """The addresses the nodes see the devices at."""
        return {t.get_extra_info("sockname")[:2] for t in self.backs.values()}

    def close(self) -> None:
        for transport in [*self.backs.values(), self.front]:
            if transport is not None:
                transport.close()


async def test_a_device_taken_over_by_b_mid_update_is_confirmed_by_b_from_its_stored_state(
    redis_url: str, tmp_path: FsPath
) -> None:
    gate = asyncio.Event()
    installers: list[CountingInstaller] = []

    def hold(client: LwM2MClient, index: int) -> None:
        installers.append(CountingInstaller(release=gate))
        firmware(client).installer = installers[-1]

    async with _node(redis_url, tmp_path, "a") as a, _node(redis_url, tmp_path, "b") as b:
        balancer = _Balancer(a.server.coap_address)
        port = await balancer.start()
        sim = fleet(a.server, 1, base="mv", coap_port=port, customize=hold)
        await sim.start()
        try:
            await until(lambda: a.server.get_registration("mv-0") is not None)
            image_id = await _upload(a, "5.0")
            created = await a.http.post(
                "/api/campaigns",
                json={"firmware": image_id, "endpoints": ["mv-0"], "timeout": 30},
            )
            assert created.status_code == 201, created.text
            campaign_id = created.json()["id"]
            await _until_view(b, campaign_id, lambda v: v["devices"][0]["state"] == "updating")

            balancer.target = b.server.coap_address  # the take-over
            sim.clients[0].trigger_update()
            await until(lambda: "mv-0" in b.campaigns._runs[campaign_id].drivers)
            device = balancer.upstream()
            before = {m.mid for d, peer, m in a.traffic if d == "out" and peer in device}
            taken = len(a.traffic)
            gate.set()
            view = await _until_view(a, campaign_id, lambda v: v["state"] == "finished")
            assert view == await _until_view(b, campaign_id, lambda v: v["state"] == "finished")
        finally:
            await sim.stop()
            balancer.close()

    record = view["devices"][0]
    assert (record["state"], record["newVersion"], record["attempts"]) == ("updated", "5.0", 1)
    assert installers[0].checks == 1  # continued from its stored phase: delivered once
    # After the take-over a sent the device nothing new (retransmissions of an earlier
    # request at most), and b confirmed the update.
    late = {m.mid for d, peer, m in a.traffic[taken:] if d == "out" and peer in device}
    assert late <= before
    assert any(d == "out" and peer in device for d, peer, _ in b.traffic)


async def test_devices_whose_owner_is_gone_wait_until_owned_again_or_their_timeout(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with _cluster(redis_url, tmp_path) as (a, b):
        image_id = await _upload(a, "6.0")
        r = b.stores.redis
        for endpoint in ("b-0", "b-1"):  # their owner died (no liveness key)
            (reg_id,) = await r.run(("HGET", r.key("reg:endpoint"), endpoint))
            await r.run(("HSET", r.key("reg:owner"), reg_id, "ghost"))
        owned_b = _owned(b)
        seen = len(a.traffic), len(b.traffic)
        created = await a.http.post(
            "/api/campaigns",
            json={"firmware": image_id, "endpoints": ["b-0", "b-1"], "timeout": 6, "retries": 0},
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        await _until_view(
            b, campaign_id, lambda v: [d["state"] for d in v["devices"]] == ["waiting"] * 2
        )
        # Nobody could reach them, so nobody tried.
        assert not {p for _, p, _ in a.traffic[seen[0] :] + b.traffic[seen[1] :]} & owned_b

        b0 = next(c for c in b.devices if c.endpoint_name == "b-0")
        b0.trigger_update()  # b-0 shows up again: b owns it and drives it
        view = await _until_view(a, campaign_id, lambda v: v["state"] == "finished")

    states = {d["endpoint"]: (d["state"], d["error"]) for d in view["devices"]}
    assert states == {
        "b-0": ("updated", ""),
        "b-1": ("failed", "offline: did not register within the timeout"),
    }


def test_malformed_campaign_changes_are_refused() -> None:
    for raw in (b"\xff", b"[]", b'{"from": 1, "campaign": "c"}', b'{"from": "a"}', b"x" * 5000):
        try:
            parse_change(raw)
        except ValueError:
            continue
        raise AssertionError(f"{raw!r} was accepted")
    change = parse_change(b'{"from": "a", "campaign": "c1", "device": "d"}')
    assert (change.origin, change.campaign, change.device) == ("a", "c1", "d")
