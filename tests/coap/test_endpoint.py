"""The asyncio endpoint over real UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest

from lwm2m.coap.codec import decode, encode
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.endpoint import (
    NO_RESPONSE,
    ClientObservation,
    Endpoint,
    IncomingRequest,
    NoResponse,
    ServerObservation,
)
from lwm2m.coap.errors import EndpointClosed, ObservationCancelled, RequestTimeout, ResetReceived
from lwm2m.coap.message import Message
from lwm2m.coap.params import TransmissionParameters
from lwm2m.coap.peer import Address, Peer

SEEDS = [1, 2]
FAST = TransmissionParameters(ack_timeout_s=0.05, separate_response_delay_s=0.02)


class RawPeer(asyncio.DatagramProtocol):
    """A lock-step UDP peer: records what it gets, sends exact bytes."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.put_nowait((data, addr))

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def send(self, data: bytes, address: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, address)

    async def next(self) -> tuple[Message, Address]:
        data, addr = await asyncio.wait_for(self.received.get(), 5)
        return decode(data), addr


@pytest.fixture
async def raw() -> AsyncIterator[RawPeer]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.1", 0))
    yield proto
    transport.close()


async def echo(request: IncomingRequest) -> Message:
    msg = request.message
    if msg.uri_path == ("boom",):
        raise RuntimeError("handler bug")
    if msg.uri_path == ("big",):
        return Message(Code.CONTENT, payload=bytes(range(256)) * 20)
    if msg.uri_path == ("slow",):
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return Message(Code.CONTENT, payload=b"slow")
    return Message(
        Code.CHANGED if msg.payload else Code.CONTENT, payload=b"got %d" % len(msg.payload)
    )


@pytest.fixture(params=["eager", "task", "inline"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Endpoint, Endpoint]]:
    server = await Endpoint.create(
        handler=echo,
        eager_handlers=request.param == "eager",
        inline_handlers=request.param == "inline",
    )
    client = await Endpoint.create()
    yield client, server
    await client.close()
    await server.close()


async def test_methods_round_trip(pair: tuple[Endpoint, Endpoint]) -> None:
    client, server = pair
    for code in (Code.GET, Code.PUT, Code.POST, Code.DELETE):
        response = await client.request(
            Message(code, uri_path=("r",), payload=b"abc"), server.local_address
        )
        assert response.payload == b"got 3"
    response = await client.request(Message(Code.GET, uri_path=("slow",)), server.local_address)
    assert response.payload == b"slow"
    assert client.engine.pending_requests() == 0


async def test_handler_exception_becomes_500(pair: tuple[Endpoint, Endpoint]) -> None:
    client, server = pair
    response = await client.request(Message(Code.GET, uri_path=("boom",)), server.local_address)
    assert response.code == Code.INTERNAL_SERVER_ERROR
    # and the endpoint keeps serving
    response = await client.request(Message(Code.GET, uri_path=("ok",)), server.local_address)
    assert response.code == Code.CONTENT


async def test_bad_handler_results() -> None:
    async def wrong(request: IncomingRequest) -> Message:
        return Message(Code.GET)  # a request code is no response

    async with await Endpoint.create(handler=wrong) as server, await Endpoint.create() as client:
        response = await client.request(Message(Code.GET), server.local_address)
        assert response.code == Code.INTERNAL_SERVER_ERROR
        response = await client.request(Message(Code.GET), client.local_address)  # no handler
        assert response.code == Code.NOT_FOUND


