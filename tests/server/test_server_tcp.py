"""The LwM2M server and the project's client over CoAP over TCP (RFC 8323, binding T)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig
from lwm2m.client.config import FactoryAccount as ClientServerConfig
from lwm2m.coap.tcp_transport import TcpEndpoint
from lwm2m.model.nodes import ObjectInstance, Resource
from lwm2m.server import (
    ClientTimeout,
    LwM2MServer,
    NotificationEvent,
    RegistrationEvent,
    ServerConfig,
    UpdatedEvent,
)
from lwm2m.stores.memory import MemoryStores

TIMEOUT = 10.0


async def _next(events: Any, kind: type) -> Any:
    while True:
        event = await asyncio.wait_for(events.get(), TIMEOUT)
        if isinstance(event, kind):
            return event


@pytest.fixture
async def tcp_server() -> AsyncIterator[LwM2MServer]:
    server = LwM2MServer(
        MemoryStores(),
        config=ServerConfig(
            coap_port=0, coap_tcp_port=0, expiry_interval_s=3600.0, request_timeout_s=TIMEOUT
        ),
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _client(server: LwM2MServer, name: str, **config: Any) -> LwM2MClient:
    address = server.coap_tcp_address
    assert address is not None
    return LwM2MClient(
        ClientConfig(
            name,
            servers=(
                ClientServerConfig(
                    f"coap+tcp://{address[0]}:{address[1]}", lifetime_s=300, binding="T"
                ),
            ),
            local_host="127.0.0.1",
            manufacturer="ACME",
            **config,
        )
    )


async def test_register_read_write_observe_over_tcp(tcp_server: LwM2MServer) -> None:
    client = _client(tcp_server, "tcp-dev")
    with tcp_server.events.subscribe("tcp-dev") as events:
        await client.start()
        try:
            reg = (await _next(events, RegistrationEvent)).registration
            assert reg.transport == "tcp" and reg.binding == "T"
            assert tcp_server.is_connected("tcp-dev")
            device = await tcp_server.read("tcp-dev", "/3/0", timeout=TIMEOUT)
            assert isinstance(device.content, ObjectInstance)
            assert device.content.resources[0].value == "ACME"
            await tcp_server.write("tcp-dev", "/1/0/1", 300, timeout=TIMEOUT)
            observed = await tcp_server.observe("tcp-dev", "/1/0/1", timeout=TIMEOUT)
            await tcp_server.write("tcp-dev", "/1/0/1", 400, timeout=TIMEOUT)
            note = await _next(events, NotificationEvent)
            assert note.observation.id == observed.observation.id
            assert note.content.value == 400
        finally:
            await client.stop(deregister=True)


async def test_request_waits_while_disconnected_and_completes_after_reconnect(
    tcp_server: LwM2MServer,
) -> None:
    client = _client(tcp_server, "drop-dev", tcp_reconnect_backoff_s=0.01)
    with tcp_server.events.subscribe("drop-dev") as events:
        await client.start()
        try:
            first = (await _next(events, RegistrationEvent)).registration
            # the server drops the connection (as a NAT or a network would)
            tcp = tcp_server._coap_tcp
            assert isinstance(tcp, TcpEndpoint)
            tcp._links[first.address].stream.transport.abort()  # type: ignore[union-attr]
            # the read waits for the device; the device reconnects with an Update
            read = asyncio.ensure_future(tcp_server.read("drop-dev", "/3/0/0", timeout=TIMEOUT))
            updated = (await _next(events, UpdatedEvent)).registration
            assert updated.address != first.address and updated.transport == "tcp"
            value = await read
            assert isinstance(value.content, Resource) and value.content.value == "ACME"
        finally:
            await client.stop(deregister=True)


async def test_request_to_a_disconnected_device_times_out_like_a_sleeping_one(
    tcp_server: LwM2MServer,
) -> None:
    client = _client(tcp_server, "gone-dev")
    tcp = tcp_server._coap_tcp
    assert isinstance(tcp, TcpEndpoint)
    closed = asyncio.Event()
    tcp.add_connection_listener(lambda peer, up: None if up else closed.set())
    with tcp_server.events.subscribe("gone-dev") as events:
        await client.start()
        await _next(events, RegistrationEvent)
        await client.stop(deregister=False)  # the connection closes, the registration stays
    await asyncio.wait_for(closed.wait(), TIMEOUT)
    assert tcp_server.get_registration("gone-dev") is not None
    assert not tcp_server.is_connected("gone-dev")
    with pytest.raises(ClientTimeout):
        await tcp_server.read("gone-dev", "/3/0/0", timeout=0.2)


async def test_psk_client_registers_over_tls_and_the_identity_rule_holds() -> None:
    from lwm2m.client.config import MODE_PSK
    from lwm2m.coap.dtls import DtlsServerConfig
    from lwm2m.security.credentials import PskCredential, SecurityEntry

    key = bytes.fromhex("00112233445566778899aabbccddeeff")
    stores = MemoryStores()
    await stores.security.put(SecurityEntry("tls-dev", psk=PskCredential(b"tls-id", key)))

    def lookup(identity: bytes) -> bytes | None:
        entry = stores.security.get_by_psk_identity(identity)
        return None if entry is None or entry.psk is None else entry.psk.key

    server = LwM2MServer(
        stores,
        config=ServerConfig(
            coap_port=0,
            coaps_tcp_port=0,
            dtls=DtlsServerConfig(psk_lookup=lookup),
            request_timeout_s=TIMEOUT,
        ),
    )
    await server.start()
    assert server.coaps_tcp_address is not None

    def client(name: str) -> LwM2MClient:
        assert server.coaps_tcp_address is not None
        return LwM2MClient(
            ClientConfig(
                name,
                servers=(
                    ClientServerConfig(
                        f"coaps+tcp://127.0.0.1:{server.coaps_tcp_address[1]}",
                        binding="T",
                        security_mode=MODE_PSK,
                        psk_identity=b"tls-id",
                        psk_key=key,
                    ),
                ),
                local_host="127.0.0.1",
                manufacturer="ACME",
            )
        )

    good = client("tls-dev")
    impostor = client("other-dev")  # right key, but the identity belongs to tls-dev
    try:
        with server.events.subscribe("tls-dev") as events:
            await good.start()
            reg = (await _next(events, RegistrationEvent)).registration
        assert reg.transport == "tcp" and reg.identity is not None
        assert reg.identity.psk_identity == b"tls-id"
        value = await server.read("tls-dev", "/3/0/0", timeout=TIMEOUT)
        assert isinstance(value.content, Resource) and value.content.value == "ACME"
        failed = asyncio.Event()
        impostor.on_event = lambda _c, what: failed.set() if what == "failed" else None
        await impostor.start()
        await asyncio.wait_for(failed.wait(), TIMEOUT)
        assert server.get_registration("other-dev") is None
    finally:
        await impostor.stop()
        await good.stop()
        await server.stop()


async def test_observation_survives_a_reconnect(tcp_server: LwM2MServer) -> None:
    client = _client(tcp_server, "obs-dev", tcp_reconnect_backoff_s=0.01)
    with tcp_server.events.subscribe("obs-dev") as events:
        await client.start()
        try:
            first = (await _next(events, RegistrationEvent)).registration
            await tcp_server.observe("obs-dev", "/1/0/1", timeout=TIMEOUT)
            tcp = tcp_server._coap_tcp
            assert isinstance(tcp, TcpEndpoint)
            tcp._links[first.address].stream.transport.abort()  # type: ignore[union-attr]
            await _next(events, UpdatedEvent)  # reconnected
            await tcp_server.wait_background()  # the dormant observation is registered again
            await tcp_server.write("obs-dev", "/1/0/1", 500, timeout=TIMEOUT)
            note = await _next(events, NotificationEvent)
            assert note.content.value == 500
        finally:
            await client.stop(deregister=True)
