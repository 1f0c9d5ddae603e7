from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from web_fakes import FakeBootstrap, FakeDevices, Live, Running

from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.server.server import LwM2MServer, ServerConfig
from lwm2m.web.app import WebServer, build_app, create_app


@pytest.fixture
def devices() -> FakeDevices:
    fake = FakeDevices()
    fake.add(
        "dev-1",
        {
            "/3/0/0": "Open Mobile Alliance",
            "/3/0/1": "Lightweight M2M Client",
            "/3/0/7": 3800,
            "/3/0/9": 87,
            "/3/0/14": "+01",
            "/3303/0/5700": 21.5,
            "/3303/0/5701": "Cel",
            "/1/0/0": 101,
            "/1/0/1": 300,
        },
    )
    return fake


@pytest.fixture
async def running(devices: FakeDevices) -> AsyncIterator[Running]:
    bootstrap = FakeBootstrap()
    app = build_app(devices, bootstrap, keepalive_s=0.2)
    web = WebServer(app, "127.0.0.1", 0)
    await web.start()
    base = f"http://127.0.0.1:{web.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        yield Running(devices, bootstrap, web, http, base)
    await web.stop()


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    """A real LwM2M server and bootstrap server behind the web app, no clients yet."""
    server = LwM2MServer(
        config=ServerConfig(host="127.0.0.1", coap_port=0, coaps_port=0, request_timeout_s=5)
    )
    await server.start()
    bootstrap = BootstrapServer(request_timeout_s=0.5)
    await bootstrap.start("127.0.0.1", 0)
    app = create_app(server, bootstrap)
    web = WebServer(app, "127.0.0.1", 0)
    await web.start()
    base = f"http://127.0.0.1:{web.port}"
    clients: list[LwM2MClient] = []

    async def add_client(endpoint: str, *, queue_mode: bool = False) -> LwM2MClient:
        host, port = server.coap_address
        config = ClientConfig(
            endpoint,
            servers=(FactoryAccount(f"coap://{host}:{port}", lifetime_s=60),),
            local_host="127.0.0.1",
            queue_mode=queue_mode,
        )
        device = LwM2MClient(config)
        clients.append(device)
        await device.start()
        return device

    async with httpx.AsyncClient(base_url=base, timeout=15) as http:
        yield Live(server, bootstrap, web, http, base, add_client)
    for device in clients:
        await device.stop()
    await web.stop()
    await bootstrap.close()
    await server.stop()
