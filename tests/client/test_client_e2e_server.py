"""End to end against the project's own LwM2M server (lwm2m.server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.client.instance import Instance, Res
from lwm2m.client.simulator import Simulator
from lwm2m.model.nodes import Resource
from lwm2m.model.registry import ModelRegistry
from lwm2m.server.events import NotificationEvent
from lwm2m.server.server import LwM2MServer, ServerConfig


class Temperature(Instance, object_id=3303):
    value = Res(5700, 20.0)
    units = Res(5701, "Cel")


@pytest.fixture
async def lwm2m_server(registry: ModelRegistry) -> AsyncIterator[LwM2MServer]:
    server = LwM2MServer(config=ServerConfig(coap_port=0), model=registry)
    await server.start()
    yield server
    await server.stop()


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def uri(server: LwM2MServer) -> str:
    host, port = server.coap_address
    return f"coap://{host}:{port}"


async def test_register_read_write_observe_deregister(
    lwm2m_server: LwM2MServer, registry: ModelRegistry
) -> None:
    client = LwM2MClient(
        ClientConfig(
            "e2e-1",
            servers=(FactoryAccount(uri(lwm2m_server), lifetime_s=60),),
            local_host="127.0.0.1",
        ),
        registry=registry,
    )
    temp = client.add_instance(Temperature(0))
    await client.start()
    try:
        await wait_for(lambda: lwm2m_server.get_registration("e2e-1") is not None)
        reg = lwm2m_server.get_registration("e2e-1")
        assert reg is not None and reg.lifetime_s == 60
        read = await lwm2m_server.read("e2e-1", "/3/0/0")
        assert isinstance(read.content, Resource) and read.content.value == "lwm2m-py"
        read = await lwm2m_server.read("e2e-1", "/3303/0")
        assert read.content.resources[5700].value == 20.0  # type: ignore[union-attr]
        await lwm2m_server.write("e2e-1", "/1/0/3", 120)
        assert client.instance(1, 0).get(3) == 120  # type: ignore[union-attr]
        with lwm2m_server.events.subscribe("e2e-1") as events:
            await lwm2m_server.observe("e2e-1", "/3303/0/5700")
            temp.set(5700, 25.5)
            while True:
                event = await asyncio.wait_for(events.get(), 5)
                if isinstance(event, NotificationEvent):
                    break
            node = next(iter(event.values.values()))
            assert isinstance(node, Resource) and node.value == 25.5
        discover = await lwm2m_server.discover("e2e-1", "/3303/0")
        assert "</3303/0/5700>" in discover.text
        await lwm2m_server.execute("e2e-1", "/3/0/12")
    finally:
        await client.stop()
    assert lwm2m_server.get_registration("e2e-1") is None  # de-registered on shutdown


async def test_simulator_keeps_devices_registered(
    lwm2m_server: LwM2MServer, registry: ModelRegistry
) -> None:
    base = ClientConfig(
        "sim", servers=(FactoryAccount(uri(lwm2m_server), lifetime_s=30),), local_host="127.0.0.1"
    )
    sim = Simulator(base, 20, registry=registry, rate_per_s=10_000)
    await sim.start()
    try:
        await wait_for(lambda: sim.summary().registered == 20)
        names = {r.endpoint for r in lwm2m_server.registrations()}
        assert {f"sim-{i:02d}" for i in range(20)} <= names
    finally:
        await sim.stop()
    assert not [r for r in lwm2m_server.registrations() if r.endpoint.startswith("sim-")]
