"""Devices pull firmware from the server's repository (coap, coaps, http), install it, come back.

A real :class:`LwM2MServer` with a :class:`FirmwareRepository`; real clients
(single, and a simulated fleet via ``lwm2m client`` options). The server
drives the update as a campaign would: Write /5/0/1, observe /5/0/3, Execute
/5/0/2, then wait for the device's Update and read /3/0/3.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path as FsPath

import pytest

from lwm2m.cli.client import _simulate_firmware
from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import MODE_PSK, ClientConfig
from lwm2m.client.config import FactoryAccount as ClientServer
from lwm2m.client.objects.firmware import (
    FirmwareUpdate,
    Result,
    State,
    package_identity,
    simulated_package,
    update_fails,
)
from lwm2m.coap.dtls import DtlsServerConfig
from lwm2m.model.nodes import Resource
from lwm2m.model.registry import ModelRegistry
from lwm2m.security.credentials import PskCredential, SecurityEntry
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.events import NotificationEvent, ServerEvent, Subscription, UpdatedEvent
from lwm2m.server.firmware import FirmwareImage, FirmwareRepository
from lwm2m.stores.memory import MemoryStores
from lwm2m.web.app import WebServer, create_app

PSK = PskCredential(b"fw-psk-id", bytes(range(16)))


@dataclass
class Rig:
    server: LwM2MServer
    image: FirmwareImage
    clients: list[LwM2MClient]

    async def add_client(self, endpoint: str, *, secure: bool = False) -> LwM2MClient:
        if secure:
            assert self.server.coaps_address is not None
            host, port = self.server.coaps_address
            account = ClientServer(
                f"coaps://{host}:{port}",
                lifetime_s=60,
                security_mode=MODE_PSK,
                psk_identity=PSK.identity,
                psk_key=PSK.key,
            )
        else:
            host, port = self.server.coap_address
            account = ClientServer(f"coap://{host}:{port}", lifetime_s=60)
        client = LwM2MClient(ClientConfig(endpoint, servers=(account,), local_host="127.0.0.1"))
        self.clients.append(client)
        with self.server.events.subscribe(endpoint) as events:
            await client.start()
            await next_event(events, lambda e: e.endpoint == endpoint)
        return client


@pytest.fixture
async def rig(tmp_path: FsPath, registry: ModelRegistry) -> AsyncIterator[Rig]:
    stores = MemoryStores()
    await stores.security.put(SecurityEntry("fw-secure", psk=PSK))

    def psk_lookup(identity: bytes) -> bytes | None:
        entry = stores.security.get_by_psk_identity(identity)
        return None if entry is None or entry.psk is None else entry.psk.key

    repo = await FirmwareRepository.open(stores.documents, tmp_path)
    image = await repo.add(simulated_package("2.0.1", 40_000), name="app", version="2.0.1")
    server = LwM2MServer(
        stores,
        config=ServerConfig(
            coap_port=0, coaps_port=0, dtls=DtlsServerConfig(psk_lookup=psk_lookup)
        ),
        model=registry,
        firmware=repo,
    )
    await server.start()
    rig = Rig(server, image, [])
    try:
        yield rig
    finally:
        for client in rig.clients:
            await client.stop(deregister=False)
        await server.stop()


async def next_event(
    events: Subscription, match: Callable[[ServerEvent], bool], timeout: float = 20.0
) -> ServerEvent:
    async with asyncio.timeout(timeout):
        while True:
            event = await events.get()
            if match(event):
                return event


def _state_is(state: State) -> Callable[[ServerEvent], bool]:
    def match(event: ServerEvent) -> bool:
        if not isinstance(event, NotificationEvent):
            return False
        node = event.content
        return isinstance(node, Resource) and node.value == int(state)

    return match


async def _resource(server: LwM2MServer, endpoint: str, path: str) -> object:
    read = await server.read(endpoint, path, timeout=10)
    assert isinstance(read.content, Resource)
    return read.content.value


async def pull_and_update(rig: Rig, endpoint: str, method: str) -> None:
    """What a campaign does for one device, the pull way."""
    server = rig.server
    registration = server.get_registration(endpoint)
    assert registration is not None
    uri = server.firmware_uri(rig.image.id, registration, method)
    with server.events.subscribe(endpoint) as events:
        await server.observe(endpoint, "/5/0/3", timeout=10)
        await server.write(endpoint, "/5/0/1", uri, timeout=10)
        await next_event(events, _state_is(State.DOWNLOADED))
        await server.execute(endpoint, "/5/0/2", timeout=10)
        await next_event(events, lambda e: isinstance(e, UpdatedEvent))


async def test_pull_over_coaps_through_the_device_dtls_session(rig: Rig) -> None:
    client = await rig.add_client("fw-secure", secure=True)
    registration = rig.server.get_registration("fw-secure")
    assert registration is not None and registration.secure
    uri = rig.server.firmware_uri(rig.image.id, registration, "coap")
    assert uri.startswith("coaps://")
    await pull_and_update(rig, "fw-secure", "coap")
    firmware = client.instance(5, 0)
    assert isinstance(firmware, FirmwareUpdate)
    # Firmware Update Protocol Support (/5/0/8) announces CoAPS (1) with CoAP, HTTP, HTTPS.
    support = await rig.server.read("fw-secure", "/5/0/8", timeout=10)
    assert isinstance(support.content, Resource)
    assert sorted((support.content.instances or {}).values()) == [0, 1, 2, 3]
    assert await _resource(rig.server, "fw-secure", "/3/0/3") == "2.0.1"
    assert await _resource(rig.server, "fw-secure", "/5/0/5") == Result.SUCCESS
    assert await _resource(rig.server, "fw-secure", "/5/0/3") == State.IDLE
    assert await _resource(rig.server, "fw-secure", "/5/0/7") == "2.0.1"
    # The pull went through the registration's DTLS socket: no second secure socket.
    assert sum(1 for key in client._endpoints if key[0] == "dtls") == 1  # type: ignore[index]


async def test_pull_over_coap(rig: Rig) -> None:
    await rig.add_client("fw-plain")
    await pull_and_update(rig, "fw-plain", "coap")
    assert await _resource(rig.server, "fw-plain", "/3/0/3") == "2.0.1"


async def test_pull_over_http(rig: Rig) -> None:
    web = WebServer(create_app(rig.server, None), "127.0.0.1", 0)
    await web.start()
    try:
        rig.server.http_address = ("127.0.0.1", web.port)
        await rig.add_client("fw-http")
        await pull_and_update(rig, "fw-http", "http")
        assert await _resource(rig.server, "fw-http", "/3/0/3") == "2.0.1"
    finally:
        await web.stop()


async def test_simulated_fleet_fail_rate_is_predictable(rig: Rig) -> None:
    """``--fw-fail-rate 0.5 --fw-seed 7``: exactly the predicted devices fail with result 8."""
    args = argparse.Namespace(fw_download_rate=1_000_000.0, fw_fail_rate=0.5, fw_seed=7)
    names = [f"fleet-{i}" for i in range(6)]
    predicted = {name for name in names if update_fails(7, name, 0.5)}
    assert 0 < len(predicted) < len(names)  # the seed gives both outcomes
    for name in names:
        client = await rig.add_client(name)
        _simulate_firmware(client, args)
    server = rig.server
    for name in names:
        registration = server.get_registration(name)
        assert registration is not None
        with server.events.subscribe(name) as events:
            await server.observe(name, "/5/0/5", timeout=10)
            await server.observe(name, "/5/0/3", timeout=10)
            uri = server.firmware_uri(rig.image.id, registration, "coap")
            await server.write(name, "/5/0/1", uri, timeout=10)
            await next_event(events, _state_is(State.DOWNLOADED))
            await server.execute(name, "/5/0/2", timeout=10)
            if name in predicted:
                await next_event(events, _result_is(Result.UPDATE_FAILED))
            else:
                await next_event(events, lambda e: isinstance(e, UpdatedEvent))
    for name in names:
        version = await _resource(server, name, "/3/0/3")
        result = await _resource(server, name, "/5/0/5")
        if name in predicted:
            assert result == Result.UPDATE_FAILED and version != "2.0.1"
        else:
            assert result == Result.SUCCESS and version == "2.0.1"


def _result_is(result: Result) -> Callable[[ServerEvent], bool]:
    def match(event: ServerEvent) -> bool:
        if not isinstance(event, NotificationEvent):
            return False
        node = event.content
        return (
            isinstance(node, Resource)
            and event.observation.path.resource_id == 5
            and node.value == int(result)
        )

    return match


def test_package_header_and_fail_rule() -> None:
    package = simulated_package("3.4", 100, name="app")
    assert len(package) == 100 and package.startswith(b"LWM2MFW1 3.4 app\n")
    assert package_identity(package) == ("app", "3.4")
    assert package_identity(simulated_package("1.0")) == ("firmware", "1.0")
    assert package_identity(b"FW:demo:2.0\nxx") == ("demo", "2.0")
    assert package_identity(b"plain bytes") is None
    assert simulated_package("3.4", 100) == simulated_package("3.4", 100)
    fails = [update_fails(1, f"d{i}", 0.1) for i in range(2000)]
    assert 150 < sum(fails) < 250
    assert not any(update_fails(1, f"d{i}", 0.0) for i in range(100))
    assert all(update_fails(1, f"d{i}", 1.0) for i in range(100))
