from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path as FsPath

import pytest

sys.path.insert(0, str(FsPath(__file__).parent))

from rawserver import Address, RawServer

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, ServerConfig
from lwm2m.client.scheduler import ManualScheduler
from lwm2m.model.registry import ModelRegistry, default_registry

_REGISTRY = default_registry()


@pytest.fixture
def registry() -> ModelRegistry:
    return _REGISTRY


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    srv = await RawServer().start()
    yield srv
    srv.close()


class Harness:
    """A client on a manual clock, registered to a raw server."""

    def __init__(self, client: LwM2MClient, server: RawServer, scheduler: ManualScheduler) -> None:
        self.client = client
        self.server = server
        self.scheduler = scheduler
        self.address: Address = ("127.0.0.1", 0)
        self.register: object = None


MakeClient = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_client(server: RawServer) -> AsyncIterator[MakeClient]:
    clients: list[LwM2MClient] = []

    async def make(
        endpoint: str = "dev-1",
        *,
        register: bool = True,
        lifetime_s: int = 60,
        servers: tuple[ServerConfig, ...] | None = None,
        **config: object,
    ) -> Harness:
        scheduler = ManualScheduler()
        cfg = ClientConfig(
            endpoint,
            servers=servers or (ServerConfig(server.uri, lifetime_s=lifetime_s),),
            local_host="127.0.0.1",
            **config,  # type: ignore[arg-type]
        )
        client = LwM2MClient(cfg, registry=_REGISTRY, scheduler=scheduler)
        clients.append(client)
        harness = Harness(client, server, scheduler)
        await client.start()
        if register:
            msg, addr = await server.accept_registration()
            harness.register = msg
            harness.address = addr
            await _until(lambda: all(s.registered for s in client.sessions.values()))
        return harness

    yield make
    for client in clients:
        await client.stop(deregister=False)


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the loop until ``predicate`` holds (no wall-clock sleeping)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0)


until = _until
