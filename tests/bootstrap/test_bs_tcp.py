"""Client-initiated bootstrap over CoAP over TCP, then registration over TCP (binding T)."""

from __future__ import annotations

import asyncio

from lwm2m.bootstrap.events import SessionMode
from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.client.bootstrap.interface import BootstrapOptions, install_bootstrap
from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.server import LwM2MServer, RegistrationEvent
from lwm2m.server import ServerConfig as LwM2MServerConfig
from lwm2m.stores.memory import MemoryStores

TIMEOUT = 10.0


async def test_bootstrap_and_register_over_tcp() -> None:
    server = LwM2MServer(
        MemoryStores(),
        config=LwM2MServerConfig(coap_port=0, coap_tcp_port=0, request_timeout_s=TIMEOUT),
    )
    await server.start()
    bs = BootstrapServer(request_timeout_s=TIMEOUT)
    await bs.start("127.0.0.1", 0, coap_tcp_port=0)
    client: LwM2MClient | None = None
    try:
        assert bs.coap_tcp_address is not None and server.coap_tcp_address is not None
        server_uri = f"coap+tcp://127.0.0.1:{server.coap_tcp_address[1]}"
        await bs.configs.put(
            "bs-tcp",
            {
                "servers": [
                    {"short_server_id": 7, "uri": server_uri, "lifetime": 300, "binding": "T"}
                ]
            },
        )
        client = LwM2MClient(
            ClientConfig(
                "bs-tcp",
                servers=(
                    FactoryAccount(
                        f"coap+tcp://127.0.0.1:{bs.coap_tcp_address[1]}", bootstrap=True
                    ),
                ),
                local_host="127.0.0.1",
            )
        )
        install_bootstrap(client, BootstrapOptions(max_attempts=1, finish_timeout_s=TIMEOUT))
        with server.events.subscribe("bs-tcp") as events:
            await client.start()
            while True:
                event = await asyncio.wait_for(events.get(), TIMEOUT)
                if isinstance(event, RegistrationEvent):
                    break
        assert event.registration.transport == "tcp" and event.registration.binding == "T"
        (record,) = bs.sessions.list("bs-tcp")
        assert record.ok and record.mode is SessionMode.CLIENT_INITIATED
        assert [a.uri for a in client.store.server_accounts()] == [server_uri]
    finally:
        if client is not None:
            await client.stop()
        await bs.close()
        await server.stop()


async def test_bootstrap_over_tls_with_psk_checks_the_identity() -> None:
    from lwm2m.bootstrap.embedded import build_dtls, identity_checker
    from lwm2m.client.config import MODE_PSK
    from lwm2m.coap.dtls import DtlsServer
    from lwm2m.coap.tls import TlsServer
    from lwm2m.security.credentials import PskCredential, SecurityEntry

    server = LwM2MServer(MemoryStores(), config=LwM2MServerConfig(coap_port=0))
    await server.start()
    stores = MemoryStores()
    psk = PskCredential(b"bs-tls-id", b"\x01\x02\x03\x04")
    await stores.security.put(SecurityEntry("bs-tls", psk=psk))
    await stores.security.put(SecurityEntry("bs-thief", psk=PskCredential(b"thief", b"\x05")))
    bs = BootstrapServer(
        request_timeout_s=TIMEOUT, identity_check=identity_checker(stores.security)
    )
    layer = build_dtls(stores.security)
    assert isinstance(layer, DtlsServer)
    await bs.start("127.0.0.1", 0, coaps_tcp_port=0, tls=TlsServer(layer.config))
    clients: list[LwM2MClient] = []
    try:
        assert bs.coaps_tcp_address is not None
        uri = f"coaps+tcp://127.0.0.1:{bs.coaps_tcp_address[1]}"
        server_uri = f"coap://127.0.0.1:{server.coap_address[1]}"
        await bs.configs.put(
            "bs-tls", {"servers": [{"short_server_id": 3, "uri": server_uri, "lifetime": 300}]}
        )

        def client(identity: bytes, key: bytes) -> LwM2MClient:
            account = FactoryAccount(
                uri, bootstrap=True, security_mode=MODE_PSK, psk_identity=identity, psk_key=key
            )
            c = LwM2MClient(ClientConfig("bs-tls", servers=(account,), local_host="127.0.0.1"))
            clients.append(c)
            return c

        good = client(psk.identity, psk.key)
        install_bootstrap(good, BootstrapOptions(max_attempts=1, finish_timeout_s=TIMEOUT))
        with server.events.subscribe("bs-tls") as events:
            await good.start()
            while not isinstance(await asyncio.wait_for(events.get(), TIMEOUT), RegistrationEvent):
                pass
        (record,) = bs.sessions.list("bs-tls")
        assert record.ok
        # valid TLS credentials of another device do not fetch bs-tls's configuration
        thief = client(b"thief", b"\x05")
        cb = install_bootstrap(thief, BootstrapOptions(max_attempts=1))
        done = asyncio.Event()
        original = thief.bootstrapper
        assert original is not None

        async def wrapped(c: LwM2MClient) -> bool:
            try:
                return await original(c)
            finally:
                done.set()

        thief.bootstrapper = wrapped
        await thief.start()
        await asyncio.wait_for(done.wait(), TIMEOUT)
        assert cb.last_error is not None and "PSK identity does not belong" in cb.last_error
    finally:
        for c in clients:
            await c.stop()
        await bs.close()
        await server.stop()
