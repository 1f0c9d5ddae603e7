"""End to end with the project's own LwM2M client (lwm2m.client) over real UDP."""

from __future__ import annotations

import asyncio
from typing import Any

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.model.nodes import ObjectInstance, Resource
from lwm2m.server import (
    DeregistrationEvent,
    LwM2MServer,
    NotificationEvent,
    RegistrationEvent,
)


async def _next(events: Any, kind: type) -> Any:
    while True:
        event = await asyncio.wait_for(events.get(), 10)
        if isinstance(event, kind):
            return event


async def test_project_client_register_read_write_observe(server: LwM2MServer) -> None:
    host, port = server.coap_address
    client = LwM2MClient(
        ClientConfig(
            "project-dev",
            servers=(FactoryAccount(f"coap://{host}:{port}", lifetime_s=120),),
            local_host="127.0.0.1",
            manufacturer="ACME",
        )
    )
    with server.events.subscribe("project-dev") as events:
        await client.start()
        try:
            registered = await _next(events, RegistrationEvent)
            reg = registered.registration
            assert reg.lwm2m_version == "1.1"
            assert {o.id for o in reg.objects} >= {1, 3}

            device = await server.read("project-dev", "/3/0", timeout=10)
            assert isinstance(device.content, ObjectInstance)
            assert device.content.resources[0].value == "ACME"

            await server.write("project-dev", "/1/0/1", 300, timeout=10)
            lifetime = await server.read("project-dev", "/1/0/1", timeout=10)
            assert isinstance(lifetime.content, Resource) and lifetime.content.value == 300

            observed = await server.observe("project-dev", "/1/0/1", timeout=10)
            await server.write("project-dev", "/1/0/1", 400, timeout=10)
            note = await _next(events, NotificationEvent)
            assert note.observation.id == observed.observation.id
            assert note.content.value == 400
        finally:
            await client.stop(deregister=True)
        gone = await _next(events, DeregistrationEvent)
        assert not gone.expired
    assert server.get_registration("project-dev") is None
