"""Declined requests (``Engine.decline`` / ``NO_RESPONSE``): nothing is ever sent for them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import cast

import pytest
from coap_engine_pair import CLIENT, SERVER, Pair

from lwm2m.coap.codec import decode, encode
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.endpoint import NO_RESPONSE, Endpoint, IncomingRequest, NoResponse
from lwm2m.coap.engine import Engine
from lwm2m.coap.errors import RequestTimeout
from lwm2m.coap.events import (
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    ServerObservationEnded,
)
from lwm2m.coap.message import Message
from lwm2m.coap.params import TransmissionParameters
from lwm2m.coap.peer import Address

GET = Message(Code.GET, uri_path=("x",))


def declining_pair(params: TransmissionParameters | None = None) -> tuple[Pair, list[int]]:
    """A pair whose server declines every request the moment it arrives."""
    received: list[int] = []

    def handler(ev: RequestReceived) -> None:
        received.append(ev.request_id)
        pair.server.decline(ev.request_id)

    pair = Pair(params=params or TransmissionParameters(), handler=handler)
    return pair, received


def server_datagrams(pair: Pair) -> list[bytes]:
    return [data for src, data in pair.wire if src == SERVER]


def test_declined_con_is_never_acknowledged_and_times_out() -> None:
    params = TransmissionParameters()
    pair, received = declining_pair(params)
    pair.request(GET)
    pair.advance(params.max_transmit_wait_s + 1)
    # The client sent the request 1 + MAX_RETRANSMIT times; the server said nothing
    # (no ACK, no RST) and handed the request to the application only once.
    assert len([d for s, d in pair.wire if s == CLIENT]) == 1 + params.max_retransmit
    assert server_datagrams(pair) == []
    assert len(received) == 1
    [failed] = pair.client_events
    assert isinstance(failed, RequestFailed) and isinstance(failed.error, RequestTimeout)
    # The exchange is gone: a late respond() for it sends nothing either.
    pair.server.respond(received[0], Message(Code.CONTENT), pair.now)
    pair.pump()
    assert server_datagrams(pair) == []


def test_declined_non_gets_nothing_and_duplicates_are_ignored() -> None:
    engine = Engine(rng=random.Random(1))
    request = encode(Message(Code.GET, MessageType.NON, 9, b"n"))
    engine.receive_datagram(request, CLIENT, 0.0)
    event = engine.next_event()
    assert isinstance(event, RequestReceived)
    engine.decline(event.request_id)
    engine.receive_datagram(request, CLIENT, 1.0)
    assert engine.datagrams_to_send(1.0) == []
    assert engine.next_event() is None


def test_duplicate_after_decline_is_not_a_new_request_nor_answered() -> None:
    engine = Engine(rng=random.Random(2))
    request = encode(Message(Code.GET, MessageType.CON, 77, b"t"))
    engine.receive_datagram(request, CLIENT, 0.0)
    event = engine.next_event()
    assert isinstance(event, RequestReceived)
    engine.decline(event.request_id)
    for now in (2.5, 7.5, 30.0, 100.0):  # retransmissions, also past the separate-ACK delay
        engine.handle_timer(now)
        engine.receive_datagram(request, CLIENT, now)
        assert engine.datagrams_to_send(now) == []
        assert engine.next_event() is None
    engine.decline(event.request_id)  # twice, or an unknown id: ignored
    engine.decline(12345)
    # A new request from the same peer is served normally.
    engine.receive_datagram(encode(Message(Code.GET, MessageType.CON, 78, b"u")), CLIENT, 101.0)
    event = engine.next_event()
    assert isinstance(event, RequestReceived)
    engine.respond(event.request_id, Message(Code.CONTENT, payload=b"hi"), 101.0)
    [(data, _)] = engine.datagrams_to_send(101.0)
    assert decode(data).type == MessageType.ACK and decode(data).payload == b"hi"


def test_decline_after_the_empty_ack_replays_only_that_ack() -> None:
    engine = Engine(rng=random.Random(3))
    request = encode(Message(Code.GET, MessageType.CON, 5, b"s"))
    engine.receive_datagram(request, CLIENT, 0.0)
    event = engine.next_event()
    assert isinstance(event, RequestReceived)
    engine.handle_timer(1.5)  # the handler was slow: an empty ACK went out
    [(ack, _)] = engine.datagrams_to_send(1.5)
    assert decode(ack) == Message(Code.EMPTY, MessageType.ACK, 5)
    engine.decline(event.request_id)
    engine.handle_timer(2.0)
    assert engine.datagrams_to_send(2.0) == []
    engine.receive_datagram(request, CLIENT, 3.0)
    assert engine.datagrams_to_send(3.0) == [(ack, CLIENT)]


def test_declined_observe_registration_ends_the_observation() -> None:
    observations: list[int] = []

    def handler(ev: RequestReceived) -> None:
        observations.append(pair.server.start_observation(ev.request_id, pair.now))
        pair.server.decline(ev.request_id)

    pair = Pair(handler=handler)
    pair.request(GET, observe=True)
    [obs_id] = observations
    ended = [e for e in pair.server_events if isinstance(e, ServerObservationEnded)]
    assert [(e.observation_id, e.reason) for e in ended] == [(obs_id, "declined")]
    with pytest.raises((KeyError, ValueError)):
        pair.server.notify(obs_id, Message(Code.CONTENT), pair.now)
    assert server_datagrams(pair) == []


def test_other_requests_are_answered_while_one_is_declined() -> None:
    def handler(ev: RequestReceived) -> Message | None:
        if ev.message.uri_path == ("quiet",):
            pair.server.decline(ev.request_id)
            return None
        return Message(Code.CONTENT, payload=b"loud")

    pair = Pair(params=TransmissionParameters(nstart=2), handler=handler)
    pair.request(Message(Code.GET, uri_path=("quiet",)))
    loud = pair.request(Message(Code.GET, uri_path=("loud",)))
    got = [e for e in pair.client_events if isinstance(e, ResponseReceived)]
    assert [(e.request_id, e.response.payload) for e in got] == [(loud, b"loud")]
    assert len(server_datagrams(pair)) == 1


# ---------------------------------------------------------------- over UDP

FAST = TransmissionParameters(ack_timeout_s=0.02, max_retransmit=2, separate_response_delay_s=5.0)


class RawPeer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.put_nowait(data)

    def send(self, data: bytes, address: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, address)


@pytest.fixture
async def raw() -> AsyncIterator[RawPeer]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.1", 0))
    yield proto
    transport.close()


class Quiet:
    """Declines ``/quiet`` (right away, or after suspending for ``/quiet/slow``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.declined = 0

    async def __call__(self, request: IncomingRequest) -> Message | NoResponse:
        path = request.message.uri_path
        self.calls.append(path)
        if path[:1] == ("quiet",):
            if path[1:] == ("slow",):
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            self.declined += 1
            return NO_RESPONSE
        return Message(Code.CONTENT, payload=b"/".join(p.encode() for p in path))


def get(mtype: MessageType, mid: int, *path: str) -> bytes:
    return encode(Message(Code.GET, mtype, mid, b"%d" % mid, uri_path=path))


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "task"])
@pytest.mark.parametrize("path", [("quiet",), ("quiet", "slow")], ids=["sync", "suspending"])
async def test_no_response_over_udp(raw: RawPeer, eager: bool, path: tuple[str, ...]) -> None:
    handler = Quiet()
    async with await Endpoint.create(handler=handler, eager_handlers=eager, params=FAST) as server:
        con = get(MessageType.CON, 40, *path)
        non = get(MessageType.NON, 41, *path)
        raw.send(con, server.local_address)
        raw.send(non, server.local_address)
        while handler.declined < 2:  # the endpoint declines as soon as the handler returns
            await asyncio.sleep(0)
        for data in (con, non, con, con, non):  # retransmissions
            raw.send(data, server.local_address)
        # A request sent after them is answered, and it is the only thing we get.
        raw.send(get(MessageType.CON, 42, "a"), server.local_address)
        answer = decode(await asyncio.wait_for(raw.received.get(), 5))
        assert answer.mid == 42 and answer.payload == b"a"
        assert raw.received.empty()
        assert handler.calls == [path, path, ("a",)]
        assert not server.engine._incoming  # no state left behind


async def test_endpoint_client_times_out_on_a_declined_request() -> None:
    handler = Quiet()
    async with (
        await Endpoint.create(handler=handler, params=FAST) as server,
        await Endpoint.create(params=FAST) as client,
    ):
        with pytest.raises(RequestTimeout):
            await client.request(Message(Code.GET, uri_path=("quiet",)), server.local_address)
        assert handler.calls == [("quiet",)]  # its retransmissions were duplicates
        response = await client.request(Message(Code.GET, uri_path=("x",)), server.local_address)
        assert response.payload == b"x"