@pytest.mark.parametrize("inline", [False, True])
async def test_a_plain_function_handler_answers_on_the_spot_or_later(inline: bool) -> None:
    """A handler may return the answer itself (no coroutine), or an awaitable of it."""
    loop = asyncio.get_running_loop()
    later: asyncio.Future[Message] = loop.create_future()

    def plain(request: IncomingRequest) -> Message | NoResponse | asyncio.Future[Message]:
        path = request.message.uri_path
        if path == ("now",):
            return Message(Code.CONTENT, payload=b"now")
        if path == ("later",):
            loop.call_later(0.05, later.set_result, Message(Code.CONTENT, payload=b"later"))
            return later
        if path == ("boom",):
            raise RuntimeError("a bug in the handler")
        if path == ("wrong",):
            return cast(Message, "not a message")
        return NO_RESPONSE

    server = await Endpoint.create(handler=plain, inline_handlers=inline)
    client = await Endpoint.create(
        params=TransmissionParameters(ack_timeout_s=0.2, ack_random_factor=1.0, max_retransmit=1)
    )
    async with server, client:
        for path, code, payload in (
            ("now", Code.CONTENT, b"now"),
            ("later", Code.CONTENT, b"later"),
            ("boom", Code.INTERNAL_SERVER_ERROR, b""),
            ("wrong", Code.INTERNAL_SERVER_ERROR, b""),
            ("now", Code.CONTENT, b"now"),  # and it serves on
        ):
            response = await client.request(
                Message(Code.GET, uri_path=(path,)), server.local_address
            )
            assert (response.code, response.payload) == (code, payload)
        with pytest.raises(RequestTimeout):  # NO_RESPONSE: nothing at all comes back
            await client.request(Message(Code.GET, uri_path=("silent",)), server.local_address)


async def test_blockwise_both_ways(pair: tuple[Endpoint, Endpoint]) -> None:
    client, server = pair
    response = await client.request(Message(Code.GET, uri_path=("big",)), server.local_address)
    assert response.payload == bytes(range(256)) * 20
    response = await client.request(Message(Code.PUT, payload=b"x" * 5000), server.local_address)
    assert response.payload == b"got 5000"


async def test_malformed_datagrams_do_not_stop_the_endpoint(
    pair: tuple[Endpoint, Endpoint], raw: RawPeer
) -> None:
    client, server = pair
    raw.send(b"\x40\x01\xbe\xef\xf1", server.local_address)  # CON, reserved option delta
    reply, _ = await raw.next()
    assert reply == Message(Code.EMPTY, MessageType.RST, 0xBEEF)
    for junk in (b"", b"\xff", b"\x40", b"\x4f\x01\x00\x00", bytes(range(256))):
        raw.send(junk, server.local_address)
    response = await client.request(Message(Code.GET), server.local_address)
    assert response.code == Code.CONTENT


async def test_timeout_and_cancellation_free_state(raw: RawPeer) -> None:
    async with await Endpoint.create() as client:
        with pytest.raises(RequestTimeout):
            await client.request(Message(Code.GET), raw.address, timeout=0.1)
        assert client.engine.pending_requests() == 0
        task = asyncio.create_task(client.request(Message(Code.GET), raw.address))
        await raw.next()  # the request is on the wire
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.engine.pending_requests() == 0


async def test_retransmissions_exhausted(raw: RawPeer) -> None:
    params = TransmissionParameters(ack_timeout_s=0.01, max_retransmit=2)
    async with await Endpoint.create(params=params) as client:
        with pytest.raises(RequestTimeout):
            await client.request(Message(Code.GET), raw.address)
    mids = set()
    while not raw.received.empty():
        msg, _ = await raw.next()
        mids.add(msg.mid)
    assert len(mids) == 1


async def test_reset_received(raw: RawPeer) -> None:
    async with await Endpoint.create() as client:
        task = asyncio.create_task(client.request(Message(Code.GET), raw.address))
        request, addr = await raw.next()
        raw.send(encode(Message(Code.EMPTY, MessageType.RST, request.mid)), addr)
        with pytest.raises(ResetReceived):
            await task


async def test_close_fails_pending(raw: RawPeer) -> None:
    client = await Endpoint.create()
    task = asyncio.create_task(client.request(Message(Code.GET), raw.address))
    await raw.next()
    await client.close()
    with pytest.raises(EndpointClosed):
        await task
    with pytest.raises(EndpointClosed):
        await client.request(Message(Code.GET), raw.address)


