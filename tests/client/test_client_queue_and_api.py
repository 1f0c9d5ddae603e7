"""Queue mode, the device-developer API, typing of values, Execute arguments."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from client_harness import MakeClient, until

from lwm2m.client.instance import Instance, Res, check_arguments, execute
from lwm2m.client.store import ObjectStore
from lwm2m.client.stored_values import from_json, to_json
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ObjectLink, ResourceType
from lwm2m.model.value_typing import ValueTypeError, coerce
from lwm2m.protocol.errors import BadRequest


async def test_queue_mode_sleeps_and_serves_queued_request(make_client: MakeClient) -> None:
    h = await make_client(queue_mode=True, awake_time_s=10)
    assert isinstance(h.register, Message) and "Q" in h.register.uri_query
    h.scheduler.advance(10.5)
    assert h.client.sleeping
    before = h.client.stats.messages_received
    pending = asyncio.ensure_future(
        h.server.request(Message(Code.GET, uri_path=("3", "0", "0")), h.address, timeout=10)
    )
    await until(lambda: h.client.stats.messages_received > before)
    assert not pending.done()  # held while asleep
    h.scheduler.advance(30)  # the Update timer (half the 60 s lifetime) wakes the device
    msg, addr = await h.server.next_request()
    assert msg.uri_path == ("rd", "abc")
    h.server.reply(msg, addr, Code.CHANGED)
    response = await pending
    assert response.code == Code.CONTENT and response.payload == b"lwm2m-py"
    assert not h.client.sleeping


async def test_application_value_change_notifies_through_descriptor(
    make_client: MakeClient,
) -> None:
    class Sensor(Instance, object_id=3303):
        value = Res(5700, 1)  # int default, model says Float

    h = await make_client()
    sensor = h.client.add_instance(Sensor(0))
    assert isinstance(sensor, Sensor)
    assert sensor.value == 1.0 and isinstance(sensor.value, float)
    first = await h.server.request(
        Message(Code.GET, uri_path=("3303", "0", "5700"), observe=0), h.address
    )
    assert first.payload == b"1.0"
    sensor.value = 2.5
    note = await h.server.next_notification()
    assert note.payload == b"2.5"
    with pytest.raises(BadRequest):
        sensor.value = "hot"  # type: ignore[assignment]


async def test_async_reader_writer_and_execute(make_client: MakeClient) -> None:
    calls: list[object] = []

    class Light(Instance, object_id=3311):
        on = Res[bool](5850)
        dimmer = Res(5851, 50)

        @on.reader
        async def _read_on(self) -> bool:
            await asyncio.sleep(0)
            return True

        @dimmer.writer
        def _write_dimmer(self, value: int) -> None:
            if value > 100:
                raise BadRequest("dimmer above 100")
            calls.append(value)

        @execute(5605)  # not in 3311's model: still executable from the class
        def blink(self, args: str) -> None:
            calls.append(args)

    h = await make_client()
    h.client.add_instance(Light(0))
    r = await h.server.request(Message(Code.GET, uri_path=("3311", "0", "5850")), h.address)
    assert r.payload == b"1"
    r = await h.server.request(
        Message(Code.PUT, uri_path=("3311", "0", "5851"), payload=b"70"), h.address
    )
    assert r.code == Code.CHANGED and calls == [70]
    r = await h.server.request(
        Message(Code.PUT, uri_path=("3311", "0", "5851"), payload=b"170"), h.address
    )
    assert r.code == Code.BAD_REQUEST and calls == [70]
    r = await h.server.request(
        Message(Code.POST, uri_path=("3311", "0", "5605"), payload=b"0='x'"), h.address
    )
    assert r.code == Code.CHANGED and calls[-1] == "0='x'"


def test_ddf_only_object_served_from_store(registry: ModelRegistry) -> None:
    store = ObjectStore(registry)
    inst = store.create_instance(3303, 2, {5700: 7, 5701: "Cel"})
    assert inst.get(5700) == 7.0 and inst.path == Path(3303, 2)
    with pytest.raises(BadRequest):
        store.create_instance(3303, 2, {})
    with pytest.raises(BadRequest):
        store.create_instance(3303, 3, {5700: "warm"})


def test_coerce_and_json_round_trip() -> None:
    assert coerce(3, ResourceType.FLOAT) == 3.0
    assert coerce(1, ResourceType.BOOLEAN) is True
    assert coerce("3:1", ResourceType.OBJLNK) == ObjectLink(3, 1)
    assert coerce(0, ResourceType.TIME) == datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    for bad, rtype in (
        (1.5, ResourceType.INTEGER),
        (-1, ResourceType.UNSIGNED_INTEGER),
        ("x", ResourceType.OPAQUE),
        (2, ResourceType.BOOLEAN),
        (float("nan"), ResourceType.FLOAT),
    ):
        with pytest.raises(ValueTypeError):
            coerce(bad, rtype)
    for value in (
        b"\x00\xff",
        datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        ObjectLink(1, 2),
        "s",
        5,
        1.5,
        True,
    ):
        assert from_json(to_json(value)) == value
    with pytest.raises(ValueTypeError):
        from_json({"nope": 1})


def test_execute_arguments() -> None:
    assert check_arguments("") == []
    assert check_arguments("0,1='a b',2=''") == [(0, None), (1, "a b"), (2, "")]
    for bad in ("a", "0=x", "0='x", "0,0", "12", "0,", "0;1"):
        with pytest.raises(BadRequest):
            check_arguments(bad)


async def test_decorated_functions_api(make_client: MakeClient) -> None:
    h = await make_client()
    client = h.client
    calls: list[object] = []

    @client.reader("/3303/0/5700")
    async def temperature() -> float:
        return 19.5

    @client.writer("/3303/0/5750")
    def application_type(value: str) -> None:
        calls.append(value)

    @client.executor("/3303/0/5605")
    def reset(args: str) -> None:
        calls.append(("reset", args))

    ask = h.server.request
    assert (
        await ask(Message(Code.GET, uri_path=("3303", "0", "5700")), h.address)
    ).payload == b"19.5"
    r = await ask(Message(Code.PUT, uri_path=("3303", "0", "5750"), payload=b"room"), h.address)
    assert r.code == Code.CHANGED
    r = await ask(Message(Code.POST, uri_path=("3303", "0", "5605"), payload=b"1"), h.address)
    assert r.code == Code.CHANGED
    assert calls == ["room", ("reset", "1")]
    assert client.instance(3303, 0).get(5750) == "room"  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        client.reader("/3303/0")(lambda: 1.0)
