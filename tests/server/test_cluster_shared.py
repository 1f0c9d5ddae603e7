"""What two server nodes share through the store besides registrations (issue 12):
requests queued for sleeping clients, the Write-Attributes the server set, and the
bootstrap server's configurations and sessions.

Redis tests run a real redis-server (the ``redis_url`` fixture of conftest) and two nodes
(``test_cluster._node``) in this process; the SQLite tests show the same state surviving a restart of one node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path as FsPath
from typing import Any

import pytest
import test_cluster
from server_helpers import register_message

from lwm2m.bootstrap.history import RUNNING_NAMESPACE, SessionStatus
from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address
from lwm2m.formats.media import ContentFormat
from lwm2m.model.path import Path
from lwm2m.server import ClientNotFound, ClientTimeout, LwM2MServer, ServerConfig
from lwm2m.server.queue_relay import RedisQueueRelay
from lwm2m.server.queued_requests import QueuedRequests, QueuedResult
from lwm2m.stores import open_stores
from lwm2m.stores.base import Stores
from lwm2m.stores.memory import MemoryDocumentStore
from lwm2m.stores.redis import RedisStores


class FakeDevice:
    """A device on a real UDP socket: answers Reads, Write-Attributes; counts what it got."""

    def __init__(self) -> None:
        self.seen: list[Message] = []
        self.endpoint: Endpoint | None = None

    async def handle(self, request: Any) -> Message:
        message: Message = request.message
        self.seen.append(message)
        if message.code == Code.PUT:
            return Message(Code.CHANGED)
        return Message(Code.CONTENT, payload=b"awake", content_format=int(ContentFormat.TEXT))

    @property
    def reads(self) -> int:
        return sum(1 for m in self.seen if m.code == Code.GET)

    async def register(self, server: LwM2MServer, ep: str) -> tuple[str, ...]:
        assert self.endpoint is not None
        reply = await self.endpoint.request(
            register_message((f"ep={ep}", "lt=3600", "b=UQ")), server.coap_address, timeout=5
        )
        assert reply.code == Code.CREATED
        return reply.location_path

    async def update(self, server: LwM2MServer, location: tuple[str, ...]) -> None:
        assert self.endpoint is not None
        reply = await self.endpoint.request(
            Message(Code.POST, uri_path=location), server.coap_address, timeout=5
        )
        assert reply.code == Code.CHANGED


@asynccontextmanager
async def _device() -> AsyncIterator[FakeDevice]:
    device = FakeDevice()
    device.endpoint = await Endpoint.create("127.0.0.1", 0, handler=device.handle)
    try:
        yield device
    finally:
        await device.endpoint.close()


@asynccontextmanager
async def _server(stores: Stores, port: int = 0) -> AsyncIterator[LwM2MServer]:
    server = LwM2MServer(stores, config=ServerConfig(coap_port=port))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the event loop run until ``check()`` holds (a request is parked, ...)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


# ---------------------------------------------------------------- queued requests


async def test_a_request_queued_on_a_goes_once_when_the_device_wakes_on_b(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with (
        _device() as device,
        test_cluster._node(redis_url, tmp_path, "a") as (a, _),
        test_cluster._node(redis_url, tmp_path, "b") as (b, b_stores),
    ):
        location = await device.register(a, "sleepy")
        await b_stores.sync()
        reg = a.get_registration("sleepy")
        assert reg is not None
        a.queue.sleep_now(reg.id)
        read = asyncio.ensure_future(a.read("sleepy", "/3/0/0", timeout=20))
        await _until(lambda: a.queue.queued(reg.id) == 1)
        assert await b.queued.count(reg.id) == 1  # in the store, seen from b
        assert device.reads == 0
        # The device wakes on b only: b sends, and a's caller gets the answer.
        await device.update(b, location)
        response = await asyncio.wait_for(read, 10)
        assert response.content.value == "awake"  # type: ignore[union-attr]
        assert device.reads == 1

        # One request queued on each node; the device wakes on both at once.
        a.queue.sleep_now(reg.id)
        b.queue.sleep_now(reg.id)
        reads = [
            asyncio.ensure_future(node.read("sleepy", "/3/0/0", timeout=20)) for node in (a, b)
        ]
        await _until(lambda: a.queue.queued(reg.id) == 1 and b.queue.queued(reg.id) == 1)
        await asyncio.gather(device.update(a, location), device.update(b, location))
        for answered in await asyncio.wait_for(asyncio.gather(*reads), 10):
            assert answered.content.value == "awake"  # type: ignore[union-attr]
        assert device.reads == 3  # each queued request went out exactly once
        assert await a.queued.count(reg.id) == 0


async def test_a_request_queued_on_a_node_that_stops_is_sent_by_the_other(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with (
        _device() as device,
        test_cluster._node(redis_url, tmp_path, "b") as (b, b_stores),
    ):
        async with test_cluster._node(redis_url, tmp_path, "a") as (a, _):
            location = await device.register(a, "orphan")
            reg = a.get_registration("orphan")
            assert reg is not None
            a.queue.sleep_now(reg.id)
            read = asyncio.ensure_future(a.read("orphan", "/3/0/0"))
            await _until(lambda: a.queue.queued(reg.id) == 1)
        with pytest.raises(ClientNotFound):  # its caller went with node a
            await asyncio.wait_for(read, 5)
        await b_stores.sync()
        assert await b.queued.count(reg.id) == 1
        await device.update(b, location)
        await _until(lambda: device.reads == 1)
        await b.wait_background()
        assert await b.queued.count(reg.id) == 0


async def test_queued_requests_survive_a_restart_on_sqlite(tmp_path: FsPath) -> None:
    async with _device() as device:
        stores = await open_stores("sqlite", tmp_path)
        async with _server(stores) as first:
            port = first.coap_address[1]
            location = await device.register(first, "sqlite-sleepy")
            reg = first.get_registration("sqlite-sleepy")
            assert reg is not None
            first.queue.sleep_now(reg.id)
            read = asyncio.ensure_future(first.read("sqlite-sleepy", "/3/0/0"))
            await _until(lambda: first.queue.queued(reg.id) == 1)
        with pytest.raises(ClientNotFound):
            await asyncio.wait_for(read, 5)
        await stores.close()
        stores = await open_stores("sqlite", tmp_path)
        try:
            async with _server(stores, port) as second:
                assert await second.queued.count(reg.id) == 1
                assert device.reads == 0
                await device.update(second, location)
                await _until(lambda: device.reads == 1)
                await second.wait_background()
                assert await second.queued.count(reg.id) == 0
        finally:
            await stores.close()


async def test_a_request_past_its_deadline_is_dropped_unsent() -> None:
    docs = MemoryDocumentStore()
    now = [1000.0]
    queue = QueuedRequests(docs, node_id="a", clock=lambda: now[0])
    request, future = await queue.enqueue("r1", "ep", Message(Code.GET, uri_path=("3",)), 5.0)
    sent: list[Message] = []

    async def send(message: Message) -> QueuedResult:
        sent.append(message)
        return QueuedResult(response=Message(Code.CONTENT))

    now[0] += 6
    assert await queue.drain("r1", send) == 0
    assert sent == [] and (await future).error == "timeout"
    assert await queue.withdraw(request) is False  # already popped: nothing to withdraw


async def test_a_withdrawn_request_is_not_sent() -> None:
    docs = MemoryDocumentStore()
    queue = QueuedRequests(docs, node_id="a", clock=lambda: 1000.0)
    request, _ = await queue.enqueue("r1", "ep", Message(Code.GET, uri_path=("3",)), None)
    assert await queue.withdraw(request) is True

    async def send(message: Message) -> QueuedResult:
        raise AssertionError("a withdrawn request went out")

    assert await queue.drain("r1", send) == 0


async def test_a_queued_request_times_out_while_the_device_sleeps(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with (
        _device() as device,
        test_cluster._node(redis_url, tmp_path, "a") as (a, _),
    ):
        await device.register(a, "deep-sleeper")
        reg = a.get_registration("deep-sleeper")
        assert reg is not None
        a.queue.sleep_now(reg.id)
        with pytest.raises(ClientTimeout, match="stayed asleep"):
            await a.read("deep-sleeper", "/3/0/0", timeout=0.2)
        assert await a.queued.count(reg.id) == 0


async def test_bad_relay_messages_are_logged_and_skipped(
    redis_url: str, tmp_path: FsPath, caplog: pytest.LogCaptureFixture
) -> None:
    stores = await open_stores(redis_url, tmp_path, node_id="a")
    assert isinstance(stores, RedisStores)
    woken: list[str] = []
    answers: list[tuple[str, QueuedResult]] = []

    def answer(request_id: str, result: QueuedResult) -> bool:
        answers.append((request_id, result))
        return True

    relay = RedisQueueRelay(stores.redis, "a", on_queued=woken.append, on_answer=answer)
    try:
        with caplog.at_level(logging.ERROR, logger="lwm2m.server.queue_relay"):
            for bad in (
                b"\xff",
                b"[]",
                b'{"kind": "queued"}',
                b'{"kind": "nope"}',
                b'{"kind": "answer", "node": "a", "id": "x", "result": {"response": 3}}',
                b'{"kind": "answer", "node": "a", "id": "x", "result": {}}',
            ):
                relay.receive(bad)
        assert len(caplog.records) == 6 and woken == [] and answers == []
        relay.receive(b'{"kind": "answer", "node": "b", "id": "x", "result": {"error": "t"}}')
        relay.receive(b'{"kind": "queued", "registration_id": "r1"}')
        relay.receive(b'{"kind": "answer", "node": "a", "id": "x", "result": {"error": "t"}}')
        assert woken == ["r1"] and answers == [("x", QueuedResult(error="t"))]
    finally:
        await stores.close()


# ---------------------------------------------------------------- Write-Attributes


async def test_attributes_set_on_a_are_known_on_b(redis_url: str, tmp_path: FsPath) -> None:
    async with (
        _device() as device,
        test_cluster._node(redis_url, tmp_path, "a") as (a, _),
        test_cluster._node(redis_url, tmp_path, "b") as (b, b_stores),
    ):
        await device.register(a, "attrs")
        reg = a.get_registration("attrs")
        assert reg is not None
        a.queue.on_activity(reg)  # awake: the Write-Attributes goes at once
        await a.write_attributes("attrs", "/3/0/9", {"pmin": 5, "pmax": 60}, timeout=5)
        await a.write_attributes("attrs", "/3/0", {"gt": 1.5}, timeout=5)
        await a.write_attributes("attrs", "/3/0/9", {"pmin": None}, timeout=5)
        assert await b.attributes_set("attrs") == {
            Path.parse("/3/0"): {"gt": 1.5},
            Path.parse("/3/0/9"): {"pmax": 60},
        }
        await b_stores.sync()
        await b.deregister("attrs")  # the client leaves: what it was told no longer holds
        assert await a.attributes_set("attrs") == {}


async def test_attributes_set_survive_a_restart_on_sqlite(tmp_path: FsPath) -> None:
    async with _device() as device:
        stores = await open_stores("sqlite", tmp_path)
        try:
            async with _server(stores) as first:
                await device.register(first, "attrs-sqlite")
                reg = first.get_registration("attrs-sqlite")
                assert reg is not None
                first.queue.on_activity(reg)
                await first.write_attributes("attrs-sqlite", "/3/0/9", {"pmax": 30}, timeout=5)
        finally:
            await stores.close()
        stores = await open_stores("sqlite", tmp_path)
        try:
            async with _server(stores) as second:
                assert await second.attributes_set("attrs-sqlite") == {
                    Path.parse("/3/0/9"): {"pmax": 30}
                }
        finally:
            await stores.close()


# ---------------------------------------------------------------- bootstrap


class HeldClient:
    """A bootstrap client (the :class:`Requester` a push uses) that holds Bootstrap-Finish."""

    def __init__(self) -> None:
        self.finishing = asyncio.Event()
        self.release = asyncio.Event()

    async def request(
        self, message: Message, address: Address, *, timeout: float | None = None
    ) -> Message:
        if message.code == Code.DELETE:
            return Message(Code.DELETED)
        if message.uri_path == ("bs",):
            self.finishing.set()
            await self.release.wait()
        return Message(Code.CHANGED)


CONFIG = {"servers": [{"short_server_id": 1, "uri": "coap://127.0.0.1:5683"}]}


async def _bootstrap_across(first: BootstrapServer, second: BootstrapServer) -> None:
    """A session pushed by ``first`` is seen running, then ended, by ``second``."""
    await first.configs.put("bs-dev", CONFIG)
    config = await second.configs.fetch("bs-dev")
    assert config is not None and second.configs.needs_bootstrap("bs-dev")
    client = HeldClient()
    first.attach(client)
    second.attach(HeldClient())
    push = asyncio.ensure_future(first.push("bs-dev", ("127.0.0.1", 9)))
    await asyncio.wait_for(client.finishing.wait(), 5)
    await first.sessions.flush()
    (running,) = await second.sessions.shared_list("bs-dev")
    assert running.status is SessionStatus.RUNNING and len(running.steps) >= 2
    busy = await second.push("bs-dev", ("127.0.0.1", 9))
    assert busy.failure is not None and busy.failure.value == "busy"
    client.release.set()
    done = await asyncio.wait_for(push, 5)
    assert done.ok
    listed = await second.sessions.shared_list("bs-dev")
    assert [(r.id, r.status) for r in listed] == [  # newest end first
        (done.id, SessionStatus.FINISHED),
        (busy.id, SessionStatus.FAILED),
    ]
    assert await second.configs.fetch("bs-dev") is not None
    assert not second.configs.needs_bootstrap("bs-dev")  # the applied mark is shared too


async def test_bootstrap_configs_and_sessions_of_a_are_seen_on_b(
    redis_url: str, tmp_path: FsPath
) -> None:
    a_stores = await open_stores(redis_url, tmp_path, node_id="a")
    b_stores = await open_stores(redis_url, tmp_path, node_id="b")
    a = BootstrapServer(documents=a_stores.documents, node_id="a")
    b = BootstrapServer(documents=b_stores.documents, node_id="b")
    try:
        await a.load()
        await b.load()
        await _bootstrap_across(a, b)
    finally:
        await a.close()
        await b.close()
        await a_stores.close()
        await b_stores.close()


async def test_a_session_left_running_by_a_dead_node_ends_in_the_history() -> None:
    docs = MemoryDocumentStore()
    now = [1000.0]
    first = BootstrapServer(documents=docs, node_id="a", clock=lambda: now[0])
    await first.configs.put("bs-dead", CONFIG)
    client = HeldClient()
    first.attach(client)
    push = asyncio.ensure_future(first.push("bs-dead", ("127.0.0.1", 9)))
    try:
        await asyncio.wait_for(client.finishing.wait(), 5)
        await first.sessions.flush()
        second = BootstrapServer(documents=docs, node_id="b", clock=lambda: now[0])
        await second.load()
        assert await second.sessions.running_elsewhere("bs-dead") is not None
        now[0] += first.sessions.stale_after_s + 1  # node a stopped moving
        (abandoned,) = await second.sessions.shared_list("bs-dead")
        assert abandoned.status is SessionStatus.FAILED
        assert abandoned.message.startswith("abandoned")
        assert await docs.items(RUNNING_NAMESPACE) == []
    finally:
        push.cancel()
        await asyncio.gather(push, return_exceptions=True)
        await first.close()


async def test_bootstrap_sessions_survive_a_restart_on_sqlite(tmp_path: FsPath) -> None:
    stores = await open_stores("sqlite", tmp_path)
    try:
        first = BootstrapServer(documents=stores.documents)
        await first.load()
        await _bootstrap_across(first, BootstrapServer(documents=stores.documents, node_id="x"))
        await first.close()
    finally:
        await stores.close()
    stores = await open_stores("sqlite", tmp_path)
    try:
        again = BootstrapServer(documents=stores.documents)
        await again.load()
        assert [r.status for r in await again.sessions.shared_list("bs-dev")] == [
            SessionStatus.FINISHED,
            SessionStatus.FAILED,
        ]
        assert not again.configs.needs_bootstrap("bs-dev")
    finally:
        await stores.close()
