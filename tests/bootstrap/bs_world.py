"""An LwM2M server and a bootstrap server on free loopback ports, for end-to-end tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.client.client import LwM2MClient
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.stores.memory import MemoryStores


@contextlib.asynccontextmanager
async def running_servers(
    clients: list[LwM2MClient],
) -> AsyncIterator[tuple[LwM2MServer, BootstrapServer]]:
    """Start both servers; on exit stop every client added to ``clients``, then the servers."""
    server = LwM2MServer(MemoryStores(), config=ServerConfig(coap_port=0, request_timeout_s=5.0))
    await server.start()
    bs = BootstrapServer(request_timeout_s=5.0)
    await bs.start("127.0.0.1", 0)
    try:
        yield server, bs
    finally:
        for client in clients:
            await client.stop()
        await bs.close()
        await server.stop()
