"""1,000 simulated devices registered over CoAP over TCP to one server, then read and stopped."""

from __future__ import annotations

import asyncio

from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.client.simulator import Simulator
from lwm2m.model.nodes import Resource
from lwm2m.model.registry import ModelRegistry
from lwm2m.server.events import RegistrationEvent
from lwm2m.server.server import LwM2MServer
from lwm2m.server.server import ServerConfig as LwM2MServerConfig
from lwm2m.stores.memory import MemoryStores

DEVICES = 1000


async def test_thousand_devices_over_tcp(registry: ModelRegistry) -> None:
    server = LwM2MServer(
        MemoryStores(),
        config=LwM2MServerConfig(coap_port=0, coap_tcp_port=0, request_timeout_s=30.0),
        model=registry,
    )
    await server.start()
    assert server.coap_tcp_address is not None
    base = ClientConfig(
        "tcpsim",
        servers=(
            FactoryAccount(
                f"coap+tcp://127.0.0.1:{server.coap_tcp_address[1]}", lifetime_s=600, binding="T"
            ),
        ),
        local_host="127.0.0.1",
    )
    sim = Simulator(base, DEVICES, registry=registry, rate_per_s=5_000, seed=1)
    registered: set[str] = set()
    all_in = asyncio.Event()
    try:
        with server.events.subscribe() as events:

            async def count() -> None:
                async for event in events:
                    if isinstance(event, RegistrationEvent):
                        registered.add(event.endpoint)
                        if len(registered) == DEVICES:
                            all_in.set()
                            return

            counter = asyncio.ensure_future(count())
            await sim.start()
            await asyncio.wait_for(all_in.wait(), 120)
            counter.cancel()
        regs = server.registrations()
        assert len(regs) == DEVICES and {r.transport for r in regs} == {"tcp"}
        assert server._coap_tcp is not None and server._coap_tcp.connection_count == DEVICES
        # every tenth device answers a Read over its own connection
        reads = await asyncio.gather(
            *(server.read(r.endpoint, "/3/0/2", timeout=30) for r in regs[::10])
        )
        assert all(isinstance(r.content, Resource) and r.content.value for r in reads)
    finally:
        stopped = await sim.stop(timeout_s=60)
        await server.stop()
    assert stopped == DEVICES
