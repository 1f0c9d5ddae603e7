"""A raw UDP peer that plays an LwM2M client byte for byte (exact wire checks)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from lwm2m.coap import codec
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message

Address = tuple[str, int]


class RawPeer(asyncio.DatagramProtocol):
    """Sends hand-built CoAP messages and receives decoded ones, with their source."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Message, Address]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self._mids = itertools.count(0x1000)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.queue.put_nowait((codec.decode(data), (addr[0], addr[1])))

    @property
    def address(self) -> Address:
        assert self.transport is not None
        sock = self.transport.get_extra_info("sockname")
        return (sock[0], sock[1])

    def send(self, message: Message, to: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(codec.encode(message), to)

    async def receive(self, timeout: float = 5.0) -> tuple[Message, Address]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def request(self, message: Message, to: Address) -> Message:
        """Send a CON request and return its piggybacked response."""
        mid = next(self._mids)
        token = mid.to_bytes(2, "big")
        self.send(message.with_(type=MessageType.CON, mid=mid, token=token), to)
        response, _ = await self.receive()
        assert response.type is MessageType.ACK and response.mid == mid
        assert response.token == token
        return response

    def answer(
        self, request: Message, to: Address, code: Code, payload: bytes = b"", **kw: Any
    ) -> None:
        """Piggyback a response on the ACK of a CON request."""
        assert request.type is MessageType.CON
        self.send(
            Message(
                code,
                type=MessageType.ACK,
                mid=request.mid,
                token=request.token,
                payload=payload,
                **kw,
            ),
            to,
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_raw_peer() -> RawPeer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.1", 0))
    return peer
