"""The client's Bootstrap Interface against a raw socket playing the Bootstrap Server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from bs_rawpeer import RawPeer, open_raw_peer

from lwm2m.client.bootstrap.interface import (
    ClientBootstrap,
    check_bootstrap_result,
    install_bootstrap,
)
from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.client.observe import Observation
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.formats import registry as formats
from lwm2m.model.nodes import ObjectInstance, Resource
from lwm2m.model.path import Path
from lwm2m.model.types import ResourceType

R, W, E, D = 1, 2, 4, 8


class Bench:
    def __init__(self, client: LwM2MClient, bs: RawPeer, handler: ClientBootstrap) -> None:
        self.client = client
        self.bs = bs
        self.handler = handler

    async def send(self, message: Message) -> Message:
        assert self.client.local_address is not None
        return await self.bs.request(message, ("127.0.0.1", self.client.local_address[1]))


@pytest.fixture
async def bench() -> AsyncIterator[Bench]:
    bs = await open_raw_peer()
    uri = f"coap://127.0.0.1:{bs.address[1]}"
    # Two LwM2M servers that nobody listens to (registration keeps retrying in the background).
    client = LwM2MClient(
        ClientConfig(
            "dev-1",
            servers=(
                FactoryAccount("coap://127.0.0.1:9", short_server_id=101),
                FactoryAccount("coap://127.0.0.1:10", short_server_id=102),
                FactoryAccount(uri, bootstrap=True),
            ),
            local_host="127.0.0.1",
            retry_initial_s=3600.0,
        )
    )
    handler = install_bootstrap(client)
    await client.start()
    try:
        yield Bench(client, bs, handler)
    finally:
        await client.stop(deregister=False)
        bs.close()


def _tlv(path: Path, *resources: Resource) -> bytes:
    assert path.instance_id is not None
    return formats.encode(ObjectInstance.of(path.instance_id, resources), path, 11542)


async def test_discover_lists_accounts(bench: Bench) -> None:
    response = await bench.send(Message(Code.GET, uri_path=("0",), accept=40))
    assert response.code == Code.CONTENT and response.content_format == 40
    text = response.payload.decode()
    assert text.startswith('</>;lwm2m="1.1",')
    assert '</0/0>;ssid=101;uri="coap://127.0.0.1:9"' in text
    assert f'</0/2>;uri="coap://127.0.0.1:{bench.bs.address[1]}"' in text  # bootstrap: no ssid
    everything = (await bench.send(Message(Code.GET, uri_path=()))).payload.decode()
    assert "</1/0>;ssid=101" in everything and "</3/0>" in everything


async def test_write_creates_and_replaces_instances(bench: Bench) -> None:
    payload = _tlv(
        Path(1, 7),
        Resource.single(0, 103, ResourceType.INTEGER),
        Resource.single(1, 60, ResourceType.INTEGER),
        Resource.single(7, "U", ResourceType.STRING),
    )
    response = await bench.send(
        Message(Code.PUT, uri_path=("1", "7"), payload=payload, content_format=11542)
    )
    assert response.code == Code.CHANGED
    inst = bench.client.store.instance(1, 7)
    assert inst is not None and inst.get(0) == 103 and inst.get(1) == 60
    # Resource-level Bootstrap-Write in text/plain.
    response = await bench.send(
        Message(Code.PUT, uri_path=("1", "7", "1"), payload=b"90", content_format=0)
    )
    assert response.code == Code.CHANGED and inst.get(1) == 90


@pytest.mark.parametrize(
    ("message", "code", "fragment"),
    [
        (
            Message(Code.PUT, uri_path=("1", "0"), payload=b"\x00"),
            Code.BAD_REQUEST,
            "without Content-Format",
        ),
        (
            Message(Code.PUT, uri_path=("1", "0"), payload=b"x", content_format=9999),
            Code.UNSUPPORTED_CONTENT_FORMAT,
            "9999",
        ),
        (
            Message(Code.PUT, uri_path=("1", "0"), payload=b"\xff\xff", content_format=11542),
            Code.BAD_REQUEST,
            "",
        ),
        (
            Message(Code.PUT, uri_path=("4242", "0"), payload=b"", content_format=11542),
            Code.NOT_FOUND,
            "4242",
        ),
        (Message(Code.PUT, uri_path=("x",), payload=b""), Code.BAD_REQUEST, "not a decimal"),
        (Message(Code.DELETE, uri_path=("0", "2")), Code.BAD_REQUEST, "Bootstrap-Server account"),
        (
            Message(Code.DELETE, uri_path=("1", "0", "1")),
            Code.BAD_REQUEST,
            "Bootstrap-Delete targets",
        ),
        # Accept other than link format: Bootstrap-Read, never of the Security object.
        (Message(Code.GET, uri_path=("0",), accept=50), Code.UNAUTHORIZED, "Security object"),
        (Message(Code.GET, uri_path=("3",), accept=50), Code.BAD_REQUEST, "Bootstrap-Read"),
        (Message(Code.POST, uri_path=("bs",), payload=b"x"), Code.BAD_REQUEST, "no payload"),
        (Message(Code.GET, uri_path=("bs",)), Code.METHOD_NOT_ALLOWED, ""),
        (Message(Code.POST, uri_path=("1", "0")), Code.METHOD_NOT_ALLOWED, ""),
    ],
)
async def test_refused_requests(bench: Bench, message: Message, code: Code, fragment: str) -> None:
    response = await bench.send(message)
    assert response.code == code, response
    assert fragment in response.payload.decode()


async def test_delete_root_keeps_bootstrap_account_and_device(bench: Bench) -> None:
    response = await bench.send(Message(Code.DELETE, uri_path=()))
    assert response.code == Code.DELETED
    store = bench.client.store
    assert [i.id for i in store.instances(0)] == [2]  # the bootstrap account
    assert store.instances(1) == [] and store.instances(2) == []
    assert store.instance(3, 0) is not None
    finish = await bench.send(Message(Code.POST, uri_path=("bs",)))
    assert finish.code == Code.NOT_ACCEPTABLE and b"no LwM2M Server account" in finish.payload


async def test_delete_security_unbootstraps_exactly(bench: Bench) -> None:
    store = bench.client.store
    store.create_instance(2, 10, {0: 3, 1: 0, 2: {101: R | W | D, 102: R | W}, 3: 101})  # shared
    store.create_instance(2, 11, {0: 5, 1: 0, 2: {101: R}, 3: 101})  # only 101
    store.create_instance(2, 12, {0: 6, 1: 0, 2: {102: R}, 3: 102})  # not 101's
    for ssid in (101, 102):
        obs = Observation(ssid, (Path(3, 0, 13),), bytes([ssid]), 0, False, handle=None)
        bench.client.observations.add(obs, {})
    response = await bench.send(Message(Code.DELETE, uri_path=("0", "0")))  # server 101
    assert response.code == Code.DELETED
    shared = store.instance(2, 10)
    assert shared is not None and shared.get(2) == {102: R | W} and shared.get(3) == 102
    assert store.instance(2, 11) is None  # rule 1: deleted with its ACL...
    assert store.instance(5, 0) is None  # ...and the instance it governed
    other = store.instance(2, 12)
    assert other is not None and other.get(2) == {102: R} and other.get(3) == 102
    assert store.server_instance(101) is None  # rule 4
    assert store.server_instance(102) is not None
    assert [o.ssid for o in bench.client.observations.all()] == [102]  # rule 3
    (plan,) = bench.handler.unbootstrapped
    assert plan.short_server_id == 101
    finish = await bench.send(Message(Code.POST, uri_path=("bs",)))
    assert finish.code == Code.CHANGED  # 102 remains: consistent


async def test_finish_rejects_inconsistent_short_server_ids(bench: Bench) -> None:
    payload = _tlv(
        Path(0, 5),
        Resource.single(0, "coap://127.0.0.1:11", ResourceType.STRING),
        Resource.single(1, False, ResourceType.BOOLEAN),
        Resource.single(2, 3, ResourceType.INTEGER),
        Resource.single(10, 101, ResourceType.INTEGER),  # 101 is already /0/0
    )
    assert (
        await bench.send(
            Message(Code.PUT, uri_path=("0", "5"), payload=payload, content_format=11542)
        )
    ).code == Code.CHANGED
    finish = await bench.send(Message(Code.POST, uri_path=("bs",)))
    assert finish.code == Code.NOT_ACCEPTABLE
    assert b"/0/5: Short Server ID 101 is also used by /0/0" in finish.payload


def test_check_bootstrap_result_rules() -> None:
    client = LwM2MClient(
        ClientConfig("dev-x", servers=(FactoryAccount("coap://127.0.0.1:9", short_server_id=1),))
    )
    store = client.store
    assert check_bootstrap_result(store) == []
    store.create_instance(1, 5, {0: 7, 1: 60, 7: "U"})
    assert check_bootstrap_result(store) == ["/1/5: Short Server ID 7 has no Security instance"]
    store.delete_instance(1, 5)
    store.create_instance(0, 5, {0: "coap://h", 1: False, 2: 3, 10: 8})
    assert check_bootstrap_result(store) == ["/0/5: Short Server ID 8 has no Server instance"]
    store.delete_instance(0, 5)
    store.create_instance(0, 6, {0: "http://h", 1: False, 2: 3})
    problems = check_bootstrap_result(store)
    assert any("coap:// or coaps://" in p for p in problems)
    assert "/0/6: no valid Short Server ID" in problems
    store.create_instance(0, 7, {0: "coap://bs", 1: True})
    store.create_instance(0, 8, {0: "coap://bs2", 1: True})
    assert "2 Bootstrap-Server accounts" in check_bootstrap_result(store)


async def test_bootstrap_account_timeout_purges_the_account() -> None:
    import asyncio

    from lwm2m.client.scheduler import ManualScheduler

    scheduler = ManualScheduler()
    client = LwM2MClient(
        ClientConfig(
            "dev-t",
            servers=(
                FactoryAccount("coap://127.0.0.1:9", short_server_id=101),
                FactoryAccount("coap://127.0.0.1:5783", bootstrap=True),
            ),
        ),
        scheduler=scheduler,
    )
    bs_instance = next(i for i in client.store.instances(0) if i.get(1) is True)
    bs_instance.set(12, 60)
    handler = ClientBootstrap(client)
    handler._finish = (
        asyncio.get_running_loop().create_future()
    )  # as during a client-initiated bootstrap
    response = await handler.handle(_Req(Message(Code.POST, uri_path=("bs",))))  # type: ignore[arg-type]
    assert response.code == Code.CHANGED
    scheduler.advance(59)
    assert client.store.bootstrap_account() is not None
    scheduler.advance(2)
    assert client.store.bootstrap_account() is None
    refused = await handler.handle(_Req(Message(Code.DELETE, uri_path=("1",))))  # type: ignore[arg-type]
    assert refused.code == Code.UNAUTHORIZED
    assert client.store.instances(1) != []


class _Req:
    def __init__(self, message: Message) -> None:
        self.message = message


def test_factory_and_smartcard_keep_a_bootstrap_option_account(tmp_path: object) -> None:
    import argparse
    import json
    from pathlib import Path as FsPath

    from lwm2m.client.bootstrap import options as bootstrap_options

    assert isinstance(tmp_path, FsPath)
    bs_uri = "coap://127.0.0.1:5783"
    client = LwM2MClient(ClientConfig("dev-k", servers=(FactoryAccount(bs_uri, bootstrap=True),)))
    factory = tmp_path / "f.json"
    factory.write_text(
        json.dumps(
            {"servers": [{"short_server_id": 3, "uri": "coap://h:1", "security_instance": 0}]}
        )
    )
    bootstrap_options.apply(
        client, argparse.Namespace(factory=str(factory), smartcard=None, smartcard_reader=None)
    )
    bs = client.store.bootstrap_account()
    assert bs is not None and bs.uri == bs_uri and bs.security_instance == 1  # moved off /0/0
    assert [a.short_server_id for a in client.store.server_accounts()] == [3]
    assert client.bootstrap_request_handler is not None and client.bootstrapper is not None
    # A factory file with its own bootstrap account wins.
    factory.write_text(
        json.dumps(
            {
                "servers": [{"short_server_id": 3, "uri": "coap://h:1"}],
                "bootstrap_server": {"uri": "coap://other:5783"},
            }
        )
    )
    bootstrap_options.apply(
        client, argparse.Namespace(factory=str(factory), smartcard=None, smartcard_reader=None)
    )
    bs = client.store.bootstrap_account()
    assert bs is not None and bs.uri == "coap://other:5783"
    assert len([i for i in client.store.instances(0) if i.get(1) is True]) == 1


def test_bad_factory_file_is_a_config_error(tmp_path: object) -> None:
    import argparse
    from pathlib import Path as FsPath

    from lwm2m.client.bootstrap import options as bootstrap_options
    from lwm2m.client.config import ClientConfigError

    assert isinstance(tmp_path, FsPath)
    client = LwM2MClient(ClientConfig("dev-k"))
    bad = tmp_path / "f.json"
    bad.write_text('{"servers": [{"short_server_id": 3}]}')
    with pytest.raises(
        ClientConfigError, match=r"--factory: .*f\.json: factory\.servers\[0\]: missing key 'uri'"
    ):
        bootstrap_options.apply(
            client, argparse.Namespace(factory=str(bad), smartcard=None, smartcard_reader=None)
        )
    with pytest.raises(
        ClientConfigError, match=r"--smartcard-reader: .*pyscard|no smartcard reader"
    ):
        bootstrap_options.apply(
            client,
            argparse.Namespace(
                factory=None, smartcard=None, smartcard_reader="", smartcard_file=0x6F4C
            ),
        )
