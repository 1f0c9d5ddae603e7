"""The endpoint over a SecurityLayer, with a trivial fake layer (real DTLS is tested elsewhere)."""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint, IncomingRequest
from lwm2m.coap.errors import RequestTimeout, SecureConnectionFailed
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address, Peer, PeerIdentity
from lwm2m.coap.security_layer import (
    HandshakeCompleted,
    HandshakeFailed,
    SecurityEvent,
    SecurityLayer,
)

MAGIC = b"SEC:"


class FakeLayer:
    """'Protects' records by a prefix; refuses sessions with addresses in ``refuse``."""

    def __init__(self, identity: bytes) -> None:
        self.identity = identity
        self.refuse: set[Address] = set()
        self.sessions: set[Address] = set()
        self.records: list[tuple[bytes, Address]] = []
        self.events: deque[SecurityEvent] = deque()
        self.timer: float | None = None
        self.timer_fired = asyncio.Event()

    def receive_datagram(
        self, data: bytes, address: Address, now: float
    ) -> list[tuple[bytes, Peer]]:
        if not data.startswith(MAGIC):
            return []  # not a record of ours: dropped like a bad MAC
        if address not in self.sessions:
            self.sessions.add(address)
            self.events.append(HandshakeCompleted(address, Peer(address, self._peer_identity())))
        return [(data[len(MAGIC) :], Peer(address, self._peer_identity()))]

    def _peer_identity(self) -> PeerIdentity:
        return PeerIdentity(psk_identity=b"peer-of-" + self.identity)

    def send(self, plaintext: bytes, address: Address, now: float) -> None:
        if address in self.refuse:
            self.events.append(HandshakeFailed(address, "alert: handshake failure"))
            return
        self.records.append((MAGIC + plaintext, address))

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        records, self.records = self.records, []
        return records

    def next_event(self) -> SecurityEvent | None:
        return self.events.popleft() if self.events else None

    def get_timer(self) -> float | None:
        return self.timer

    def handle_timer(self, now: float) -> None:
        if self.timer is not None and now >= self.timer:
            self.timer = None
            self.timer_fired.set()


def test_fake_layer_satisfies_the_protocol() -> None:
    layer: SecurityLayer = FakeLayer(b"x")
    assert layer.get_timer() is None


async def handler(request: IncomingRequest) -> Message:
    identity = request.peer.identity
    assert identity is not None and identity.psk_identity is not None
    return Message(Code.CONTENT, payload=identity.psk_identity)


async def test_requests_flow_through_the_layer() -> None:
    server_layer, client_layer = FakeLayer(b"server"), FakeLayer(b"client")
    async with (
        await Endpoint.create(handler=handler, security=server_layer) as server,
        await Endpoint.create(security=client_layer) as client,
    ):
        response = await client.request(Message(Code.GET), server.local_address)
        # The handler saw the identity the layer proved.
        assert response.payload == b"peer-of-server"
        big = await client.request(Message(Code.PUT, payload=b"x" * 3000), server.local_address)
        assert big.code == Code.CONTENT
        assert client.local_address in server_layer.sessions


async def test_plain_coap_is_not_accepted_by_a_secure_endpoint() -> None:
    async with (
        await Endpoint.create(handler=handler, security=FakeLayer(b"s")) as server,
        await Endpoint.create(params=None) as plain,
    ):
        with pytest.raises(RequestTimeout):
            await plain.request(Message(Code.GET), server.local_address, timeout=0.2)


async def test_handshake_failure_fails_pending_requests_promptly() -> None:
    layer = FakeLayer(b"client")
    async with await Endpoint.create(security=layer) as client:
        target = ("127.0.0.1", 9)
        layer.refuse.add(target)
        with pytest.raises(SecureConnectionFailed, match="handshake failure"):
            await asyncio.wait_for(client.request(Message(Code.GET), target), 5)
        assert client.engine.pending_requests() == 0


async def test_layer_timer_is_honoured() -> None:
    layer = FakeLayer(b"client")
    async with await Endpoint.create(handler=handler, security=layer) as server:
        layer.timer = asyncio.get_running_loop().time() + 0.01
        server._pump(asyncio.get_running_loop().time())  # what any datagram would trigger
        await asyncio.wait_for(layer.timer_fired.wait(), 5)


async def test_tracer_sees_plaintext_and_ping_goes_through_the_layer() -> None:
    server_layer, client_layer = FakeLayer(b"server"), FakeLayer(b"client")
    seen: list[tuple[str, int, Address]] = []
    async with (
        await Endpoint.create(handler=handler, security=server_layer) as server,
        await Endpoint.create(security=client_layer) as client,
    ):
        server.add_message_tracer(lambda d, m, a: seen.append((d, int(m.code), a)))
        assert await client.ping(server.local_address, timeout=5) is True
        await client.request(Message(Code.GET), server.local_address)
        peer = client.local_address
        assert seen == [
            ("in", Code.EMPTY, peer),
            ("out", Code.EMPTY, peer),
            ("in", Code.GET, peer),
            ("out", Code.CONTENT, peer),
        ]
        # A refused handshake fails a ping instead of reporting a silent peer.
        target = ("127.0.0.1", 9)
        client_layer.refuse.add(target)
        with pytest.raises(SecureConnectionFailed):
            await asyncio.wait_for(client.ping(target), 5)
