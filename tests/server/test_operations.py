"""Device management and information reporting against a simulated client over real UDP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from server_helpers import Device

from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.formats import registry
from lwm2m.formats.media import ContentFormat
from lwm2m.model.nodes import ObjectInstance, Resource
from lwm2m.model.path import Path
from lwm2m.protocol.attributes import parse_attribute_query
from lwm2m.server import (
    ClientNotFound,
    ClientTimeout,
    LwM2MServer,
    NotificationEvent,
    RemoteError,
    SendEvent,
)

DEVICE = ObjectInstance.of(
    0,
    [
        Resource.single(0, "ACME"),
        Resource.single(1, "Model 500"),
        Resource.single(9, 87),
    ],
)


class FakeClient:
    """Answers like an LwM2M client and records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[Message] = []
        self.observations: list[Any] = []
        self.battery = 87

    async def handle(self, request: Any) -> Message:
        msg: Message = request.message
        self.requests.append(msg)
        path = Path.from_segments(msg.uri_path) if msg.uri_path else Path()
        fmt = msg.accept if msg.accept is not None else int(ContentFormat.LWM2M_TLV)
        if msg.code == Code.GET:
            if msg.accept == ContentFormat.LINK_FORMAT:
                return Message(
                    Code.CONTENT,
                    payload=b"</3/0>,</3/0/0>,</3/0/9>;pmin=10",
                    content_format=int(ContentFormat.LINK_FORMAT),
                )
            if path == Path.parse("/3/0"):
                node: Any = DEVICE
            elif path == Path.parse("/3/0/9"):
                node = Resource.single(9, self.battery)
            else:
                return Message(Code.NOT_FOUND)
            if msg.observe == 0:
                self.observations.append(request.start_observation())
            return Message(
                Code.CONTENT, payload=registry.encode(node, path, fmt), content_format=fmt
            )
        if msg.code == Code.FETCH:
            paths = registry.decode_paths(msg.payload, msg.content_format or 0)
            values = {
                p: Resource.single(9, self.battery)
                if p.resource_id == 9
                else DEVICE.resources[p.resource_id or 0]
                for p in paths
            }
            if msg.observe == 0:
                self.observations.append(request.start_observation())
            out = msg.accept or int(ContentFormat.SENML_CBOR)
            return Message(
                Code.CONTENT, payload=registry.encode_composite(values, out), content_format=out
            )
        if msg.code in (Code.PUT, Code.POST, Code.IPATCH):
            if path == Path.parse("/3/0/4") or (msg.uri_query and not msg.payload):
                return Message(Code.CHANGED)
            if msg.code == Code.POST and path == Path.parse("/1"):
                return Message(Code.CREATED, location_path=("1", "7"))
            if path.object_id == 5 or msg.code == Code.IPATCH:
                return Message(Code.CHANGED)
            return Message(Code.METHOD_NOT_ALLOWED, payload=b"read-only")
        if msg.code == Code.DELETE:
            return Message(Code.DELETED)
        return Message(Code.BAD_REQUEST)


@pytest.fixture
async def client(make_device: Any) -> tuple[FakeClient, Device]:
    fake = FakeClient()
    device: Device = await make_device(fake.handle)
    reply = await device.register(
        "dev",
        "lt=300",
        "lwm2m=1.1",
        payload=b'</>;rt="oma.lwm2m";ct="110 112 11542",</1/0>,</3/0>,</5/0>',
    )
    assert reply.code == Code.CREATED
    return fake, device


async def test_read_instance_and_resource(server: LwM2MServer, client: Any) -> None:
    fake, _ = client
    resp = await server.read("dev", "/3/0")
    assert resp.code == Code.CONTENT
    assert isinstance(resp.content, ObjectInstance)
    assert resp.content.resources[0].value == "ACME"
    assert resp.content.resources[9].value == 87
    # 1.1 client announcing SenML CBOR: that is what the server asked for.
    assert fake.requests[-1].accept == ContentFormat.SENML_CBOR
    resp = await server.read("dev", Path.parse("/3/0/9"), format=int(ContentFormat.TEXT))
    assert resp.content == Resource.single(9, 87, resp.content.type)  # type: ignore[union-attr]
    assert fake.requests[-1].accept == ContentFormat.TEXT


