"""Bootstrap Server + LwM2M client + LwM2M Server, in every bootstrap mode (seed 7.1)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import pytest
from bs_world import running_servers

from lwm2m.bootstrap.events import FailureReason, SessionMode
from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.client.bootstrap import options as bootstrap_options
from lwm2m.client.bootstrap.interface import BootstrapOptions, ClientBootstrap, install_bootstrap
from lwm2m.client.bootstrap.smartcard import encode_image
from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.coap.codes import Code
from lwm2m.protocol.bootstrap_config import parse_client_config
from lwm2m.protocol.errors import BadRequest, RemoteError
from lwm2m.protocol.provisioning import plan_writes
from lwm2m.server import LwM2MServer
from lwm2m.server.events import DeregistrationEvent, RegistrationEvent, ServerEvent
from lwm2m.stores.memory import MemoryStores

TIMEOUT = 10.0


@dataclass
class World:
    server: LwM2MServer
    bs: BootstrapServer
    clients: list[LwM2MClient]

    @property
    def server_uri(self) -> str:
        return f"coap://127.0.0.1:{self.server.coap_address[1]}"

    @property
    def bs_uri(self) -> str:
        assert self.bs.coap_address is not None
        return f"coap://127.0.0.1:{self.bs.coap_address[1]}"

    def config(self, ssid: int = 101, **extra: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "servers": [{"short_server_id": ssid, "uri": self.server_uri, "lifetime": 300}],
        }
        doc.update(extra)
        return doc

    def client(
        self, endpoint: str, *, bootstrap: bool = True, servers: tuple[FactoryAccount, ...] = ()
    ) -> LwM2MClient:
        accounts = servers + ((FactoryAccount(self.bs_uri, bootstrap=True),) if bootstrap else ())
        client = LwM2MClient(ClientConfig(endpoint, servers=accounts, local_host="127.0.0.1"))
        self.clients.append(client)
        return client

    async def next_event(
        self, endpoint: str, kind: type[ServerEvent], start: Callable[[], Awaitable[Any]]
    ) -> Any:
        with self.server.events.subscribe(endpoint) as sub:
            await start()
            while True:
                event = await asyncio.wait_for(sub.get(), TIMEOUT)
                if isinstance(event, kind):
                    return event


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clients: list[LwM2MClient] = []
    async with running_servers(clients) as (server, bs):
        yield World(server, bs, clients)


def _bootstrap_done(cb: ClientBootstrap) -> asyncio.Event:
    """Set when the client's bootstrapper returns (whatever the outcome)."""
    done = asyncio.Event()
    original = cb.client.bootstrapper
    assert original is not None

    async def wrapped(client: LwM2MClient) -> bool:
        try:
            return await original(client)
        finally:
            done.set()

    cb.client.bootstrapper = wrapped
    return done


async def test_client_initiated_then_registers(world: World) -> None:
    await world.bs.configs.put(
        "dev-ci", world.config(acl=[{"object": 3, "instance": 0, "rights": {"101": "RWE"}}])
    )
    client = world.client("dev-ci")
    install_bootstrap(client, BootstrapOptions(max_attempts=1, finish_timeout_s=TIMEOUT))
    event = await world.next_event("dev-ci", RegistrationEvent, client.start)
    assert event.registration.endpoint == "dev-ci"
    (record,) = world.bs.sessions.list("dev-ci")
    assert record.ok and record.mode is SessionMode.CLIENT_INITIATED
    assert record.content_format == 112  # LwM2M 1.1 client asked for SenML CBOR (pct)
    accounts = client.store.server_accounts()
    assert [a.short_server_id for a in accounts] == [101]
    assert client.store.bootstrap_account() is not None  # kept
    acl = client.store.instance(2, 0)
    assert acl is not None and acl.get(2) == {101: 7} and acl.get(3) == 101
    assert client.bootstrapped


async def test_lwm2m_1_0_client_gets_tlv(world: World) -> None:
    await world.bs.configs.put("dev-10", world.config())
    client = LwM2MClient(
        ClientConfig(
            "dev-10",
            servers=(FactoryAccount(world.bs_uri, bootstrap=True),),
            local_host="127.0.0.1",
            lwm2m_version="1.0",
        )
    )
    world.clients.append(client)
    install_bootstrap(client, BootstrapOptions(max_attempts=1))
    await world.next_event("dev-10", RegistrationEvent, client.start)
    assert world.bs.sessions.list("dev-10")[0].content_format == 11542


async def test_unknown_endpoint_is_refused(world: World) -> None:
    client = world.client("nobody-knows-me")
    cb = install_bootstrap(client, BootstrapOptions(max_attempts=1))
    done = _bootstrap_done(cb)
    await client.start()
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert (
        cb.last_error is not None
        and "4.00" in cb.last_error
        and "Unknown Endpoint" in cb.last_error
    )
    (record,) = world.bs.sessions.list("nobody-knows-me")
    assert record.failure is FailureReason.UNKNOWN_ENDPOINT
    assert client.store.server_accounts() == []