async def test_separate_response_over_udp() -> None:
    release = asyncio.Event()

    async def slow(request: IncomingRequest) -> Message:
        await release.wait()
        return Message(Code.CONTENT, payload=b"finally")

    async with (
        await Endpoint.create(handler=slow, params=FAST) as server,
        await Endpoint.create(params=FAST) as client,
    ):
        seen: list[Peer] = []
        client.add_activity_listener(seen.append)
        task = asyncio.create_task(client.request(Message(Code.GET), server.local_address))
        while not seen:  # the empty ACK arrives first
            await asyncio.sleep(0.01)
        assert not task.done()
        release.set()
        response = await task
        assert response.payload == b"finally" and response.type == MessageType.CON
        assert seen[0].address == server.local_address


async def test_observe_over_udp() -> None:
    observations: list[ServerObservation] = []
    cancelled = asyncio.Event()

    async def handler(request: IncomingRequest) -> Message:
        if request.message.observe == 0:
            observations.append(request.start_observation(on_cancel=cancelled.set))
        return Message(Code.CONTENT, payload=b"0")

    async with await Endpoint.create(handler=handler) as server, await Endpoint.create() as client:
        obs = client.observe(Message(Code.GET, uri_path=("3", "0", "9")), server.local_address)
        first = await obs.first()
        assert first.payload == b"0" and first.observe is not None
        [server_obs] = observations
        await server_obs.notify(Message(Code.CONTENT, payload=b"1"), confirmable=True)
        await server_obs.notify(Message(Code.CONTENT, payload=b"2" * 3000))
        received = []
        async for note in obs:
            received.append(note.payload)
            if len(received) == 2:
                break
        assert received == [b"1", b"2" * 3000]
        await obs.cancel()  # active: GET with Observe=1
        await asyncio.wait_for(cancelled.wait(), 5)
        assert server_obs.cancelled and server_obs.reason == "deregistered"
        with pytest.raises(ObservationCancelled):
            await server_obs.notify(Message(Code.CONTENT, payload=b"3"))


async def test_passive_cancel_resets_next_notification() -> None:
    observations: list[ServerObservation] = []

    async def handler(request: IncomingRequest) -> Message:
        observations.append(request.start_observation())
        return Message(Code.CONTENT)

    async with await Endpoint.create(handler=handler) as server, await Endpoint.create() as client:
        obs = client.observe(Message(Code.GET), server.local_address)
        await obs.first()
        await obs.cancel(active=False)
        with pytest.raises(ObservationCancelled):
            await observations[0].notify(Message(Code.CONTENT, payload=b"x"), confirmable=True)
        assert [n async for n in obs] == []


async def test_observation_not_established() -> None:
    async def plain(request: IncomingRequest) -> Message:
        return Message(Code.CONTENT, payload=b"no observe")

    async with await Endpoint.create(handler=plain) as server, await Endpoint.create() as client:
        obs = client.observe(Message(Code.GET), server.local_address)
        first = await obs.first()
        assert first.observe is None
        assert [n async for n in obs] == []


# --- a lossy relay ------------------------------------------------------------------


class LossyRelay:
    """Forwards datagrams between one client and a server, dropping and duplicating some.

    Decisions come from a seeded Random.  After ``budget`` faults the link
    turns perfect, so a run always ends however unlucky the draws are.
    """

    def __init__(
        self, target: Address, rng: random.Random, drop: float, duplicate: float, budget: int = 60
    ) -> None:
        self.budget = budget
        self.target = target
        self.rng = rng
        self.drop = drop
        self.duplicate = duplicate
        self.client: Address | None = None
        self.front: asyncio.DatagramTransport | None = None
        self.back: asyncio.DatagramTransport | None = None
        self.stats: Counter[str] = Counter()

    async def start(self) -> Address:
        loop = asyncio.get_running_loop()
        relay = self

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Address) -> None:
                relay.client = addr
                assert relay.back is not None
                relay._forward(relay.back, data, relay.target)

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Address) -> None:
                if relay.client is not None:
                    assert relay.front is not None
                    relay._forward(relay.front, data, relay.client)

        self.front, _ = await loop.create_datagram_endpoint(Front, local_addr=("127.0.0.1", 0))
        self.back, _ = await loop.create_datagram_endpoint(Back, local_addr=("127.0.0.1", 0))
        host, port = self.front.get_extra_info("sockname")[:2]
        return (host, port)

    def _forward(self, transport: asyncio.DatagramTransport, data: bytes, to: Address) -> None:
        roll = self.rng.random()
        if self.stats["dropped"] + self.stats["duplicated"] >= self.budget:
            roll = 0.5
        if roll < self.drop:
            self.stats["dropped"] += 1
            return
        transport.sendto(data, to)
        if roll > 1 - self.duplicate:
            self.stats["duplicated"] += 1
            transport.sendto(data, to)

    def close(self) -> None:
        for transport in (self.front, self.back):
            if transport is not None:
                transport.close()


