from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import pytest

sys.path.insert(0, str(FsPath(__file__).parent))

from client_harness import Harness, MakeClient, until
from client_rawserver import RawServer

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
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


@pytest.fixture
async def make_client(server: RawServer) -> AsyncIterator[MakeClient]:
    clients: list[LwM2MClient] = []

    async def make(
        endpoint: str = "dev-1",
        *,
        register: bool = True,
        lifetime_s: int = 60,
        servers: tuple[FactoryAccount, ...] | None = None,
        **config: object,
    ) -> Harness:
        scheduler = ManualScheduler()
        cfg = ClientConfig(
            endpoint,
            servers=servers or (FactoryAccount(server.uri, lifetime_s=lifetime_s),),
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
            await until(lambda: all(s.registered for s in client.sessions.values()))
        return harness

    yield make
    for client in clients:
        await client.stop(deregister=False)