async def test_factory_bootstrap_from_file(world: World, tmp_path: FsPath) -> None:
    file = tmp_path / "factory.json"
    file.write_text(
        json.dumps(world.config(ssid=7, acl=[{"object": 3, "instance": 0, "rights": {"7": "R"}}]))
    )
    client = world.client("dev-factory", bootstrap=False)
    bootstrap_options.apply(
        client, argparse.Namespace(factory=str(file), smartcard=None, smartcard_reader=None)
    )
    event = await world.next_event("dev-factory", RegistrationEvent, client.start)
    assert event.registration.lifetime_s == 300
    assert [a.short_server_id for a in client.store.server_accounts()] == [7]
    assert world.bs.sessions.list() == []  # no bootstrap server involved


async def test_smartcard_image(world: World, tmp_path: FsPath) -> None:
    config = parse_client_config(
        "dev-card", world.config(ssid=9, bootstrap_server={"uri": world.bs_uri})
    )
    image = tmp_path / "card.bin"
    image.write_bytes(encode_image(plan_writes(config)))
    client = world.client("dev-card", bootstrap=False)
    bootstrap_options.apply(
        client, argparse.Namespace(factory=None, smartcard=str(image), smartcard_reader=None)
    )
    await world.next_event("dev-card", RegistrationEvent, client.start)
    assert [a.short_server_id for a in client.store.server_accounts()] == [9]
    bs_account = client.store.bootstrap_account()
    assert bs_account is not None and bs_account.uri == world.bs_uri


async def test_server_initiated_push_rewrites_a_registered_client(world: World) -> None:
    client = world.client(
        "dev-si", servers=(FactoryAccount(world.server_uri, short_server_id=101, lifetime_s=300),)
    )
    install_bootstrap(client)
    await world.next_event("dev-si", RegistrationEvent, client.start)
    await world.bs.configs.put(
        "dev-si", dict(world.config(), servers=[dict(world.config()["servers"][0], lifetime=120)])
    )
    assert client.local_address is not None
    push = world.bs.push("dev-si", ("127.0.0.1", client.local_address[1]))
    event = await world.next_event("dev-si", RegistrationEvent, lambda: push)
    assert event.registration.lifetime_s == 120  # re-registered with the pushed account
    (record,) = world.bs.sessions.list("dev-si")
    assert record.ok and record.mode is SessionMode.SERVER_INITIATED


async def test_registration_hook_pushes_changed_config(world: World) -> None:
    await world.bs.configs.put(
        "dev-hook",
        world.config(ssid=101, acl=[{"object": 3, "instance": 0, "rights": {"101": "R"}}]),
    )
    world.bs.follow_server(world.server)
    client = world.client(
        "dev-hook", servers=(FactoryAccount(world.server_uri, short_server_id=101),)
    )
    install_bootstrap(client)
    stream = world.bs.events.subscribe()
    await client.start()
    while True:
        event = await stream.get(TIMEOUT)
        if event.type.value in ("finished", "failed"):
            break
    stream.close()
    (record,) = world.bs.sessions.list("dev-hook")
    assert record.ok and record.mode is SessionMode.SERVER_INITIATED, record
    assert record.content_format == 112  # the client registered as LwM2M 1.1
    acl = client.store.instance(2, 0)
    assert acl is not None and acl.get(2) == {101: 1}
    assert not world.bs.configs.needs_bootstrap("dev-hook")


async def test_re_bootstrap_replaces_a_deleted_server(world: World) -> None:
    """Push deletes server 101 (unbootstrapping: De-register) and provisions 102 instead."""
    client = world.client(
        "dev-re", servers=(FactoryAccount(world.server_uri, short_server_id=101),)
    )
    install_bootstrap(client)
    await world.next_event("dev-re", RegistrationEvent, client.start)
    client.store.create_instance(2, 5, {0: 6, 1: 0, 2: {101: 15}, 3: 101})
    assert client.store.instance(6, 0) is not None
    await world.server.observe("dev-re", "/3/0/13")
    assert [o.ssid for o in client.observations.all()] == [101]
    await world.bs.configs.put("dev-re", world.config(ssid=102, delete=["/0/0", "/1"]))
    assert client.local_address is not None
    with world.server.events.subscribe("dev-re") as sub:
        result = await world.bs.push("dev-re", ("127.0.0.1", client.local_address[1]))
        assert result.ok, result.message
        seen: list[ServerEvent] = []
        while not any(isinstance(e, RegistrationEvent) for e in seen):
            seen.append(await asyncio.wait_for(sub.get(), TIMEOUT))
    assert any(isinstance(e, DeregistrationEvent) for e in seen)  # D.1.2 rule 5
    assert [a.short_server_id for a in client.store.server_accounts()] == [102]
    assert client.store.instance(2, 5) is None  # D.1.2 rule 1: only 101 could access /6/0,
    assert client.store.instance(6, 0) is None  # so it is deleted with its ACL instance
    assert client.observations.all() == []  # rule 3
    assert client.store.instance(3, 0) is not None
    assert client.store.bootstrap_account() is not None


