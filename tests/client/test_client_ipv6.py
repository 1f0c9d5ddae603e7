"""The client over IPv6: server, bootstrap server and firmware package URIs on ``[::1]``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.client.bootstrap.interface import BootstrapOptions, install_bootstrap
from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import MODE_PSK, ClientConfig, FactoryAccount
from lwm2m.client.objects.firmware import FirmwareUpdate, State
from lwm2m.coap.codes import Code
from lwm2m.coap.dtls import DtlsServer, DtlsServerConfig, has_psk_support
from lwm2m.coap.endpoint import Endpoint, IncomingRequest
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat
from lwm2m.model.nodes import Resource
from lwm2m.model.registry import ModelRegistry
from lwm2m.server.events import RegistrationEvent
from lwm2m.server.server import LwM2MServer, ServerConfig

TIMEOUT = 10.0


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(
    not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)"
)


@pytest.fixture
async def server6(registry: ModelRegistry) -> AsyncIterator[LwM2MServer]:
    server = LwM2MServer(
        config=ServerConfig(host="::1", coap_port=0, request_timeout_s=5.0), model=registry
    )
    await server.start()
    yield server
    await server.stop()


def uri6(address: tuple[str, int]) -> str:
    return f"coap://[{address[0]}]:{address[1]}"


async def registered(server: LwM2MServer, endpoint: str, client: LwM2MClient) -> RegistrationEvent:
    with server.events.subscribe(endpoint) as events:
        await client.start()
        while True:
            event = await asyncio.wait_for(events.get(), TIMEOUT)
            if isinstance(event, RegistrationEvent):
                return event


@needs_ipv6
async def test_register_and_read_over_ipv6(server6: LwM2MServer, registry: ModelRegistry) -> None:
    host, port = server6.coap_address
    assert host == "::1"
    client = LwM2MClient(
        # local_host is IPv4 loopback: the IPv6 socket binds its counterpart ::1
        ClientConfig(
            "v6-dev", servers=(FactoryAccount(uri6((host, port))),), local_host="127.0.0.1"
        ),
        registry=registry,
    )
    try:
        event = await registered(server6, "v6-dev", client)
        assert event.registration.address[0] == "::1"
        read = await server6.read("v6-dev", "/3/0/0")
        assert isinstance(read.content, Resource) and read.content.value == "lwm2m-py"
        await server6.write("v6-dev", "/1/0/3", 77)
        assert client.instance(1, 0).get(3) == 77  # type: ignore[union-attr]
        # The IPv4 socket is still the client's home socket.
        assert client.local_address is not None and client.local_address[0] == "127.0.0.1"
    finally:
        await client.stop()
    assert server6.get_registration("v6-dev") is None  # de-registered over IPv6 too


@needs_ipv6
async def test_ipv6_only_client(server6: LwM2MServer, registry: ModelRegistry) -> None:
    client = LwM2MClient(
        ClientConfig(
            "v6-only", servers=(FactoryAccount(uri6(server6.coap_address)),), local_host="::1"
        ),
        registry=registry,
    )
    try:
        await registered(server6, "v6-only", client)
        assert client.local_address is not None and client.local_address[0] == "::1"
        read = await server6.read("v6-only", "/3/0/0")
        assert isinstance(read.content, Resource)
    finally:
        await client.stop()


@needs_ipv6
async def test_bootstrap_then_register_over_ipv6(
    server6: LwM2MServer, registry: ModelRegistry
) -> None:
    bs = BootstrapServer(request_timeout_s=5.0)
    await bs.start("::1", 0)
    assert bs.coap_address is not None
    await bs.configs.put(
        "v6-bs",
        {"servers": [{"short_server_id": 5, "uri": uri6(server6.coap_address), "lifetime": 300}]},
    )
    client = LwM2MClient(
        ClientConfig(
            "v6-bs",
            servers=(FactoryAccount(uri6(bs.coap_address), bootstrap=True),),
            local_host="127.0.0.1",
        ),
        registry=registry,
    )
    install_bootstrap(client, BootstrapOptions(max_attempts=1, finish_timeout_s=TIMEOUT))
    try:
        event = await registered(server6, "v6-bs", client)
        assert event.registration.address[0] == "::1"
        assert [a.short_server_id for a in client.store.server_accounts()] == [5]
        (record,) = bs.sessions.list("v6-bs")
        assert record.ok
        read = await server6.read("v6-bs", "/3/0/0")
        assert isinstance(read.content, Resource)
    finally:
        await client.stop()
        await bs.close()


@needs_ipv6
async def test_firmware_pull_from_ipv6_package_uri(registry: ModelRegistry) -> None:
    """A client registered over IPv4 fetches its package from an IPv6 host."""
    package = b"FW:demo:6.0\n" + bytes(range(256)) * 8
    registered_from: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()

    async def lwm2m(request: IncomingRequest) -> Message:
        if request.message.uri_path == ("rd",) and not registered_from.done():
            registered_from.set_result(request.peer.address)
            return Message(Code.CREATED, location_path=("rd", "x"))
        return Message(Code.CHANGED)

    async def files(request: IncomingRequest) -> Message:
        if request.message.uri_path == ("fw", "pkg"):
            return Message(Code.CONTENT, payload=package, content_format=ContentFormat.OCTET_STREAM)
        return Message(Code.NOT_FOUND)

    server = await Endpoint.create("127.0.0.1", 0, handler=lwm2m)
    repo = await Endpoint.create("::1", 0, handler=files)
    client = LwM2MClient(
        ClientConfig(
            "fw6",
            servers=(FactoryAccount(f"coap://127.0.0.1:{server.local_address[1]}"),),
            local_host="127.0.0.1",
        ),
        registry=registry,
    )
    try:
        await client.start()
        address = await asyncio.wait_for(registered_from, TIMEOUT)
        assert address[0] == "127.0.0.1"
        uri = f"{uri6(repo.local_address)}/fw/pkg".encode()
        r = await server.request(Message(Code.PUT, uri_path=("5", "0", "1"), payload=uri), address)
        assert r.code == Code.CHANGED
        fw = client.instance(5, 0)
        assert isinstance(fw, FirmwareUpdate)
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while fw.get(3) != State.DOWNLOADED:
            assert asyncio.get_running_loop().time() < deadline, f"state {fw.get(3)}"
            await asyncio.sleep(0.01)
        assert fw.package == package
    finally:
        await client.stop(deregister=False)
        await repo.close()
        await server.close()


async def test_resolve_literals(registry: ModelRegistry) -> None:
    client = LwM2MClient(ClientConfig("r"), registry=registry)
    assert await client.resolve("coap://[::1]:5690") == ("::1", 5690)
    assert await client.resolve("coaps://[::1]") == ("::1", 5684)
    assert await client.resolve("coap://127.0.0.1") == ("127.0.0.1", 5683)


def _dual_stack_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every name resolve to ::1 first, then 127.0.0.1."""
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: int, **_: object) -> list[object]:
        return [
            (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


async def test_dual_stack_name_prefers_the_local_host_family(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dual_stack_name(monkeypatch)
    ipv4 = LwM2MClient(ClientConfig("a"), registry=registry)
    assert await ipv4.resolve("coap://both.example:5683") == ("127.0.0.1", 5683)
    ipv6 = LwM2MClient(ClientConfig("b", local_host="::"), registry=registry)
    assert await ipv6.resolve("coap://both.example:5683") == ("::1", 5683)


async def test_specific_ipv4_local_host_cannot_reach_ipv6(registry: ModelRegistry) -> None:
    client = LwM2MClient(ClientConfig("c", local_host="192.0.2.7"), registry=registry)
    with pytest.raises(OSError, match="not IPv6"):
        await client.plain_endpoint(("::1", 5683))


@needs_ipv6
@pytest.mark.skipif(not has_psk_support(), reason="OpenSSL binding without PSK callbacks")
async def test_psk_dtls_register_over_ipv6(registry: ModelRegistry) -> None:
    key = bytes.fromhex("00112233445566778899aabbccddeeff")
    seen: asyncio.Queue[IncomingRequest] = asyncio.Queue()

    async def handle(request: IncomingRequest) -> Message:
        seen.put_nowait(request)
        if request.message.code == Code.POST:
            return Message(Code.CREATED, location_path=("rd", "sec"))
        return Message(Code.DELETED)

    layer = DtlsServer(DtlsServerConfig(psk_lookup=lambda i: key if i == b"dev6" else None))
    server = await Endpoint.create("::1", 0, handler=handle, security=layer)
    account = FactoryAccount(
        f"coaps://[::1]:{server.local_address[1]}",
        security_mode=MODE_PSK,
        psk_identity=b"dev6",
        psk_key=key,
    )
    client = LwM2MClient(
        ClientConfig("dev6", servers=(account,), local_host="127.0.0.1"), registry=registry
    )
    try:
        await client.start()
        register = await asyncio.wait_for(seen.get(), TIMEOUT)
        assert register.message.uri_path == ("rd",)
        assert register.peer.address[0] == "::1"
        assert register.peer.identity is not None
        assert register.peer.identity.psk_identity == b"dev6"
        read = await server.request(
            Message(Code.GET, uri_path=("3", "0", "0")), register.peer.address, timeout=TIMEOUT
        )
        assert read.code == Code.CONTENT and read.payload == b"lwm2m-py"
    finally:
        await client.stop(deregister=False)
        await server.close()
