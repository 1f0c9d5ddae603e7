"""A server with a firmware repository and campaigns, and a fleet of simulated devices."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Collection
from pathlib import Path as FsPath

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig
from lwm2m.client.config import FactoryAccount as ClientServerConfig
from lwm2m.client.objects.firmware import (
    AcceptingInstaller,
    FirmwareError,
    FirmwareUpdate,
    Result,
    simulated_package,
)
from lwm2m.client.simulator import Simulator
from lwm2m.model.registry import default_registry
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.firmware import FirmwareRepository
from lwm2m.server.firmware.campaigns import CampaignManager
from lwm2m.stores.base import Stores

REGISTRY = default_registry()


def package(version: str, size: int = 3000) -> bytes:
    """An image the simulator's installer reports as ``version`` once installed."""
    return simulated_package(version, size, name="demo")


class FailingInstaller(AcceptingInstaller):
    """Injected failure: the package checks fine, the update itself fails (Update Result 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def install(self, package: bytes) -> tuple[str, str]:
        self.attempts += 1
        raise FirmwareError(Result.UPDATE_FAILED, "injected failure")


class CountingInstaller(AcceptingInstaller):
    """Counts deliveries (checks) and installs; installs wait for ``release`` when given."""

    def __init__(self, release: asyncio.Event | None = None) -> None:
        super().__init__()
        self.release = release
        self.checks = 0

    async def check(self, package: bytes) -> None:
        self.checks += 1
        await super().check(package)

    async def install(self, package: bytes) -> tuple[str, str]:
        if self.release is not None:
            await self.release.wait()
        return await super().install(package)


class StubbornInstaller(AcceptingInstaller):
    """Says the update succeeded but keeps reporting its old version."""

    async def install(self, package: bytes) -> tuple[str, str]:
        self.installed.append(package)
        return "demo", "1.0.0"


@dataclasses.dataclass
class Rig:
    server: LwM2MServer
    repository: FirmwareRepository
    campaigns: CampaignManager

    async def stop(self) -> None:
        await self.campaigns.stop()
        await self.server.stop()


async def start_rig(
    stores: Stores,
    data_dir: FsPath,
    *,
    poll_s: float = 0.5,
    coap_port: int = 0,
    awake_time_s: float = 93.0,
) -> Rig:
    repository = await FirmwareRepository.open(stores.documents, data_dir)
    server = LwM2MServer(
        stores,
        config=ServerConfig(coap_port=coap_port, request_timeout_s=10.0, awake_time_s=awake_time_s),
        firmware=repository,
    )
    await server.start()
    campaigns = CampaignManager(server, repository, poll_s=poll_s)
    await campaigns.start()
    return Rig(server, repository, campaigns)


def fleet(
    server: LwM2MServer,
    count: int,
    *,
    base: str = "dev",
    failing: Collection[int] = (),
    customize: Callable[[LwM2MClient, int], None] | None = None,
    coap_port: int | None = None,
    queue_mode: bool = False,
    awake_time_s: float = 93.0,
) -> Simulator:
    """``count`` devices; those whose index is in ``failing`` fail their update."""
    host, port = server.coap_address
    config = ClientConfig(
        base,
        servers=(ClientServerConfig(f"coap://{host}:{coap_port or port}", lifetime_s=300),),
        local_host="127.0.0.1",
        queue_mode=queue_mode,
        awake_time_s=awake_time_s,
    )

    def setup(client: LwM2MClient) -> None:
        index = int(client.endpoint_name.rsplit("-", 1)[1])
        if index in failing:
            firmware(client).installer = FailingInstaller()
        if customize is not None:
            customize(client, index)

    return Simulator(config, count, registry=REGISTRY, rate_per_s=2000, customize=setup)


def firmware(client: LwM2MClient) -> FirmwareUpdate:
    instance = client.instance(5, 0)
    assert isinstance(instance, FirmwareUpdate)
    return instance


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)