@pytest.mark.parametrize("seed", SEEDS)
async def test_lossy_link_completes_each_request_exactly_once(seed: int) -> None:
    calls: Counter[bytes] = Counter()

    async def handler(request: IncomingRequest) -> Message:
        calls[request.message.payload] += 1
        if request.message.uri_path == ("big",):
            return Message(Code.CONTENT, payload=request.message.payload * 300)
        return Message(Code.CHANGED, payload=request.message.payload)

    params = TransmissionParameters(
        ack_timeout_s=0.02, max_retransmit=8, separate_response_delay_s=0.01
    )
    async with (
        await Endpoint.create(handler=handler, params=params) as server,
        await Endpoint.create(
            params=TransmissionParameters(ack_timeout_s=0.02, max_retransmit=8, nstart=4)
        ) as client,
    ):
        relay = LossyRelay(server.local_address, random.Random(seed), drop=0.2, duplicate=0.2)
        address = await relay.start()
        try:
            bodies = [b"req-%03d" % i for i in range(40)]

            async def one(body: bytes) -> None:
                path = ("big",) if body.endswith(b"7") else ("small",)
                response = await client.request(
                    Message(Code.POST, uri_path=path, payload=body), address
                )
                expected = body * 300 if path == ("big",) else body
                assert response.payload == expected

            await asyncio.wait_for(asyncio.gather(*(one(b) for b in bodies)), 30)
        finally:
            relay.close()
        assert relay.stats["dropped"] > 0 and relay.stats["duplicated"] > 0
        # Every request reached the handler exactly once (duplicates and
        # retransmissions were absorbed by deduplication).
        assert set(calls) == set(bodies)
        assert set(calls.values()) == {1}


async def test_activity_listener_and_ipv4_only_traffic(pair: tuple[Endpoint, Endpoint]) -> None:
    client, server = pair
    peers: list[Peer] = []
    listener: Callable[[Peer], None] = peers.append
    server.add_activity_listener(listener)
    await client.request(Message(Code.GET), server.local_address)
    assert [p.address for p in peers] == [client.local_address]
    assert peers[0].identity is None
    server.remove_activity_listener(listener)
    assert socket.inet_aton(server.local_address[0])


async def test_request_by_host_name(pair: tuple[Endpoint, Endpoint]) -> None:
    client, server = pair
    response = await client.request(Message(Code.GET), ("localhost", server.local_address[1]))
    assert response.code == Code.CONTENT
    with pytest.raises(ValueError, match="numeric"):
        client.observe(Message(Code.GET), ("localhost", server.local_address[1]))


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 support in this Python build")
async def test_ipv6_loopback() -> None:
    async def who(request: IncomingRequest) -> Message:
        return Message(Code.CONTENT, payload=repr(request.peer.address).encode())

    try:
        server = await Endpoint.create("::1", 0, handler=who)
    except OSError as exc:  # pragma: no cover - host without ::1
        pytest.skip(f"no IPv6 loopback: {exc}")
    async with server, await Endpoint.create("::1", 0) as client:
        response = await client.request(Message(Code.GET), server.local_address)
        assert response.payload == repr(client.local_address).encode()
        assert len(client.local_address) == 2


