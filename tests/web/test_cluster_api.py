"""``GET /api/cluster``, the cluster metrics and relayed events on the SSE stream, through
the real FastAPI app on real ports, with two server nodes on a real redis-server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import httpx
from cluster_devices import TEXT, Battery
from web_fakes import SseReader

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.cluster_events import ClusterEvents, server_lane
from lwm2m.server.cluster_nodes import ClusterNodes
from lwm2m.server.events import AwakeEvent
from lwm2m.stores import open_stores
from lwm2m.stores.base import StoreError
from lwm2m.stores.memory import MemoryStores
from lwm2m.stores.redis import RedisStores
from lwm2m.web.app import WebServer, build_app, create_app


@dataclass
class WebNode:
    server: LwM2MServer
    nodes: ClusterNodes
    relay: ClusterEvents
    http: httpx.AsyncClient


@asynccontextmanager
async def web_node(url: str, tmp_path: FsPath, node_id: str) -> AsyncIterator[WebNode]:
    """A server node as ``lwm2m server`` wires it: heartbeat, relay, web app on a free port."""
    async with AsyncExitStack() as stack:
        stores = await open_stores(url, tmp_path / node_id, node_id=node_id)
        assert isinstance(stores, RedisStores)
        stack.push_async_callback(stores.close)
        server = LwM2MServer(stores, config=ServerConfig(coap_port=0))
        await server.start()
        stack.push_async_callback(server.stop)
        relay = ClusterEvents(stores.redis, node_id, [server_lane(server.events)])
        await relay.start()
        stack.push_async_callback(relay.stop)
        nodes = ClusterNodes.of_server(server, node_id, stores.redis, interval_s=1.0)
        app = create_app(server, None, cluster=nodes, counters=relay.counters)
        web = WebServer(app, "127.0.0.1", 0)
        await web.start()
        stack.push_async_callback(web.stop)
        server.http_address = ("127.0.0.1", web.port)
        await nodes.start()
        stack.push_async_callback(nodes.stop)
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}", timeout=10)
        )
        yield WebNode(server, nodes, relay, http)


def register(ep: str) -> Message:
    return Message(
        Code.POST,
        uri_path=("rd",),
        uri_query=(f"ep={ep}", "lt=3600"),
        payload=b"</3/0>",
        content_format=int(ContentFormat.LINK_FORMAT),
    )


async def test_cluster_api_and_metrics_show_both_nodes(redis_url: str, tmp_path: FsPath) -> None:
    device = await Endpoint.create("127.0.0.1", 0)
    try:
        async with (
            web_node(redis_url, tmp_path, "a") as a,
            web_node(redis_url, tmp_path, "c") as c,
        ):
            reply = await device.request(register("dev-1"), a.server.coap_address, timeout=5)
            assert reply.code == Code.CREATED
            await a.nodes.heartbeat()
            await c.nodes.heartbeat()
            answer = await c.http.get("/api/cluster")
            assert answer.status_code == 200
            body = answer.json()
            assert body["node"] == "c" and body["shared"] is True
            nodes = {n["id"]: n for n in body["nodes"]}
            assert sorted(nodes) == ["a", "c"]
            assert nodes["a"]["alive"] and nodes["c"]["alive"]
            assert nodes["c"]["self"] and not nodes["a"]["self"]
            assert nodes["a"]["owned"] == 1
            assert nodes["a"]["http"] == str(a.http.base_url).rstrip("/")
            host, port = a.server.coap_address[:2]
            assert nodes["a"]["coap"] == f"{host}:{port}"
            assert 0 <= nodes["a"]["heartbeatAge"] < 60
            assert nodes["a"]["started"] <= nodes["a"]["heartbeat"]

            text = (await c.http.get("/metrics")).text
            assert 'lwm2m_cluster_nodes{state="alive"} 2' in text
            assert 'lwm2m_cluster_nodes{state="gone"} 0' in text
            assert 'lwm2m_cluster_owned_registrations{node="a"} 1' in text
            assert 'lwm2m_cluster_owned_registrations{node="c"} 0' in text
            assert re.search(
                r'^lwm2m_cluster_heartbeat_age_seconds\{node="a"\} [0-9.e-]+$', text, re.M
            )
            assert "# TYPE lwm2m_cluster_nodes gauge" in text
            assert re.search(r"^lwm2m_cluster_events_received_total [1-9]", text, re.M)
            # c hears a's REGISTRATION: one on its own counter, as on a.
            assert 'lwm2m_events_total{kind="REGISTRATION"} 1' in text

            schema = (await c.http.get("/openapi.json")).json()
            assert "/api/cluster" in schema["paths"]

        # a stopped cleanly: the survivor would list it gone (here both are gone).
    finally:
        await device.close()


async def test_a_relayed_notification_renders_the_same_on_the_sse_stream_once(
    redis_url: str, tmp_path: FsPath
) -> None:
    battery = Battery()
    device = await Endpoint.create("127.0.0.1", 0, handler=battery.handle)
    try:
        async with (
            web_node(redis_url, tmp_path, "a") as a,
            web_node(redis_url, tmp_path, "c") as c,
            a.http.stream("GET", "/api/event") as on_a,
            c.http.stream("GET", "/api/event") as on_c,
        ):
            streams = {"a": SseReader(on_a.aiter_lines()), "c": SseReader(on_c.aiter_lines())}
            for reader in streams.values():
                await reader.next_comment()  # open: it hears from now on
            reply = await device.request(register("bat"), a.server.coap_address, timeout=5)
            assert reply.code == Code.CREATED
            await a.server.observe("bat", "/3/0/9", timeout=5)
            (observation,) = battery.observations
            await observation.notify(
                Message(Code.CONTENT, payload=b"43", content_format=TEXT), confirmable=True
            )
            a.server.events.publish(AwakeEvent("fence", 0.0, "-"))
            frames: dict[str, list[tuple[str, Any]]] = {}
            for name, reader in streams.items():
                frames[name] = []
                async with asyncio.timeout(10):
                    while (frame := await reader.next()) != ("AWAKE", {"ep": "fence"}):
                        frames[name].append(frame)
            assert frames["c"] == frames["a"]
            kinds = [kind for kind, _ in frames["c"]]
            assert kinds == ["REGISTRATION", "NOTIFICATION"]
            note = frames["c"][1][1]
            assert (note["ep"], note["res"], note["val"]["value"]) == ("bat", "/3/0/9", 43)
    finally:
        await device.close()


async def test_without_redis_the_cluster_is_this_node_alone() -> None:
    server = LwM2MServer(MemoryStores(), config=ServerConfig(coap_port=0))
    await server.start()
    try:
        app = create_app(server, None)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
            ) as http,
        ):
            body = (await http.get("/api/cluster")).json()
            assert body["shared"] is False
            (node,) = body["nodes"]
            assert node["id"] == body["node"] and node["self"] and node["alive"]
            host, port = server.coap_address[:2]
            assert node["coap"] == f"{host}:{port}" and node["owned"] is None
            text = (await http.get("/metrics")).text
            assert 'lwm2m_cluster_nodes{state="alive"} 1' in text
    finally:
        await server.stop()


class UnreachableCluster:
    """A registry whose Redis is away."""

    node_id = "a"
    shared = True

    async def nodes(self) -> list[Any]:
        raise StoreError("Redis: Connection refused")


async def test_redis_away_is_a_503_and_metrics_still_answer() -> None:
    app = build_app(None, None, cluster=UnreachableCluster())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as http:
        answer = await http.get("/api/cluster")
        assert answer.status_code == 503
        assert "Connection refused" in answer.json()["message"]
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert "lwm2m_http_requests_total" in metrics.text
        assert "lwm2m_cluster_nodes" not in metrics.text
