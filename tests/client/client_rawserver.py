"""A raw CoAP socket playing the LwM2M server: exact datagrams, no engine in between."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from lwm2m.coap import codec
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message

Address = tuple[str, int]


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, owner: RawServer) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.owner._received(data, (addr[0], addr[1]))


class RawServer:
    """Collects requests from the client; answers and sends requests by hand."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[tuple[Message, Address]] = asyncio.Queue()
        self.notifications: asyncio.Queue[tuple[Message, Address]] = asyncio.Queue()
        self._responses: dict[bytes, asyncio.Future[Message]] = {}
        self._mids = itertools.count(0x1000)
        self._tokens = itertools.count(1)
        self.transport: asyncio.DatagramTransport | None = None
        self.address: Address = ("127.0.0.1", 0)
        self.auto_ack_notifications = True
        self.raw: list[tuple[bytes, Address]] = []

    async def start(self) -> RawServer:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Proto(self), local_addr=("127.0.0.1", 0)
        )
        self.transport = transport
        sock = transport.get_extra_info("sockname")
        self.address = (sock[0], sock[1])
        return self

    @property
    def uri(self) -> str:
        return f"coap://{self.address[0]}:{self.address[1]}"

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, message: Message, address: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(codec.encode(message), address)

    def _received(self, data: bytes, addr: Address) -> None:
        self.raw.append((data, addr))
        msg = codec.decode(data)
        if msg.is_request:
            self.requests.put_nowait((msg, addr))
            return
        if msg.is_response and msg.observe is not None and msg.token not in self._responses:
            if msg.type == MessageType.CON and self.auto_ack_notifications:
                self.send(Message(Code.EMPTY, MessageType.ACK, msg.mid), addr)
            self.notifications.put_nowait((msg, addr))
            return
        if msg.type == MessageType.CON and msg.is_response:
            self.send(Message(Code.EMPTY, MessageType.ACK, msg.mid), addr)
        if msg.is_response:
            fut = self._responses.pop(msg.token, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    async def next_request(self, timeout: float = 5.0) -> tuple[Message, Address]:
        return await asyncio.wait_for(self.requests.get(), timeout)

    async def next_notification(self, timeout: float = 5.0) -> Message:
        msg, _ = await asyncio.wait_for(self.notifications.get(), timeout)
        return msg

    def reply(self, request: Message, address: Address, code: Code, **options: Any) -> None:
        """Piggybacked response (ACK with the request's MID and token)."""
        self.send(Message(code, MessageType.ACK, request.mid, request.token, **options), address)

    async def request(self, message: Message, address: Address, timeout: float = 5.0) -> Message:
        token = next(self._tokens).to_bytes(4, "big")
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._responses[token] = fut
        self.send(
            message.with_(type=MessageType.CON, mid=next(self._mids) & 0xFFFF, token=token), address
        )
        return await asyncio.wait_for(fut, timeout)

    def forget_token(self, token: bytes) -> None:
        self._responses.pop(token, None)

    async def accept_registration(self, location: str = "abc") -> tuple[Message, Address]:
        """Wait for Register and answer 2.01 Location-Path rd/<location>."""
        while True:
            msg, addr = await self.next_request()
            if msg.code == Code.POST and msg.uri_path == ("rd",):
                self.reply(msg, addr, Code.CREATED, location_path=("rd", location))
                return msg, addr
            self.reply(msg, addr, Code.CHANGED)
