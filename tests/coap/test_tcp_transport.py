"""CoAP over TCP on real loopback sockets: requests both ways, Observe, Abort, drops, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import IncomingRequest, ServerObservation
from lwm2m.coap.errors import EndpointClosed
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer
from lwm2m.coap.tcp_connection import TcpConfig
from lwm2m.coap.tcp_framing import (
    Abort,
    Capabilities,
    FrameDecoder,
    encode_frame,
    encode_signal,
)
from lwm2m.coap.tcp_transport import NotConnected, TcpEndpoint

TIMEOUT = 10.0


async def echo(request: IncomingRequest) -> Message:
    return Message(Code.CONTENT, payload=request.message.path_str.encode())


@pytest.fixture
async def server() -> AsyncIterator[TcpEndpoint]:
    endpoint = await TcpEndpoint.listen("127.0.0.1", 0, handler=echo)
    yield endpoint
    await endpoint.close()


async def test_client_connects_on_demand_and_reuses_the_connection(server: TcpEndpoint) -> None:
    client = TcpEndpoint.connector(handler=echo)
    try:
        for path in ("a", "b"):
            response = await client.request(
                Message(Code.GET, uri_path=(path,)), server.local_address, timeout=TIMEOUT
            )
            assert response.code == Code.CONTENT and response.payload == f"/{path}".encode()
        assert server.connection_count == 1
    finally:
        await client.close()


async def test_a_plain_function_handler_answers_over_tcp() -> None:
    def plain(request: IncomingRequest) -> Message | asyncio.Future[Message]:
        if request.message.uri_path == ("later",):
            later: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            later.set_result(Message(Code.CONTENT, payload=b"later"))
            return later
        return Message(Code.CONTENT, payload=b"now")

    server = await TcpEndpoint.listen("127.0.0.1", 0, handler=plain)
    client = TcpEndpoint.connector(handler=echo)
    try:
        for path in ("now", "later"):
            response = await client.request(
                Message(Code.GET, uri_path=(path,)), server.local_address, timeout=TIMEOUT
            )
            assert response.code == Code.CONTENT and response.payload == path.encode()
    finally:
        await client.close()
        await server.close()


async def test_server_reaches_the_client_over_its_connection(server: TcpEndpoint) -> None:
    seen: asyncio.Queue[Peer] = asyncio.Queue()
    server.add_activity_listener(seen.put_nowait)
    client = TcpEndpoint.connector(handler=echo)
    try:
        await client.request(Message(Code.POST, uri_path=("rd",)), server.local_address)
        peer = await asyncio.wait_for(seen.get(), TIMEOUT)
        response = await server.request(
            Message(Code.GET, uri_path=("3", "0")), peer.address, timeout=TIMEOUT
        )
        assert response.payload == b"/3/0"
    finally:
        await client.close()


async def test_listening_endpoint_without_connection_raises_not_connected(
    server: TcpEndpoint,
) -> None:
    with pytest.raises(NotConnected):
        await server.request(Message(Code.GET), ("127.0.0.1", 9))


async def test_observe_over_tcp(server: TcpEndpoint) -> None:
    observations: asyncio.Queue[ServerObservation] = asyncio.Queue()
    cancelled = asyncio.Event()

    async def observed(request: IncomingRequest) -> Message:
        if request.message.observe == 0:
            observations.put_nowait(request.start_observation(on_cancel=cancelled.set))
        return Message(Code.CONTENT, payload=b"0")

    device = TcpEndpoint.connector(handler=observed)
    seen: asyncio.Queue[Peer] = asyncio.Queue()
    server.add_activity_listener(seen.put_nowait)
    try:
        await device.request(Message(Code.POST, uri_path=("rd",)), server.local_address)
        peer = await asyncio.wait_for(seen.get(), TIMEOUT)
        obs = server.observe(Message(Code.GET, uri_path=("3", "0", "9")), peer.address)
        first = await asyncio.wait_for(obs.first(), TIMEOUT)
        assert first.payload == b"0" and first.observe is not None
        served = await asyncio.wait_for(observations.get(), TIMEOUT)
        for value in (b"1", b"2", b"3"):
            await served.notify(Message(Code.CONTENT, payload=value))
        got = []
        async with asyncio.timeout(TIMEOUT):
            async for note in obs:
                got.append(note.payload)
                if len(got) == 3:
                    break
        assert got == [b"1", b"2", b"3"]
        await obs.cancel(timeout=TIMEOUT)
        await asyncio.wait_for(cancelled.wait(), TIMEOUT)  # the GET Observe=1 reached it
        assert served.cancelled
    finally:
        await device.close()


async def _raw(server: TcpEndpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*server.local_address)


async def _read_frames(reader: asyncio.StreamReader, count: int) -> list[object]:
    decoder = FrameDecoder(1 << 20)
    frames: list[object] = []
    async with asyncio.timeout(TIMEOUT):
        while len(frames) < count:
            data = await reader.read(4096)
            if not data:
                break
            frames.extend(decoder.feed(data))
    return frames


async def test_malformed_frame_gets_abort_and_the_server_keeps_serving(
    server: TcpEndpoint,
) -> None:
    reader, writer = await _raw(server)
    writer.write(encode_signal(Capabilities(1152)) + b"\x0f\x01garbage")
    frames = await _read_frames(reader, 2)
    assert isinstance(frames[0], Capabilities)
    assert isinstance(frames[1], Abort) and "reserved token length" in frames[1].diagnostic
    assert await reader.read() == b""  # closed after the Abort
    writer.close()
    # another client is served as before
    client = TcpEndpoint.connector()
    try:
        response = await client.request(Message(Code.GET, uri_path=("ok",)), server.local_address)
        assert response.payload == b"/ok"
    finally:
        await client.close()


async def test_connection_dropped_mid_request_fails_the_request_and_not_the_server() -> None:
    started = asyncio.Event()

    async def slow(request: IncomingRequest) -> Message:
        started.set()
        await asyncio.Event().wait()  # never answers
        raise AssertionError

    server = await TcpEndpoint.listen("127.0.0.1", 0, handler=slow)
    seen: asyncio.Queue[Peer] = asyncio.Queue()
    server.add_activity_listener(seen.put_nowait)
    try:
        # a raw peer sends a request then drops: the server's handler task is harmless
        _reader, writer = await _raw(server)
        writer.write(
            encode_signal(Capabilities(1152)) + encode_frame(Message(Code.GET, token=b"t"))
        )
        await asyncio.wait_for(started.wait(), TIMEOUT)
        writer.transport.abort()
        # the server's own request to a peer that drops fails with EndpointClosed
        reader2, writer2 = await _raw(server)
        writer2.write(encode_signal(Capabilities(1152)))
        peer = await asyncio.wait_for(seen.get(), TIMEOUT)
        while peer.address[1] != writer2.get_extra_info("sockname")[1]:
            peer = await asyncio.wait_for(seen.get(), TIMEOUT)
        pending = asyncio.ensure_future(
            server.request(Message(Code.GET), peer.address, timeout=TIMEOUT)
        )
        await _read_frames(reader2, 2)  # CSM + our request reached the peer
        writer2.transport.abort()
        with pytest.raises(EndpointClosed):
            await pending
        assert not server.is_connected(peer.address)
    finally:
        await server.close()


async def test_connection_limit_aborts_the_extra_connection() -> None:
    server = await TcpEndpoint.listen("127.0.0.1", 0, handler=echo, max_connections=1)
    try:
        first = TcpEndpoint.connector()
        await first.request(Message(Code.GET), server.local_address, timeout=TIMEOUT)
        reader, writer = await _raw(server)
        frames = await _read_frames(reader, 2)
        assert any(isinstance(f, Abort) and "limit" in f.diagnostic for f in frames)
        writer.close()
        await first.close()
    finally:
        await server.close()


async def test_keepalive_ping_keeps_an_idle_connection(server: TcpEndpoint) -> None:
    config = TcpConfig(keepalive_s=0.05, pong_timeout_s=5.0)
    client = TcpEndpoint.connector(config=config)
    try:
        await client.request(Message(Code.GET), server.local_address, timeout=TIMEOUT)
        assert await client.ping(server.local_address, timeout=TIMEOUT)
        assert client.is_connected(server.local_address)
    finally:
        await client.close()


async def test_server_close_fails_the_client_pending_request() -> None:
    blocked = asyncio.Event()

    async def never(request: IncomingRequest) -> Message:
        blocked.set()
        await asyncio.Event().wait()
        raise AssertionError

    server = await TcpEndpoint.listen("127.0.0.1", 0, handler=never)
    client = TcpEndpoint.connector()
    try:
        pending = asyncio.ensure_future(
            client.request(Message(Code.GET), server.local_address, timeout=TIMEOUT)
        )
        await asyncio.wait_for(blocked.wait(), TIMEOUT)
        await server.close()
        with pytest.raises(EndpointClosed):
            await pending
    finally:
        await client.close()
        await server.close()


async def test_message_tracer_sees_requests_and_responses(server: TcpEndpoint) -> None:
    client = TcpEndpoint.connector()
    try:
        await client.request(Message(Code.GET, uri_path=("a",)), server.local_address)
        seen: list[tuple[str, int, tuple[str, ...]]] = []
        # added while the connection is open: it applies to it at once
        server.add_message_tracer(lambda d, m, _a: seen.append((d, int(m.code), m.uri_path)))
        await client.request(Message(Code.GET, uri_path=("b",)), server.local_address)
        assert seen == [("in", int(Code.GET), ("b",)), ("out", int(Code.CONTENT), ())]
    finally:
        await client.close()
