"""Interop with aiocoap (an independent Python implementation), both directions."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint, IncomingRequest, ServerObservation
from lwm2m.coap.message import Message

aiocoap = pytest.importorskip("aiocoap", reason="aiocoap is not installed")
resource = pytest.importorskip("aiocoap.resource")

pytestmark = [
    pytest.mark.interop,
    # aiocoap's own shutdown path is not warning-clean on every version.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

BIG = bytes(range(256)) * 15  # 3840 bytes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- our client -> aiocoap server ---------------------------------------------------------


class Store(resource.Resource):  # type: ignore[misc, name-defined]
    def __init__(self) -> None:
        super().__init__()
        self.value = b"initial"

    async def render_get(self, request: Any) -> Any:
        return aiocoap.Message(payload=self.value)

    async def render_put(self, request: Any) -> Any:
        self.value = request.payload
        return aiocoap.Message(code=aiocoap.CHANGED)

    async def render_post(self, request: Any) -> Any:
        self.value += request.payload
        return aiocoap.Message(code=aiocoap.CHANGED, payload=b"appended")

    async def render_delete(self, request: Any) -> Any:
        self.value = b""
        return aiocoap.Message(code=aiocoap.DELETED)


class Counter(resource.ObservableResource):  # type: ignore[misc, name-defined]
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def bump(self) -> None:
        self.count += 1
        self.updated_state()

    async def render_get(self, request: Any) -> Any:
        return aiocoap.Message(payload=str(self.count).encode())


class Big(resource.Resource):  # type: ignore[misc, name-defined]
    async def render_get(self, request: Any) -> Any:
        return aiocoap.Message(payload=BIG)


@pytest.fixture
async def aiocoap_server() -> AsyncIterator[tuple[tuple[str, int], Store, Counter]]:
    site = resource.Site()
    store, counter = Store(), Counter()
    site.add_resource(["store"], store)
    site.add_resource(["counter"], counter)
    site.add_resource(["big"], Big())
    # aiocoap binds by number, so a free port is picked first; another process may take it
    # in between, hence a few tries.
    for attempt in range(5):
        port = free_port()
        try:
            context = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
            break
        except OSError:
            if attempt == 4:
                raise
    yield ("127.0.0.1", port), store, counter
    await context.shutdown()


async def test_our_client_against_aiocoap(
    aiocoap_server: tuple[tuple[str, int], Store, Counter],
) -> None:
    address, store, _ = aiocoap_server
    async with await Endpoint.create() as client:
        got = await client.request(Message(Code.GET, uri_path=("store",)), address)
        assert got.code == Code.CONTENT and got.payload == b"initial"
        put = await client.request(Message(Code.PUT, uri_path=("store",), payload=b"v2"), address)
        assert put.code == Code.CHANGED and store.value == b"v2"
        post = await client.request(Message(Code.POST, uri_path=("store",), payload=b"+"), address)
        assert post.payload == b"appended" and store.value == b"v2+"
        deleted = await client.request(Message(Code.DELETE, uri_path=("store",)), address)
        assert deleted.code == Code.DELETED and store.value == b""
        missing = await client.request(Message(Code.GET, uri_path=("nothing",)), address)
        assert missing.code == Code.NOT_FOUND


async def test_blockwise_against_aiocoap(
    aiocoap_server: tuple[tuple[str, int], Store, Counter],
) -> None:
    address, store, _ = aiocoap_server
    async with await Endpoint.create() as client:
        big = await client.request(Message(Code.GET, uri_path=("big",)), address)
        assert big.payload == BIG
        put = await client.request(
            Message(Code.PUT, uri_path=("store",), payload=BIG[::-1]), address
        )
        assert put.code == Code.CHANGED and store.value == BIG[::-1]


async def test_observe_aiocoap(aiocoap_server: tuple[tuple[str, int], Store, Counter]) -> None:
    address, _, counter = aiocoap_server
    async with await Endpoint.create() as client:
        obs = client.observe(Message(Code.GET, uri_path=("counter",)), address)
        first = await obs.first()
        assert first.payload == b"0" and first.observe is not None
        counter.bump()
        counter.bump()
        seen = []
        async for note in obs:
            seen.append(note.payload)
            if note.payload == b"2":
                break
        assert seen[-1] == b"2"
        await asyncio.wait_for(obs.cancel(), 10)
        for _ in range(100):  # aiocoap drops the observer on the deregistering GET
            if not counter._observations:
                break
            await asyncio.sleep(0.01)
        assert not counter._observations


# --- aiocoap client -> our server ----------------------------------------------------------


class OurResources:
    def __init__(self) -> None:
        self.value = b"ours"
        self.observations: list[ServerObservation] = []

    async def handle(self, request: IncomingRequest) -> Message:
        msg = request.message
        if msg.uri_path == ("big",):
            return Message(Code.CONTENT, payload=BIG)
        if msg.uri_path == ("obs",):
            if msg.observe == 0:
                self.observations.append(request.start_observation())
            return Message(Code.CONTENT, payload=b"n0")
        match msg.code:
            case Code.GET:
                return Message(Code.CONTENT, payload=self.value)
            case Code.PUT:
                self.value = msg.payload
                return Message(Code.CHANGED)
            case Code.POST:
                return Message(
                    Code.CREATED, location_path=("new",), payload=b"%d" % len(msg.payload)
                )
            case Code.DELETE:
                return Message(Code.DELETED)
        return Message(Code.METHOD_NOT_ALLOWED)


@pytest.fixture
async def aiocoap_client() -> AsyncIterator[Any]:
    context = await aiocoap.Context.create_client_context()
    yield context
    await context.shutdown()


async def test_aiocoap_client_against_our_server(aiocoap_client: Any) -> None:
    ours = OurResources()
    async with await Endpoint.create(handler=ours.handle) as server:
        base = f"coap://127.0.0.1:{server.local_address[1]}"

        async def ask(code: Any, path: str, payload: bytes = b"") -> Any:
            request = aiocoap.Message(code=code, uri=f"{base}/{path}", payload=payload)
            return await asyncio.wait_for(aiocoap_client.request(request).response, 10)

        got = await ask(aiocoap.GET, "v")
        assert got.code == aiocoap.CONTENT and got.payload == b"ours"
        assert (await ask(aiocoap.PUT, "v", b"theirs")).code == aiocoap.CHANGED
        assert ours.value == b"theirs"
        created = await ask(aiocoap.POST, "v", b"12345")
        assert created.code == aiocoap.CREATED and created.payload == b"5"
        assert list(created.opt.location_path) == ["new"]
        assert (await ask(aiocoap.DELETE, "v")).code == aiocoap.DELETED
        # Block2 from us, Block1 to us.
        assert (await ask(aiocoap.GET, "big")).payload == BIG
        assert (await ask(aiocoap.PUT, "v", BIG[::-1])).code == aiocoap.CHANGED
        assert ours.value == BIG[::-1]


async def test_aiocoap_client_observes_our_server(aiocoap_client: Any) -> None:
    ours = OurResources()
    async with await Endpoint.create(handler=ours.handle) as server:
        uri = f"coap://127.0.0.1:{server.local_address[1]}/obs"
        request = aiocoap_client.request(aiocoap.Message(code=aiocoap.GET, uri=uri, observe=0))
        first = await asyncio.wait_for(request.response, 10)
        assert first.payload == b"n0" and first.opt.observe is not None
        [observation] = ours.observations
        received = []

        async def collect() -> None:
            async for note in request.observation:
                received.append(note.payload)
                if len(received) == 3:
                    break

        collector = asyncio.create_task(collect())
        await observation.notify(Message(Code.CONTENT, payload=b"n1"))
        await observation.notify(Message(Code.CONTENT, payload=b"n2"), confirmable=True)
        await observation.notify(Message(Code.CONTENT, payload=b"n3"))
        await asyncio.wait_for(collector, 10)
        assert received == [b"n1", b"n2", b"n3"]
        request.observation.cancel()