async def test_active_cancel_towards_a_silent_peer_is_bounded() -> None:
    async def handler(request: IncomingRequest) -> Message:
        request.start_observation()
        return Message(Code.CONTENT)

    server = await Endpoint.create(handler=handler)
    async with await Endpoint.create() as client:
        obs = client.observe(Message(Code.GET), server.local_address)
        await obs.first()
        await server.close()  # the peer goes away
        await obs.cancel(timeout=0.1)  # returns after the timeout, without raising
        assert not obs.active
        assert client.engine.pending_requests() == 0


# --------------------------------------------------------------------------- orphan notifications


def _notification(
    mid: int, token: bytes, seq: int, payload: bytes, mtype: MessageType = MessageType.CON
) -> bytes:
    return encode(Message(Code.CONTENT, mtype, mid, token, payload, observe=seq))


async def test_unknown_token_is_reset_unless_the_handler_claims_it(raw: RawPeer) -> None:
    async with await Endpoint.create() as ep:
        # No handler: RST, as always.
        raw.send(_notification(1, b"\x01" * 8, 5, b"a"), ep.local_address)
        reply, _ = await raw.next()
        assert (reply.type, reply.mid) == (MessageType.RST, 1)

        seen: list[tuple[Message, Peer]] = []

        def claim(message: Message, peer: Peer) -> bool:
            seen.append((message, peer))
            return message.token == b"\x02" * 8

        ep.set_orphan_notification_handler(claim)
        raw.send(_notification(2, b"\x01" * 8, 6, b"b"), ep.local_address)
        reply, _ = await raw.next()
        assert (reply.type, reply.mid) == (MessageType.RST, 2)  # refused
        raw.send(_notification(3, b"\x02" * 8, 7, b"c"), ep.local_address)
        reply, _ = await raw.next()
        assert (reply.type, reply.code, reply.mid) == (MessageType.ACK, Code.EMPTY, 3)
        assert [(m.payload, p.address) for m, p in seen] == [
            (b"b", raw.address),
            (b"c", raw.address),
        ]
        # A retransmission of the claimed CON gets the same ACK from the
        # duplicate cache; the handler is not asked twice.
        raw.send(_notification(3, b"\x02" * 8, 7, b"c"), ep.local_address)
        reply, _ = await raw.next()
        assert (reply.type, reply.mid) == (MessageType.ACK, 3)
        assert len(seen) == 2
        # A NON one refused gets RST too; claimed, nothing is sent back.
        raw.send(_notification(4, b"\x01" * 8, 8, b"d", MessageType.NON), ep.local_address)
        reply, _ = await raw.next()
        assert (reply.type, reply.mid) == (MessageType.RST, 4)
        raw.send(_notification(5, b"\x02" * 8, 9, b"e", MessageType.NON), ep.local_address)
        raw.send(_notification(6, b"\x01" * 8, 9, b"f"), ep.local_address)
        reply, _ = await raw.next()
        assert (reply.type, reply.mid) == (MessageType.RST, 6)  # nothing came for mid 5
        assert seen[-2][0].payload == b"e"

        def broken(message: Message, peer: Peer) -> bool:
            raise RuntimeError("handler bug")

        ep.set_orphan_notification_handler(broken)
        raw.send(_notification(7, b"\x02" * 8, 10, b"g"), ep.local_address)
        reply, _ = await raw.next()
        assert (reply.type, reply.mid) == (MessageType.RST, 7)
        ep.set_orphan_notification_handler(None)
        raw.send(_notification(8, b"\x02" * 8, 11, b"h"), ep.local_address)
        reply, _ = await raw.next()
        assert (reply.type, reply.mid) == (MessageType.RST, 8)


