"""Test helpers: a fake wall clock, raw UDP peers speaking exact datagrams, simulated devices."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lwm2m.coap import codec
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RawPeer(asyncio.DatagramProtocol):
    """A plain UDP socket speaking exact CoAP datagrams (our codec), one at a time."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self._mid = 0x1000

    @classmethod
    async def create(cls, host: str = "127.0.0.1") -> RawPeer:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not an asyncio.DatagramTransport subclass.
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.inbox.put_nowait(codec.decode(data))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def send(self, message: Message, address: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(codec.encode(message), address)

    async def request(self, message: Message, address: tuple[str, int]) -> Message:
        """Send a CON request and return the piggybacked ACK."""
        self._mid += 1
        token = self._mid.to_bytes(2, "big")
        self.send(message.with_(type=MessageType.CON, mid=self._mid, token=token), address)
        while True:
            reply = await asyncio.wait_for(self.inbox.get(), 5)
            if reply.mid == self._mid and reply.type == MessageType.ACK:
                assert reply.token == token
                return reply

    async def receive_request(self) -> Message:
        while True:
            msg = await asyncio.wait_for(self.inbox.get(), 5)
            if msg.is_request:
                return msg

    def respond(self, request: Message, response: Message, address: tuple[str, int]) -> None:
        self.send(
            response.with_(type=MessageType.ACK, mid=request.mid, token=request.token), address
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def register_message(
    query: tuple[str, ...], payload: bytes = b"</1/0>,</3/0>", **options: Any
) -> Message:
    return Message(Code.POST, uri_path=("rd",), uri_query=query, payload=payload, **options)


Handler = Callable[[Any], Awaitable[Message]]


class Device:
    """A simulated LwM2M client on our CoAP endpoint: registers, answers with a handler."""

    def __init__(self, endpoint: Endpoint, server_address: tuple[str, int]) -> None:
        self.endpoint = endpoint
        self.server_address = server_address
        self.location: tuple[str, ...] = ()
        self.requests: list[Message] = []

    async def register(self, ep: str, *extra: str, payload: bytes = b"</1/0>,</3/0>") -> Message:
        response = await self.endpoint.request(
            register_message((f"ep={ep}", *extra), payload), self.server_address, timeout=5
        )
        if response.code == Code.CREATED:
            self.location = response.location_path
        return response

    async def update(self, *query: str, method: Code = Code.POST) -> Message:
        return await self.endpoint.request(
            Message(method, uri_path=self.location, uri_query=query), self.server_address, timeout=5
        )


async def output_line(
    stream: asyncio.StreamReader, pattern: str, timeout: float = 20
) -> re.Match[str]:
    """The first line of a server process's output matching ``pattern`` (each line
    waited for at most ``timeout`` seconds; the process exiting fails the test)."""
    while True:
        raw = await asyncio.wait_for(stream.readline(), timeout)
        assert raw, "the server exited"
        match = re.search(pattern, raw.decode())
        if match:
            return match


async def started_server(data: Path) -> tuple[asyncio.subprocess.Process, int]:
    """``lwm2m server`` on its default SQLite store in ``data``, and its CoAP port once it
    listens (every port picked by the command itself). The caller ends the process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lwm2m",
        "server",
        "--coap-port",
        "0",
        "--coaps-port",
        "0",
        "--http-port",
        "0",
        "--no-bootstrap",
        "--data",
        str(data),
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        found = await output_line(proc.stderr, r"listening on coap://127\.0\.0\.1:(\d+)")
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, int(found.group(1))


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
