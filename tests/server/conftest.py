"""Fixtures: a server on 127.0.0.1:0 with a fake wall clock, raw UDP peers, simulated devices
(the private redis-server of the cluster tests is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from server_helpers import Device, FakeClock, Handler, RawPeer

from lwm2m.coap.endpoint import Endpoint
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.stores.memory import MemoryStores


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[LwM2MServer]:
    srv = LwM2MServer(
        MemoryStores(),
        config=ServerConfig(coap_port=0, expiry_interval_s=3600.0, request_timeout_s=5.0),
        clock=clock,
    )
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def raw() -> AsyncIterator[RawPeer]:
    peer = await RawPeer.create()
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture
async def make_device(
    server: LwM2MServer,
) -> AsyncIterator[Callable[[Handler], Awaitable[Device]]]:
    endpoints: list[Endpoint] = []

    async def make(handler: Handler) -> Device:
        ep = await Endpoint.create("127.0.0.1", 0, handler=handler)
        endpoints.append(ep)
        return Device(ep, server.coap_address)

    yield make
    for ep in endpoints:
        await ep.close()
