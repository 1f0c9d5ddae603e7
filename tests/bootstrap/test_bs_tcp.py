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
