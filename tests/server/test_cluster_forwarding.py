"""REST requests on a node that does not own the device, forwarded to the owner over Redis.

Two ``LwM2MServer`` nodes in this process share a real redis-server, each with its
web app and its end of :mod:`lwm2m.server.cluster_rpc`; the project's client
registers on node a. The nodes' liveness keys are SET by the fixture (the node
registry's heartbeats refresh them in a running cluster).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import httpx
import pytest
from redis_helpers import RedisServer
from server_helpers import free_tcp_port, output_line, register_message

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Address, Endpoint
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat
from lwm2m.server import (
    LwM2MServer,
    NotificationEvent,
    RegistrationEvent,
    ServerConfig,
    UpdatedEvent,
)
from lwm2m.server.cluster_owners import ClusterOwners
from lwm2m.server.cluster_rpc import ClusterRpc, RpcBusy, RpcClosed, RpcRequest, RpcResponse
from lwm2m.stores import open_stores
from lwm2m.stores.redis import RedisStores
from lwm2m.web.app import WebServer, create_app
from lwm2m.web.forwarding import (
    SERVED_BY,
    Forwarding,
    asgi_handler,
    device_endpoint,
    forward_wait,
)

EP = "fwd-dev"


@dataclass
class Node:
    id: str
    server: LwM2MServer
    stores: RedisStores
    rpc: ClusterRpc
    http: httpx.AsyncClient
    #: CoAP messages this node's endpoints sent: (peer, message).
    sent: list[tuple[Address, Message]] = field(default_factory=list)

    async def registration_id(self, endpoint: str) -> str:
        r = self.stores.redis
        (raw,) = await r.run(("HGET", r.key("reg:endpoint"), endpoint))
        assert raw is not None
        return str(raw.decode())

    async def set_owner(self, endpoint: str, owner: str) -> None:
        r = self.stores.redis
        reg_id = await self.registration_id(endpoint)
        await r.run(("HSET", r.key("reg:owner"), reg_id, owner))


@asynccontextmanager
async def _node(
    url: str,
    tmp_path: FsPath,
    node_id: str,
    *,
    forward_timeout_s: float = 10.0,
    api_token: str | None = None,
) -> AsyncIterator[Node]:
    stores = await open_stores(url, tmp_path / node_id, node_id=node_id)
    assert isinstance(stores, RedisStores)
    server = LwM2MServer(stores, config=ServerConfig(coap_port=0, coaps_port=0))
    await server.start()
    rpc = ClusterRpc(stores.redis, node_id)
    forwarding = Forwarding(
        rpc, ClusterOwners(stores.redis), timeout_s=forward_timeout_s, margin_s=0.2
    )
    app = create_app(server, None, forwarding=forwarding, api_token=api_token)
    rpc.handler = asgi_handler(app)
    await rpc.start()
    # The liveness key of the contract; the node registry refreshes it in a real cluster.
    await stores.redis.run(
        ("SET", stores.redis.key(f"node:{node_id}"), json.dumps({"id": node_id}))
    )
    web = WebServer(app, "127.0.0.1", 0)
    await web.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}", timeout=30) as http:
        node = Node(node_id, server, stores, rpc, http)

        def trace(direction: str, message: Message, peer: Address) -> None:
            if direction == "out":
                node.sent.append((peer, message))

        server.add_message_tracer(trace)
        try:
            yield node
        finally:
            await web.stop()
            await rpc.stop()
            await server.stop()
            await stores.close()


def _client(a: Node) -> LwM2MClient:
    host, port = a.server.coap_address
    return LwM2MClient(
        ClientConfig(
            EP,
            servers=(FactoryAccount(f"coap://{host}:{port}", lifetime_s=300),),
            local_host="127.0.0.1",
            manufacturer="ACME",
        )
    )


async def _next(events: Any, kind: type) -> Any:
    while True:
        event = await asyncio.wait_for(events.get(), 10)
        if isinstance(event, kind):
            return event


@asynccontextmanager
async def _cluster(
    url: str, tmp_path: FsPath, *, forward_timeout_s: float = 10.0, api_token: str | None = None
) -> AsyncIterator[tuple[Node, Node, LwM2MClient]]:
    async with (
        _node(url, tmp_path, "a", api_token=api_token) as a,
        _node(url, tmp_path, "b", forward_timeout_s=forward_timeout_s, api_token=api_token) as b,
    ):
        client = _client(a)
        with a.server.events.subscribe(EP) as events:
            await client.start()
            try:
                await asyncio.wait_for(_registered(events), 10)
                await b.stores.sync()
                yield a, b, client
            finally:
                await client.stop(deregister=False)


async def _registered(events: Any) -> None:
    await _next(events, RegistrationEvent)


async def test_device_operations_through_node_b_are_served_by_node_a(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    async with _cluster(redis_url, tmp_path) as (a, b, _device):
        assert await a.stores.registrations.owner(await a.registration_id(EP)) == "a"
        base = f"/api/clients/{EP}"
        with a.server.events.subscribe(EP) as events:
            read = await b.http.get(f"{base}/3/0/0")
            assert read.status_code == 200, read.text
            assert read.headers[SERVED_BY] == "a"
            assert read.headers["content-type"] == "application/json"
            assert read.json()["content"]["value"] == "ACME"

            observe = await b.http.post(f"{base}/1/0/1/observe")
            assert observe.status_code == 200, observe.text
            assert observe.headers[SERVED_BY] == "a"

            write = await b.http.put(f"{base}/1/0/1", json={"value": 400})
            assert write.status_code == 200, write.text
            assert write.json()["code"] == "2.04"
            note = await _next(events, NotificationEvent)
            assert note.content.value == 400

            again = await b.http.get(f"{base}/1/0/1", params={"timeout": "8"})
            assert again.json()["content"]["value"] == 400

            # Execute "Registration Update Trigger": the client updates through node a.
            execute = await b.http.post(f"{base}/1/0/8")
            assert execute.status_code == 200, execute.text
            assert execute.json()["code"] == "2.04"
            await _next(events, UpdatedEvent)

            attributes = await b.http.put(f"{base}/1/0/1/attributes", params={"pmin": "1"})
            assert attributes.status_code == 200, attributes.text
            assert attributes.json()["code"] == "2.04" and attributes.headers[SERVED_BY] == "a"
            discover = await b.http.get(f"{base}/3/0/discover")
            assert discover.status_code == 200 and discover.headers[SERVED_BY] == "a"
            composite = await b.http.get(f"{base}/composite", params={"paths": "/3/0/0,/1/0/1"})
            assert composite.status_code == 200 and composite.headers[SERVED_BY] == "a"
            cancel = await b.http.delete(f"{base}/1/0/1/observe")
            assert cancel.status_code == 200 and cancel.json() == {"cancelled": True}

        # The owner's errors come back verbatim: a bad path is the owner's 400.
        bad = await b.http.get(f"{base}/not-a-path")
        assert bad.status_code == 400 and bad.headers[SERVED_BY] == "a"
        assert "message" in bad.json()

        # Reads of the registration itself are node b's own (Redis has them).
        meta = await b.http.get(base)
        assert meta.status_code == 200 and SERVED_BY not in meta.headers
        assert meta.json()["endpoint"] == EP
        listing = await b.http.get("/api/clients")
        assert [c["endpoint"] for c in listing.json()] == [EP]

        # Node b never spoke CoAP to the device; node a did.
        device = a.server.get_registration(EP)
        assert device is not None
        assert b.sent == []
        assert any(peer == device.address for peer, _ in a.sent)
        assert b.rpc.served == 0 and a.rpc.served == 10


async def test_forwarding_comes_back_after_redis_restarts(
    redis_server: RedisServer,
    tmp_path: FsPath,
) -> None:
    async with _cluster(redis_server.url, tmp_path) as (_a, b, _device):
        redis_server.restart()  # both nodes lose every subscription; the AOF keeps the data
        deadline = time.monotonic() + 20
        while True:
            read = await b.http.get(f"/api/clients/{EP}/3/0/0")
            if read.status_code == 200:
                break
            # Until both subscriptions are back the answer is 503, never a hang.
            assert read.status_code == 503, read.text
            assert time.monotonic() < deadline, "forwarding did not come back after the restart"
            await asyncio.sleep(0.1)
        assert read.headers[SERVED_BY] == "a" and read.json()["content"]["value"] == "ACME"
        assert b.sent == []


async def test_a_request_on_the_owner_is_not_forwarded(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    async with _cluster(redis_url, tmp_path) as (a, b, _device):
        read = await a.http.get(f"/api/clients/{EP}/3/0/0")
        assert read.status_code == 200 and SERVED_BY not in read.headers
        assert a.rpc.served == 0 and b.rpc.served == 0


async def test_with_an_api_token_only_authorised_requests_are_forwarded(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    async with _cluster(redis_url, tmp_path, api_token="s3cret") as (a, b, _device):
        path = f"/api/clients/{EP}/3/0/0"
        refused = await b.http.get(path, headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401 and SERVED_BY not in refused.headers
        assert a.rpc.served == 0
        read = await b.http.get(path, headers={"Authorization": "Bearer s3cret"})
        assert read.status_code == 200 and read.headers[SERVED_BY] == "a"
        assert read.json()["content"]["value"] == "ACME"
        assert a.rpc.served == 1 and b.sent == []


async def test_504_when_the_owner_does_not_answer(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    async with _cluster(redis_url, tmp_path, forward_timeout_s=0.5) as (a, b, _device):
        r = a.stores.redis
        # A node that is alive and subscribed, and never answers.
        await r.run(("SET", r.key("node:mute"), "{}"))
        mute = r.client.pubsub()
        await mute.subscribe(r.key("rpc:mute"))
        try:
            await b.set_owner(EP, "mute")
            response = await b.http.get(f"/api/clients/{EP}/3/0/0", params={"timeout": "0.1"})
            assert response.status_code == 504
            assert response.json()["message"] == "owner node mute did not answer within 0.5 s"
            envelope = await _published(mute)
            assert envelope["method"] == "GET" and envelope["path"] == f"/api/clients/{EP}/3/0/0"
            assert envelope["query"] == "timeout=0.1" and envelope["from"] == "b"
        finally:
            await mute.aclose()
        assert b.sent == []


async def _published(pubsub: Any) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                doc: dict[str, Any] = json.loads(message["data"])
                return doc

    return await asyncio.wait_for(first(), 10)


async def test_503_when_the_owner_is_gone(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    async with _cluster(redis_url, tmp_path) as (a, b, _device):
        r = b.stores.redis
        await b.set_owner(EP, "gone")
        response = await b.http.put(f"/api/clients/{EP}/1/0/1", json={"value": 60})
        assert response.status_code == 503
        assert response.json()["message"] == (
            "owner node gone is gone; the device will be taken over by the node that "
            "receives its next message"
        )
        # Its liveness key not yet expired, but nothing listens: 503 at once, no wait.
        await r.run(("SET", r.key("node:gone"), "{}"))
        started = time.monotonic()
        response = await b.http.get(f"/api/clients/{EP}/3/0/0", params={"timeout": "60"})
        assert response.status_code == 503
        assert "nothing listens" in response.json()["message"]
        assert time.monotonic() - started < 60
        # Node a itself gone (its key expired): the same 503.
        await b.set_owner(EP, "a")
        await r.run(("DEL", r.key("node:a")))
        response = await b.http.get(f"/api/clients/{EP}/3/0/0")
        assert response.status_code == 503 and "owner node a is gone" in response.json()["message"]
        assert b.sent == [] and a.rpc.served == 0


async def test_malformed_envelopes_are_logged_and_dropped(
    redis_url: str,
    tmp_path: FsPath,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _cluster(redis_url, tmp_path) as (a, b, _device):
        r = a.stores.redis
        channel = r.key("rpc:a")
        good = {
            "v": 1,
            "token": "t1",
            "reply": r.key("rpc:b:reply"),
            "from": "b",
            "deadline": time.time() + 30,
            "method": "GET",
            "path": f"/api/clients/{EP}/3/0/0",
            "query": "",
            "headers": [],
            "body": "",
        }
        bad: list[Any] = [
            b"\xff\xfe not json",
            "[1, 2]",
            json.dumps({**good, "v": 2}),
            json.dumps({**good, "headers": [["only-a-name"]]}),
            json.dumps({**good, "body": "***"}),
            json.dumps({**good, "deadline": "soon"}),
            json.dumps({**good, "deadline": 1e400}),
            json.dumps({**good, "path": "api/clients"}),
            # An answer sent anywhere but the caller's reply channel is refused.
            json.dumps({**good, "reply": r.key("changes")}),
            json.dumps({"v": 1, "token": "x", "status": "200", "headers": [], "body": ""}),
        ]
        with caplog.at_level(logging.WARNING, logger="lwm2m.server.cluster_rpc"):
            for data in bad:
                await r.run(("PUBLISH", channel, data))
            await r.run(("PUBLISH", r.key("rpc:a:reply"), bad[-1]))
            # A request whose deadline passed is dropped without an answer.
            await r.run(("PUBLISH", channel, json.dumps({**good, "deadline": time.time() - 1})))
            # The listener still serves: a forwarded Read goes through.
            read = await b.http.get(f"/api/clients/{EP}/3/0/0")
            assert read.status_code == 200 and read.headers[SERVED_BY] == "a"
        assert a.rpc.malformed == len(bad) + 1
        assert a.rpc.expired == 1
        assert a.rpc.served == 1
        logged = [rec for rec in caplog.records if "malformed cluster RPC envelope" in rec.message]
        assert len(logged) == len(bad) + 1


async def test_a_forwarded_request_is_never_forwarded_again(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    async with _cluster(redis_url, tmp_path) as (a, b, _device):
        # The ownership moved to b after the caller looked it up: a runs it itself.
        await a.set_owner(EP, "b")
        caller = ClusterRpc(a.stores.redis, "caller")
        await caller.start()
        try:
            answer = await caller.call(
                "a", RpcRequest("GET", f"/api/clients/{EP}/3/0/0"), timeout=10
            )
        finally:
            await caller.stop()
        assert answer.status == 200
        assert json.loads(answer.body)["content"]["value"] == "ACME"
        assert dict(answer.headers)["content-type"] == "application/json"
        assert a.rpc.served == 1 and b.rpc.served == 0 and b.sent == []


async def test_stop_fails_pending_calls_and_in_flight_is_bounded(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    stores = await open_stores(redis_url, tmp_path / "x", node_id="x")
    assert isinstance(stores, RedisStores)
    r = stores.redis
    mute = r.client.pubsub()
    await mute.subscribe(r.key("rpc:mute"))
    rpc = ClusterRpc(r, "x", max_in_flight=1)
    await rpc.start()
    try:
        pending = asyncio.create_task(rpc.call("mute", RpcRequest("GET", "/x"), timeout=60))
        envelope = await _published(mute)
        assert envelope["reply"] == r.key("rpc:x:reply")
        with pytest.raises(RpcBusy):
            await rpc.call("mute", RpcRequest("GET", "/y"), timeout=60)
        await asyncio.wait_for(rpc.stop(), 5)
        with pytest.raises(RpcClosed):
            await asyncio.wait_for(pending, 5)
        with pytest.raises(RpcClosed):
            await rpc.call("mute", RpcRequest("GET", "/z"), timeout=1)
    finally:
        await rpc.stop()
        await mute.aclose()
        await stores.close()


async def test_a_busy_owner_answers_at_once(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    stores = await open_stores(redis_url, tmp_path / "x", node_id="x")
    assert isinstance(stores, RedisStores)
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(request: RpcRequest) -> RpcResponse:
        entered.set()
        await release.wait()
        return RpcResponse(200)

    owner = ClusterRpc(stores.redis, "owner", handler=slow, max_in_flight=1)
    caller = ClusterRpc(stores.redis, "caller")
    await owner.start()
    await caller.start()
    try:
        first = asyncio.create_task(caller.call("owner", RpcRequest("GET", "/1"), timeout=30))
        await asyncio.wait_for(entered.wait(), 10)
        with pytest.raises(RpcBusy, match="owner is busy"):
            await caller.call("owner", RpcRequest("GET", "/2"), timeout=30)
        release.set()
        assert (await asyncio.wait_for(first, 10)).status == 200
    finally:
        await caller.stop()
        await owner.stop()
        await stores.close()


def test_which_requests_talk_to_a_device() -> None:
    assert device_endpoint("GET", "/api/clients/dev/3/0/0") == "dev"
    assert device_endpoint("POST", "/api/clients/dev/1/0/8") == "dev"
    assert device_endpoint("PUT", "/api/clients/dev/composite") == "dev"
    assert device_endpoint("DELETE", "/api/clients/dev/3/0/observe") == "dev"
    assert device_endpoint("GET", "/api/clients/dev") is None
    assert device_endpoint("GET", "/api/clients/dev/") is None
    assert device_endpoint("GET", "/api/clients") is None
    assert device_endpoint("GET", "/api/objectspecs/dev") is None
    assert device_endpoint("HEAD", "/api/clients/dev/3/0/0") is None


def test_the_wait_honours_the_operation_timeout() -> None:
    forwarding = Forwarding(rpc=None, owners=None, timeout_s=10, margin_s=2)  # type: ignore[arg-type]
    assert forward_wait("", forwarding) == 10
    assert forward_wait("timeout=30", forwarding) == 32
    assert forward_wait("format=TLV&timeout=3", forwarding) == 10
    assert forward_wait("timeout=abc", forwarding) == 10
    assert forward_wait("timeout=nan", forwarding) == 10


async def test_the_server_command_forwards_to_the_owner(redis_url: str, tmp_path: FsPath) -> None:
    """Two ``lwm2m server`` processes on one Redis: the command wires the forwarding."""

    async def answer(request: Any) -> Message:
        return Message(Code.CONTENT, payload=b"hello", content_format=int(ContentFormat.TEXT))

    procs: dict[str, asyncio.subprocess.Process] = {}
    http: dict[str, int] = {}
    coap: dict[str, int] = {}
    device = await Endpoint.create("127.0.0.1", 0, handler=answer)
    try:
        for node in ("a", "b"):
            http[node] = free_tcp_port()
            procs[node] = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "lwm2m", "server", "--store", redis_url),
                *("--node-id", node, "--coap-port", "0", "--coaps-port", "0", "--no-bootstrap"),
                *("--http-port", str(http[node]), "--data", str(tmp_path / node)),
                *("--cluster-forward-timeout", "5"),
                stderr=asyncio.subprocess.PIPE,
            )
        for node, proc in procs.items():
            assert proc.stderr is not None
            found = await output_line(
                proc.stderr, r"listening on coap://127\.0\.0\.1:(\d+)", timeout=30
            )
            coap[node] = int(found.group(1))
            await output_line(proc.stderr, r"REST API on http://", timeout=30)
        reply = await device.request(
            register_message(("ep=cmd-fwd",)), ("127.0.0.1", coap["a"]), timeout=10
        )
        assert reply.code == Code.CREATED
        stores = await open_stores(redis_url, tmp_path / "t", node_id="t")
        assert isinstance(stores, RedisStores)
        try:
            r = stores.redis
            # Node a's own heartbeat keeps its liveness key (lwm2m server beats on Redis).
            assert await r.run(("EXISTS", r.key("node:a"))) == [1]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http['b']}") as client:
                read = await client.get("/api/clients/cmd-fwd/3/0/0", timeout=30)
                assert read.status_code == 200, read.text
                assert read.headers[SERVED_BY] == "a"
                assert read.json()["content"]["value"] == "hello"
                # A clean stop deletes the key at once (a crash lets it expire).
                procs["a"].send_signal(signal.SIGTERM)
                # An overrun stop ends by the watchdog (exit 1) well within 30 s, and
                # its report of what held it is in the rest of the output.
                status = await asyncio.wait_for(procs["a"].wait(), 30)
                assert status == 0, await _rest_of(procs["a"])
                gone = await client.get("/api/clients/cmd-fwd/3/0/0", timeout=30)
                assert gone.status_code == 503
        finally:
            await stores.close()
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            status = await asyncio.wait_for(proc.wait(), 30)
            assert status == 0, await _rest_of(proc)
    finally:
        await device.close()
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _rest_of(proc: asyncio.subprocess.Process) -> str:
    """What an ended process wrote to its stderr pipe after the lines already read."""
    assert proc.stderr is not None
    return (await asyncio.wait_for(proc.stderr.read(), 10)).decode(errors="replace")