async def test_adopted_observation_delivers_orders_and_cancels(raw: RawPeer) -> None:
    token = bytes.fromhex("a1b2c3d4e5f60718")
    request = Message(Code.GET, uri_path=("3", "0", "9"), accept=0)
    async with await Endpoint.create() as ep:
        adopted: list[ClientObservation] = []

        def adopt(message: Message, peer: Peer) -> bool:
            if message.token != token or adopted:
                return False
            adopted.append(ep.adopt_observation(request, peer.address, message.token, message))
            return True

        ep.set_orphan_notification_handler(adopt)
        raw.send(_notification(10, token, 20, b"first"), ep.local_address)
        reply, _ = await raw.next()
        assert (reply.type, reply.mid) == (MessageType.ACK, 10)
        assert len(adopted) == 1
        obs = adopted[0]
        assert (await obs.first()).payload == b"first"
        it = aiter(obs)
        assert (await asyncio.wait_for(anext(it), 5)).payload == b"first"
        # Now the token is known: later notifications skip the handler, and
        # stale ones (older sequence number) are acknowledged but dropped.
        raw.send(_notification(11, token, 19, b"stale"), ep.local_address)
        raw.send(_notification(12, token, 21, b"second"), ep.local_address)
        for mid in (11, 12):
            reply, _ = await raw.next()
            assert (reply.type, reply.mid) == (MessageType.ACK, mid)
        assert (await asyncio.wait_for(anext(it), 5)).payload == b"second"
        assert len(adopted) == 1
        with pytest.raises(ValueError):
            ep.adopt_observation(request, raw.address, token, Message(Code.CONTENT))

        # Active cancel: GET with Observe=1, the same token and options.
        cancel = asyncio.create_task(obs.cancel(active=True, timeout=5))
        dereg, addr = await raw.next()
        assert (dereg.code, dereg.token, dereg.observe) == (Code.GET, token, 1)
        assert (dereg.uri_path, dereg.accept) == (("3", "0", "9"), 0)
        raw.send(
            encode(Message(Code.CONTENT, MessageType.ACK, dereg.mid, token, b"bye")),
            addr,
        )
        await cancel
        assert ep.engine.pending_requests() == 0
        # Forgotten now, and the handler refuses it: RST.
        raw.send(_notification(13, token, 22, b"late"), ep.local_address)
        reply, _ = await raw.next()
        assert (reply.type, reply.mid) == (MessageType.RST, 13)


async def test_adopted_observation_passive_cancel(raw: RawPeer) -> None:
    token = b"\x07" * 4
    async with await Endpoint.create() as ep:
        adopted: list[ClientObservation] = []

        def adopt(message: Message, peer: Peer) -> bool:
            if adopted:
                return False
            adopted.append(
                ep.adopt_observation(Message(Code.GET), peer.address, message.token, message)
            )
            return True

        ep.set_orphan_notification_handler(adopt)
        raw.send(_notification(1, token, 1, b"x"), ep.local_address)
        reply, _ = await raw.next()
        assert reply.type == MessageType.ACK
        await adopted[0].cancel(active=False)
        assert ep.engine.pending_requests() == 0
        raw.send(_notification(2, token, 2, b"y"), ep.local_address)
        reply, _ = await raw.next()
        assert (reply.type, reply.mid) == (MessageType.RST, 2)
        with pytest.raises(ValueError):
            ep.adopt_observation(Message(Code.GET), raw.address, b"", Message(Code.CONTENT))