async def test_finish_with_no_server_is_not_acceptable(world: World) -> None:
    client = world.client(
        "dev-empty", servers=(FactoryAccount(world.server_uri, short_server_id=101),)
    )
    install_bootstrap(client)
    await world.next_event("dev-empty", RegistrationEvent, client.start)
    await world.bs.configs.put("dev-empty", {"delete": ["/0", "/1"]})
    assert client.local_address is not None
    result = await world.bs.push("dev-empty", ("127.0.0.1", client.local_address[1]))
    assert not result.ok and result.code == "4.06"
    assert "no LwM2M Server account" in result.message


async def test_client_failing_a_write(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    await world.bs.configs.put("dev-fail", world.config())
    client = world.client("dev-fail")
    cb = install_bootstrap(client, BootstrapOptions(max_attempts=1, finish_timeout_s=0.5))
    original = client.store.write_instance

    async def failing(
        object_id: int, instance_id: int, values: Any, *, replace: bool = False
    ) -> Any:
        if object_id == 1:
            raise BadRequest("Server object is read-only on this device")
        return await original(object_id, instance_id, values, replace=replace)

    monkeypatch.setattr(client.store, "write_instance", failing)
    done = _bootstrap_done(cb)
    stream = world.bs.events.subscribe()
    await client.start()
    while (await stream.get(TIMEOUT)).type.value not in ("finished", "failed"):
        pass
    stream.close()
    (record,) = world.bs.sessions.list("dev-fail")
    assert record.failure is FailureReason.ERROR_RESPONSE and record.code == "4.00"
    assert "write /1/0" in record.message and "read-only" in record.message
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert cb.last_error == "no valid Bootstrap-Finish in time"


async def test_lwm2m_server_cannot_touch_security_or_bootstrap(world: World) -> None:
    client = world.client(
        "dev-acl", servers=(FactoryAccount(world.server_uri, short_server_id=101),)
    )
    install_bootstrap(client)
    await world.next_event("dev-acl", RegistrationEvent, client.start)
    with pytest.raises(RemoteError) as info:
        await world.server.write("dev-acl", "/0/0/0", "coap://evil:5683")
    assert info.value.code in (Code.UNAUTHORIZED, Code.NOT_FOUND, Code.METHOD_NOT_ALLOWED)
    with pytest.raises(RemoteError):
        await world.server.delete("dev-acl", "/0/0")
    security = client.store.instance(0, 0)
    assert security is not None and security.get(0) == world.server_uri


async def test_client_initiated_over_dtls_psk(world: World) -> None:
    from lwm2m.bootstrap.embedded import build_dtls, identity_checker
    from lwm2m.client.config import MODE_PSK
    from lwm2m.coap.dtls import has_psk_support
    from lwm2m.security.credentials import PskCredential, SecurityEntry

    if not has_psk_support():
        pytest.skip("this OpenSSL build has no PSK")
    stores = MemoryStores()
    psk = PskCredential(b"dev-dtls-id", b"\x01\x02\x03\x04")
    await stores.security.put(SecurityEntry("dev-dtls", psk=psk))
    await stores.security.put(SecurityEntry("dev-thief", psk=PskCredential(b"thief", b"\x05")))
    secure_bs = BootstrapServer(
        request_timeout_s=5.0, identity_check=identity_checker(stores.security)
    )
    await secure_bs.configs.put("dev-dtls", world.config())
    await secure_bs.configs.put("dev-thief", world.config())
    await secure_bs.start("127.0.0.1", 0, coaps_port=0, dtls=build_dtls(stores.security))
    try:
        assert secure_bs.coaps_address is not None
        uri = f"coaps://127.0.0.1:{secure_bs.coaps_address[1]}"

        def client(ep: str, identity: bytes, key: bytes) -> LwM2MClient:
            account = FactoryAccount(
                uri, bootstrap=True, security_mode=MODE_PSK, psk_identity=identity, psk_key=key
            )
            c = LwM2MClient(ClientConfig(ep, servers=(account,), local_host="127.0.0.1"))
            world.clients.append(c)
            return c

        good = client("dev-dtls", psk.identity, psk.key)
        install_bootstrap(good, BootstrapOptions(max_attempts=1, finish_timeout_s=TIMEOUT))
        await world.next_event("dev-dtls", RegistrationEvent, good.start)
        (record,) = secure_bs.sessions.list("dev-dtls")
        assert record.ok
        # Valid credentials of another device do not fetch dev-dtls's configuration.
        thief = client("dev-dtls", b"thief", b"\x05")
        cb = install_bootstrap(thief, BootstrapOptions(max_attempts=1))
        done = _bootstrap_done(cb)
        await thief.start()
        await asyncio.wait_for(done.wait(), TIMEOUT)
        assert cb.last_error is not None and "PSK identity does not belong" in cb.last_error
    finally:
        await secure_bs.close()