async def test_read_errors(server: LwM2MServer, client: Any) -> None:
    with pytest.raises(RemoteError) as info:
        await server.read("dev", "/4/0")
    assert info.value.code == Code.NOT_FOUND
    with pytest.raises(ClientNotFound):
        await server.read("nobody", "/3/0")


async def test_discover(server: LwM2MServer, client: Any) -> None:
    resp = await server.discover("dev", "/3/0")
    assert [link.target for link in resp.links] == ["/3/0", "/3/0/0", "/3/0/9"]
    assert resp.links[2].get("pmin") == "10"


async def test_write_execute_create_delete(server: LwM2MServer, client: Any) -> None:
    fake, _ = client
    assert (await server.write("dev", "/3/0/4", "x")).code == Code.CHANGED
    assert fake.requests[-1].code == Code.PUT
    assert fake.requests[-1].content_format == ContentFormat.SENML_CBOR
    resp = await server.write(
        "dev", "/5/0", ObjectInstance.of(0, [Resource.single(1, "coap://fw")]), replace=False
    )
    assert resp.code == Code.CHANGED and fake.requests[-1].code == Code.POST
    with pytest.raises(RemoteError) as info:
        await server.write("dev", "/3/0/0", "nope")
    assert info.value.code == Code.METHOD_NOT_ALLOWED and info.value.message == "read-only"
    await server.execute("dev", "/3/0/4", "0='a'")
    assert fake.requests[-1].code == Code.POST and fake.requests[-1].payload == b"0='a'"
    created = await server.create("dev", "/1", ObjectInstance.of(7, [Resource.single(1, 300)]))
    assert created.location == Path.parse("/1/7")
    assert (await server.delete("dev", "/1/7")).code == Code.DELETED
    assert fake.requests[-1].code == Code.DELETE


async def test_write_attributes(server: LwM2MServer, client: Any) -> None:
    fake, _ = client
    await server.write("dev", "/3/0/4", "x")
    await server.write_attributes("dev", "/3/0/9", {"pmin": 10, "pmax": 60, "gt": 50.5, "lt": None})
    msg = fake.requests[-1]
    assert msg.code == Code.PUT and not msg.payload
    update = parse_attribute_query(msg.uri_query)
    assert dict(update.set) == {"pmin": 10, "pmax": 60, "gt": 50.5}
    assert update.remove == ("lt",)


async def test_composite_operations(server: LwM2MServer, client: Any) -> None:
    fake, _ = client
    resp = await server.read_composite("dev", ["/3/0/9", "/3/0/1"])
    assert fake.requests[-1].code == Code.FETCH
    assert set(resp.values) == {Path.parse("/3/0/9"), Path.parse("/3/0/1")}
    await server.write_composite("dev", {"/3/0/4": "a", Path.parse("/5/0/1"): "b"})
    assert fake.requests[-1].code == Code.IPATCH


async def test_observe_notifications_and_cancel(server: LwM2MServer, client: Any) -> None:
    fake, _device = client
    with server.events.subscribe("dev") as events:
        resp = await server.observe("dev", "/3/0/9")
        assert isinstance(resp.content, Resource) and resp.content.value == 87
        assert [o.id for o in server.observations_of("dev")] == [resp.observation.id]
        obs = fake.observations[-1]
        fake.battery = 42
        path = Path.parse("/3/0/9")
        payload = registry.encode(Resource.single(9, 42), path, int(ContentFormat.TEXT))
        await obs.notify(Message(Code.CONTENT, payload=payload, content_format=0))
        await obs.notify(Message(Code.CONTENT, payload=b"41", content_format=0), confirmable=True)
        first = await asyncio.wait_for(events.get(), 5)
        second = await asyncio.wait_for(events.get(), 5)
    assert isinstance(first, NotificationEvent) and isinstance(second, NotificationEvent)
    assert first.content == Resource.single(9, 42, first.content.type)  # type: ignore[union-attr]
    assert second.confirmable and second.values[path].value == 41  # type: ignore[union-attr]
    # Reactive cancel: a GET with Observe=1 reaches the client.
    await server.cancel_observation("dev", resp.observation)
    assert fake.requests[-1].observe == 1
    assert server.observations_of("dev") == []


