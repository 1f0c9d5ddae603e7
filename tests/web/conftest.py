from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from web_fakes import FakeBootstrap, FakeDevices, Running

from lwm2m.web.app import WebServer, build_app


@pytest.fixture
def devices() -> FakeDevices:
    fake = FakeDevices()
    fake.add(
        "dev-1",
        {
            "/3/0/0": "Open Mobile Alliance",
            "/3/0/1": "Lightweight M2M Client",
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
