"""Queue mode: requests wait for a sleeping client and go out when it shows up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from server_helpers import register_message

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat
from lwm2m.server import (
    AwakeEvent,
    ClientNotFound,
    LwM2MServer,
    QueueFull,
    ServerConfig,
    SleepingEvent,
)
from lwm2m.stores.memory import MemoryStores


class Answering:
    def __init__(self) -> None:
        self.seen: list[Message] = []

    async def handle(self, request: Any) -> Message:
        self.seen.append(request.message)
        return Message(Code.CONTENT, payload=b"ACME", content_format=int(ContentFormat.TEXT))


async def _asleep_with_a_read(
    server: LwM2MServer, make_device: Any, name: str, *query: str
) -> tuple[Any, asyncio.Future[Any]]:
    """A device registered in queue mode as ``name`` (answering reads with "ACME"), asleep,
    and a Read of it waiting in its queue."""
    device = await make_device(Answering().handle)
    await device.register(name, *query)
    reg = server.get_registration(name)
    assert reg is not None
    server.queue.sleep_now(reg.id)
    read = asyncio.ensure_future(server.read(name, "/3/0/0"))
    while server.queue.queued(reg.id) == 0:
        await asyncio.sleep(0)
    return device, read


async def _next(events: Any, kind: type) -> Any:
    while True:
        event = await asyncio.wait_for(events.get(), 5)
        if isinstance(event, kind):
            return event


async def test_request_waits_until_client_updates(server: LwM2MServer, make_device: Any) -> None:
    client = Answering()
    device = await make_device(client.handle)
    await device.register("q", "b=UQ")
    reg = server.get_registration("q")
    assert reg is not None and reg.queue_mode
    assert server.is_awake("q")
    with server.events.subscribe("q") as events:
        server.queue.sleep_now(reg.id)
        assert isinstance(events.get_nowait(), SleepingEvent)
        assert not server.is_awake("q")
        read = asyncio.ensure_future(server.read("q", "/3/0/0"))
        while server.queue.queued(reg.id) == 0:
            await asyncio.sleep(0)  # yield until the read is parked in the queue
        assert client.seen == []
        assert (await device.update()).code == Code.CHANGED
        response = await asyncio.wait_for(read, 5)
        await _next(events, AwakeEvent)
    assert response.content.value == "ACME"  # type: ignore[union-attr]
    assert len(client.seen) == 1


async def test_q_parameter_and_awake_time(clock: Any) -> None:
    srv = LwM2MServer(
        MemoryStores(), config=ServerConfig(coap_port=0, awake_time_s=0.05), clock=clock
    )
    await srv.start()
    ep = await Endpoint.create("127.0.0.1", 0, handler=Answering().handle)
    try:
        with srv.events.subscribe() as events:
            reply = await ep.request(
                Message(Code.POST, uri_path=("rd",), uri_query=("ep=q2", "Q"), payload=b"</3/0>"),
                srv.coap_address,
                timeout=5,
            )
            assert reply.code == Code.CREATED
            event = await _next(events, SleepingEvent)
        assert event.endpoint == "q2" and not srv.is_awake("q2")
    finally:
        await ep.close()
        await srv.stop()


async def test_queue_is_bounded(clock: Any, raw: Any) -> None:
    srv = LwM2MServer(MemoryStores(), config=ServerConfig(coap_port=0, max_queued=2), clock=clock)
    await srv.start()
    try:
        await raw.request(register_message(("ep=full", "Q")), srv.coap_address)
        reg = srv.get_registration("full")
        assert reg is not None
        srv.queue.sleep_now(reg.id)
        waiting = [asyncio.ensure_future(srv.read("full", "/3/0")) for _ in range(2)]
        while srv.queue.queued(reg.id) < 2:
            await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await srv.read("full", "/3/0")
        # De-registration releases the waiting requests.
        await srv.deregister("full")
        for task in waiting:
            with pytest.raises(ClientNotFound):
                await task
    finally:
        await srv.stop()


async def test_non_queue_client_is_always_awake(server: LwM2MServer, raw: Any) -> None:
    await raw.request(register_message(("ep=awake",)), server.coap_address)
    assert server.is_awake("awake")


async def test_leaving_queue_mode_releases_waiting_requests(
    server: LwM2MServer, make_device: Any
) -> None:
    device, read = await _asleep_with_a_read(server, make_device, "leaving", "Q")
    assert (await device.update("b=U")).code == Code.CHANGED
    response = await asyncio.wait_for(read, 5)
    assert response.content.value == "ACME"  # type: ignore[union-attr]
    assert server.is_awake("leaving")


async def test_any_datagram_of_a_sleeping_client_wakes_it(
    server: LwM2MServer, make_device: Any
) -> None:
    """Not only an Update: a request to another path (here one the server refuses) from the
    client's address sends what waits for it (the endpoint's activity listener)."""
    device, read = await _asleep_with_a_read(server, make_device, "q", "b=UQ")
    answer = await device.endpoint.request(
        Message(Code.GET, uri_path=("nothing",)), server.coap_address, timeout=5
    )
    assert answer.code == Code.NOT_FOUND
    response = await asyncio.wait_for(read, 5)
    assert response.content.value == "ACME"  # type: ignore[union-attr]


async def test_no_lookup_per_datagram_while_no_client_is_in_queue_mode(
    clock: Any, raw: Any
) -> None:
    """The activity listener looks up the sender's registration only while some
    registration is in queue mode: a fleet without it pays no lookup per datagram. It is
    not even called before the first client in queue mode (a storm's datagrams cost no
    call for it), and hears every datagram from then on: a sleeping client still wakes."""

    stores = MemoryStores()
    lookups: list[tuple[str, int]] = []
    registrations = stores.registrations
    plain_lookup = registrations.get_by_address

    def counted(address: tuple[str, int]) -> Any:
        lookups.append(address)
        return plain_lookup(address)

    registrations.get_by_address = counted  # type: ignore[method-assign]
    srv = LwM2MServer(stores, config=ServerConfig(coap_port=0), clock=clock)
    heard: list[Any] = []
    plain_activity = srv._activity

    def heard_by(peer: Any) -> None:
        heard.append(peer)
        plain_activity(peer)

    srv._activity = heard_by  # type: ignore[method-assign]
    await srv.start()
    try:
        device = await Endpoint.create("127.0.0.1", 0, handler=Answering().handle)
        try:
            response = await device.request(
                register_message(("ep=plain", "b=U")), srv.coap_address, timeout=5
            )
            assert response.code == Code.CREATED
            assert not registrations.holds_queue_mode
            updated = await device.request(
                Message(Code.POST, uri_path=response.location_path), srv.coap_address, timeout=5
            )
            assert updated.code == Code.CHANGED
            assert lookups == []
            assert heard == []
            # A client in queue mode: from then on, each datagram is looked up.
            response = await device.request(
                register_message(("ep=sleepy", "b=UQ")), srv.coap_address, timeout=5
            )
            assert response.code == Code.CREATED
            assert registrations.holds_queue_mode
            sleepy = srv.get_registration("sleepy")
            assert sleepy is not None
            srv.queue.sleep_now(sleepy.id)
            # Any datagram from its address wakes it now (here a ping: an empty CON).
            await device.ping(srv.coap_address, timeout=5)
            assert heard
            assert srv.queue.is_awake_id(sleepy.id)
            lookups.clear()
            await device.request(
                Message(Code.POST, uri_path=response.location_path), srv.coap_address, timeout=5
            )
            assert lookups
            # Gone again (de-registered): no more lookups.
            await device.request(
                Message(Code.DELETE, uri_path=response.location_path), srv.coap_address, timeout=5
            )
            assert not registrations.holds_queue_mode
            lookups.clear()
            await device.request(
                Message(Code.POST, uri_path=("rd", srv.get_registration("plain").id)),  # type: ignore[union-attr]
                srv.coap_address,
                timeout=5,
            )
            assert lookups == []
        finally:
            await device.close()
    finally:
        await srv.stop()