async def test_passive_cancel_answers_rst(server: LwM2MServer, client: Any) -> None:
    fake, _ = client
    resp = await server.observe("dev", "/3/0/9")
    obs = fake.observations[-1]
    await server.cancel_observation("dev", resp.observation, active=False)
    assert fake.requests[-1].observe == 0  # nothing sent
    from lwm2m.coap.errors import ObservationCancelled

    with pytest.raises(ObservationCancelled):
        await obs.notify(Message(Code.CONTENT, payload=b"1", content_format=0), confirmable=True)


async def test_observe_composite(server: LwM2MServer, client: Any) -> None:
    fake, _ = client
    with server.events.subscribe("dev") as events:
        resp = await server.observe_composite("dev", ["/3/0/9"])
        assert resp.observation.composite
        obs = fake.observations[-1]
        values = {Path.parse("/3/0/9"): Resource.single(9, 5)}
        await obs.notify(
            Message(
                Code.CONTENT,
                payload=registry.encode_composite(values, int(ContentFormat.SENML_CBOR)),
                content_format=int(ContentFormat.SENML_CBOR),
            )
        )
        event = await asyncio.wait_for(events.get(), 5)
    assert isinstance(event, NotificationEvent)
    assert event.values[Path.parse("/3/0/9")].value == 5  # type: ignore[union-attr]


async def test_deregistration_drops_observations(server: LwM2MServer, client: Any) -> None:
    fake, device = client
    await server.observe("dev", "/3/0/9")
    obs = fake.observations[-1]
    reply = await device.endpoint.request(
        Message(Code.DELETE, uri_path=device.location), device.server_address, timeout=5
    )
    assert reply.code == Code.DELETED
    assert server.stores.observations.list() == []
    from lwm2m.coap.errors import ObservationCancelled

    with pytest.raises(ObservationCancelled):
        await obs.notify(Message(Code.CONTENT, payload=b"1", content_format=0), confirmable=True)


async def test_reregistration_clears_observations(server: LwM2MServer, client: Any) -> None:
    _fake, device = client
    await server.observe("dev", "/3/0/9")
    assert len(server.observations_of("dev")) == 1
    await device.register("dev", "lt=300")
    assert server.observations_of("dev") == []


async def test_send_operation(server: LwM2MServer, client: Any) -> None:
    _, device = client
    values = {Path.parse("/3/0/9"): 12}
    with server.events.subscribe() as events:
        reply = await device.endpoint.request(
            Message(
                Code.POST,
                uri_path=("dp",),
                payload=registry.encode_composite(values, int(ContentFormat.SENML_JSON)),
                content_format=int(ContentFormat.SENML_JSON),
            ),
            device.server_address,
            timeout=5,
        )
        assert reply.code == Code.CHANGED
        event = events.get_nowait()
    assert isinstance(event, SendEvent)
    assert event.values[Path.parse("/3/0/9")].value == 12  # type: ignore[union-attr]


async def test_send_requires_registration(server: LwM2MServer, make_device: Any) -> None:
    device = await make_device(FakeClient().handle)
    reply = await device.endpoint.request(
        Message(Code.POST, uri_path=("dp",), payload=b"[]", content_format=110),
        device.server_address,
        timeout=5,
    )
    assert reply.code == Code.NOT_FOUND


async def test_request_timeout(server: LwM2MServer, raw: Any) -> None:
    from server_helpers import register_message

    await raw.request(register_message(("ep=mute",)), server.coap_address)
    with pytest.raises(ClientTimeout):
        await server.read("mute", "/3/0", timeout=0.2)
