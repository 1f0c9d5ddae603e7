"""Helpers for the DTLS tests: an in-memory link between two layers and a UDP harness.

No tests here; the other ``test_dtls_*`` modules import from this one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from lwm2m.coap.dtls import (
    DtlsClient,
    DtlsServer,
    HandshakeCompleted,
    HandshakeFailed,
    SecurityEvent,
    SecurityLayer,
)
from lwm2m.coap.peer import Address, Peer

SERVER_ADDR: Address = ("127.0.0.1", 5684)
CLIENT_ADDR: Address = ("127.0.0.1", 40001)

PSK_ID = b"dev-1-id"
PSK_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


def psk_store(entries: dict[bytes, bytes]) -> Callable[[bytes], bytes | None]:
    return entries.get


@dataclass
class Link:
    """A client and a server layer joined in memory, with a fake clock.

    ``drop`` decides per datagram (direction, data) whether it is lost.
    """

    client: DtlsClient
    server: DtlsServer
    client_addr: Address = CLIENT_ADDR
    server_addr: Address = SERVER_ADDR
    now: float = 0.0
    server_received: list[tuple[bytes, Peer]] = field(default_factory=list)
    client_received: list[tuple[bytes, Peer]] = field(default_factory=list)
    client_events: list[SecurityEvent] = field(default_factory=list)
    server_events: list[SecurityEvent] = field(default_factory=list)
    to_server: list[bytes] = field(default_factory=list)
    to_client: list[bytes] = field(default_factory=list)
    drop: Callable[[str, bytes], bool] = lambda _direction, _data: False

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            moved = False
            for data, addr in self.client.datagrams_to_send():
                assert addr == self.server_addr
                moved = True
                self.to_server.append(data)
                if not self.drop("c2s", data):
                    self.server_received += self.server.receive_datagram(
                        data, self.client_addr, self.now
                    )
            for data, addr in self.server.datagrams_to_send():
                assert addr == self.client_addr
                moved = True
                self.to_client.append(data)
                if not self.drop("s2c", data):
                    self.client_received += self.client.receive_datagram(
                        data, self.server_addr, self.now
                    )
            self._collect_events()
            if not moved:
                return
        raise AssertionError("link did not settle")

    def _collect_events(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.client_events.append(event)
        while (event := self.server.next_event()) is not None:
            self.server_events.append(event)

    def client_send(self, data: bytes) -> None:
        self.client.send(data, self.server_addr, self.now)
        self.pump()

    def server_send(self, data: bytes) -> None:
        self.server.send(data, self.client_addr, self.now)
        self.pump()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for layer in (self.client, self.server):
            timer = layer.get_timer()
            if timer is not None and timer <= self.now:
                layer.handle_timer(self.now)
        self.pump()

    def completed(self, events: list[SecurityEvent]) -> list[HandshakeCompleted]:
        return [e for e in events if isinstance(e, HandshakeCompleted)]

    def failed(self, events: list[SecurityEvent]) -> list[HandshakeFailed]:
        return [e for e in events if isinstance(e, HandshakeFailed)]


class UdpHarness(asyncio.DatagramProtocol):
    """A minimal asyncio UDP pump for one security layer (stands in for the endpoint)."""

    def __init__(self, layer: SecurityLayer) -> None:
        self.layer = layer
        self.transport: asyncio.DatagramTransport | None = None
        self.received: asyncio.Queue[tuple[bytes, Peer]] = asyncio.Queue()
        self.events: asyncio.Queue[SecurityEvent] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None
        self.on_plaintext: Callable[[bytes, Peer], None] | None = None
        #: return True to lose an outgoing datagram (simulated packet loss)
        self.drop_outgoing: Callable[[bytes], bool] = lambda _data: False
        self.sent: list[bytes] = []

    @classmethod
    async def create(cls, layer: SecurityLayer) -> UdpHarness:
        loop = asyncio.get_running_loop()
        _transport, protocol = await loop.create_datagram_endpoint(
            lambda: cls(layer), local_addr=("127.0.0.1", 0)
        )
        return protocol

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        now = asyncio.get_running_loop().time()
        address = (str(addr[0]), int(str(addr[1])))
        for plaintext, peer in self.layer.receive_datagram(data, address, now):
            if self.on_plaintext is not None:
                self.on_plaintext(plaintext, peer)
            self.received.put_nowait((plaintext, peer))
        self._service()

    def send(self, plaintext: bytes, address: Address) -> None:
        self.layer.send(plaintext, address, asyncio.get_running_loop().time())
        self._service()

    def _service(self) -> None:
        assert self.transport is not None
        for data, address in self.layer.datagrams_to_send():
            self.sent.append(data)
            if not self.drop_outgoing(data):
                self.transport.sendto(data, address)
        while (event := self.layer.next_event()) is not None:
            self.events.put_nowait(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.layer.get_timer()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.layer.handle_timer(asyncio.get_running_loop().time())
        self._service()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()


async def next_event_of(
    harness: UdpHarness, kind: type[SecurityEvent], timeout: float = 10.0
) -> SecurityEvent:
    async def wait() -> SecurityEvent:
        while True:
            event = await harness.events.get()
            if isinstance(event, kind):
                return event

    return await asyncio.wait_for(wait(), timeout)