async def test_message_tracer_sees_every_message_both_ways(raw: RawPeer) -> None:
    server = await Endpoint.create(handler=echo, params=FAST)
    seen: list[tuple[str, Message, Address]] = []

    def tracer(direction: str, msg: Message, address: Address) -> None:
        seen.append((direction, msg, address))

    def broken(direction: str, msg: Message, address: Address) -> None:
        raise RuntimeError("tracer bug")

    async with server:
        server.add_message_tracer(broken)  # a failing tracer stops nothing
        server.add_message_tracer(tracer)
        raw.send(
            encode(Message(Code.GET, MessageType.CON, 7, b"tk", uri_path=("a",))),
            server.local_address,
        )
        assert (await raw.next())[0].code == Code.CONTENT
        raw.send(encode(Message(Code.EMPTY, MessageType.CON, 8)), server.local_address)  # ping
        assert (await raw.next())[0].type == MessageType.RST
        raw.send(b"\xff\x00garbage", server.local_address)  # not CoAP: not traced
        # A request of ours, answered by an empty ACK then a CON separate response.
        pending = asyncio.ensure_future(
            server.request(Message(Code.GET, uri_path=("d",)), raw.address)
        )
        req, _ = await raw.next()
        raw.send(encode(Message(Code.EMPTY, MessageType.ACK, req.mid)), server.local_address)
        raw.send(
            encode(Message(Code.CONTENT, MessageType.CON, 99, req.token, b"late")),
            server.local_address,
        )
        assert (await pending).payload == b"late"
        ack, _ = await raw.next()
        assert ack.type == MessageType.ACK and ack.mid == 99
        summary = [(d, m.type, int(m.code), m.mid) for d, m, _ in seen]
        assert summary == [
            ("in", MessageType.CON, Code.GET, 7),
            ("out", MessageType.ACK, Code.CONTENT, 7),
            ("in", MessageType.CON, Code.EMPTY, 8),
            ("out", MessageType.RST, Code.EMPTY, 8),
            ("out", MessageType.CON, Code.GET, req.mid),
            ("in", MessageType.ACK, Code.EMPTY, req.mid),
            ("in", MessageType.CON, Code.CONTENT, 99),
            ("out", MessageType.ACK, Code.EMPTY, 99),
        ]
        assert {a for _, _, a in seen} == {raw.address}
        assert seen[1][1].payload == b"got 0" and seen[0][1].uri_path == ("a",)
        server.remove_message_tracer(tracer)
        raw.send(encode(Message(Code.EMPTY, MessageType.CON, 9)), server.local_address)
        await raw.next()
        assert len(seen) == 8


async def test_ping_over_udp(raw: RawPeer) -> None:
    async with (
        await Endpoint.create(handler=echo) as server,
        await Endpoint.create(
            params=TransmissionParameters(ack_timeout_s=0.05, max_retransmit=2)
        ) as client,
    ):
        assert await client.ping(server.local_address) is True
        assert await client.ping(("localhost", server.local_address[1]), timeout=5) is True
        # A silent peer: False after the timeout, and after the retransmissions.
        assert await client.ping(raw.address, timeout=0.2) is False
        assert await client.ping(raw.address) is False
        assert client.engine.pending_requests() == 0
    with pytest.raises(EndpointClosed):
        await client.ping(raw.address)


async def _value_soon() -> bytes:
    await asyncio.sleep(0)
    return b"waited"


async def timing_handler(request: IncomingRequest) -> Message:
    """Uses asyncio.timeout() and wait_for() from its first line (Python 3.12+ eager start)."""
    assert asyncio.current_task() is not None
    path = request.message.uri_path
    if path == ("timeout",):
        async with asyncio.timeout(5):
            return Message(Code.CONTENT, payload=b"in time")
    if path == ("wait_for",):
        return Message(Code.CONTENT, payload=await asyncio.wait_for(_value_soon(), 5))
    try:  # ("expires",): the timeout must cancel this handler's own task
        async with asyncio.timeout(0.01):
            await asyncio.Event().wait()
    except TimeoutError:
        return Message(Code.CONTENT, payload=b"expired")
    return Message(Code.INTERNAL_SERVER_ERROR)


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "task"])
async def test_handler_may_use_timeout_and_wait_for_from_its_first_line(eager: bool) -> None:
    async with (
        await Endpoint.create(handler=timing_handler, eager_handlers=eager) as server,
        await Endpoint.create() as client,
    ):
        answers = {}
        for name in ("timeout", "wait_for", "expires"):
            response = await client.request(
                Message(Code.GET, uri_path=(name,)), server.local_address, timeout=5
            )
            answers[name] = (response.code, response.payload)
        assert answers == {
            "timeout": (Code.CONTENT, b"in time"),
            "wait_for": (Code.CONTENT, b"waited"),
            "expires": (Code.CONTENT, b"expired"),
        }
