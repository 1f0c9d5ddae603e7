"""Bootstrap-Read (LwM2M 1.1, 6.1.7.2): the real client answers, the real server asks.

The client serves it to its Bootstrap-Server account only, on the Server and
Access Control objects; the Security object is refused with 4.01. The
Bootstrap Server reads as a step of a session's plan (``read`` in the
configuration) or on its own (:meth:`BootstrapServer.read`), and keeps the
answer in the session history.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from bs_rawpeer import RawPeer
from bs_world import running_servers

from lwm2m.bootstrap.events import FailureReason, Operation, SessionMode
from lwm2m.bootstrap.history import SessionRecord, Step
from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.client.bootstrap.interface import BootstrapOptions, install_bootstrap
from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.formats import registry as formats
from lwm2m.formats.media import ContentFormat
from lwm2m.model.nodes import LwM2MObject
from lwm2m.model.path import Path
from lwm2m.model.registry import default_registry
from lwm2m.protocol.bootstrap_config import BootstrapConfigError, parse_client_config
from lwm2m.protocol.errors import RemoteError
from lwm2m.server import LwM2MServer
from lwm2m.server.events import RegistrationEvent

TIMEOUT = 10.0
Address = tuple[str, int]


@dataclass
class World:
    server: LwM2MServer
    bs: BootstrapServer
    clients: list[LwM2MClient]

    @property
    def server_uri(self) -> str:
        return f"coap://127.0.0.1:{self.server.coap_address[1]}"

    def bs_uri(self, port: int | None = None) -> str:
        assert self.bs.coap_address is not None
        return f"coap://127.0.0.1:{port if port is not None else self.bs.coap_address[1]}"

    def client(
        self, endpoint: str, *, bs_port: int | None = None, registered: bool = True, **kw: Any
    ) -> LwM2MClient:
        accounts: tuple[FactoryAccount, ...] = (
            FactoryAccount(self.bs_uri(bs_port), bootstrap=True),
        )
        if registered:
            accounts = (
                FactoryAccount(self.server_uri, short_server_id=101, lifetime_s=300),
                *accounts,
            )
        client = LwM2MClient(ClientConfig(endpoint, servers=accounts, local_host="127.0.0.1", **kw))
        self.clients.append(client)
        return client

    async def start_registered(self, client: LwM2MClient) -> Address:
        with self.server.events.subscribe(client.endpoint_name) as sub:
            await client.start()
            while not isinstance(await asyncio.wait_for(sub.get(), TIMEOUT), RegistrationEvent):
                pass
        assert client.local_address is not None
        return ("127.0.0.1", client.local_address[1])


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clients: list[LwM2MClient] = []
    async with running_servers(clients) as (server, bs):
        yield World(server, bs, clients)


def _resources(content: dict[str, Any], iid: int) -> dict[int, Any]:
    (instance,) = [i for i in content["instances"] if i["id"] == iid]
    return {r["id"]: r.get("value") for r in instance["resources"]}


# ----------------------------------------------------------------------------- BootstrapServer.read


async def test_server_initiated_read_of_the_server_object(world: World) -> None:
    client = world.client("dev-read")
    cb = install_bootstrap(client)
    address = await world.start_registered(client)
    record = await world.bs.read("dev-read", address, "/1")
    assert record.ok and record.mode is SessionMode.SERVER_INITIATED
    assert record.content_format == ContentFormat.SENML_CBOR  # no configuration: 1.1 default
    (step,) = record.steps
    assert (step.operation, step.path, step.code) == (Operation.READ, "/1", "2.05")
    assert step.content is not None and step.content["kind"] == "object"
    values = _resources(step.content, 0)
    assert values[0] == 101 and values[1] == 300  # Short Server ID, Lifetime
    # Recorded like any session, and no Bootstrap-Finish was sent.
    assert [r.id for r in world.bs.sessions.list("dev-read")] == [record.id]
    assert cb.finished_count == 0


@pytest.mark.parametrize("fmt", [ContentFormat.LWM2M_TLV, ContentFormat.SENML_JSON])
async def test_read_instance_in_the_requested_format(world: World, fmt: ContentFormat) -> None:
    client = world.client("dev-fmt")
    install_bootstrap(client)
    address = await world.start_registered(client)
    record = await world.bs.read("dev-fmt", address, Path(1, 0), content_format=int(fmt))
    assert record.ok, record.message
    (step,) = record.steps
    assert step.content is not None and step.content["kind"] == "instance"
    assert {r["id"]: r.get("value") for r in step.content["resources"]}[0] == 101


async def test_read_of_a_missing_instance_fails_with_the_client_code(world: World) -> None:
    client = world.client("dev-missing")
    install_bootstrap(client)
    address = await world.start_registered(client)
    record = await world.bs.read("dev-missing", address, "/1/7")
    assert not record.ok
    assert record.failure is FailureReason.ERROR_RESPONSE and record.code == "4.04"
    assert record.steps[0].content is None


async def test_read_refuses_other_objects_before_sending(world: World) -> None:
    for path in ("/0", "/0/0", "/3", "/1/0/1", "/"):
        with pytest.raises(ValueError, match="Bootstrap-Read targets"):
            await world.bs.read("dev-x", ("127.0.0.1", 9), path)
    assert world.bs.sessions.list("dev-x") == []


async def test_read_request_on_the_wire_and_timeout(raw_peer: RawPeer) -> None:
    bs = BootstrapServer(request_timeout_s=0.5)
    await bs.start("127.0.0.1", 0)
    try:
        task = asyncio.create_task(
            bs.read(
                "dev-gone", raw_peer.address, "/2/0", content_format=int(ContentFormat.LWM2M_TLV)
            )
        )
        request, _ = await raw_peer.receive()
        assert request.code == Code.GET and request.uri_path == ("2", "0")
        assert request.accept == ContentFormat.LWM2M_TLV and not request.payload
        record = await task  # never answered
    finally:
        await bs.close()
    assert not record.ok and record.failure is FailureReason.TIMEOUT
    assert _ended(bs, record)


def _ended(bs: BootstrapServer, record: SessionRecord) -> bool:
    stored = bs.sessions.get(record.id)
    return stored is not None and stored.ended_at is not None


# ----------------------------------------------------------------------------- read in a session plan


async def test_client_initiated_session_reads_before_writing(world: World) -> None:
    await world.bs.configs.put(
        "dev-plan",
        {
            "read": ["/1", "/2"],
            "servers": [{"short_server_id": 102, "uri": world.server_uri, "lifetime": 120}],
        },
    )
    client = world.client("dev-plan", registered=False)
    install_bootstrap(client, BootstrapOptions(max_attempts=1, finish_timeout_s=TIMEOUT))
    await world.start_registered(client)
    (record,) = world.bs.sessions.list("dev-plan")
    assert record.ok, record.message
    ops = [(s.operation, s.path) for s in record.steps]
    assert ops[:3] == [
        (Operation.DISCOVER, "/0"),
        (Operation.READ, "/1"),
        (Operation.READ, "/2"),
    ]
    assert ops[-1] == (Operation.FINISH, "/bs")
    reads = [s for s in record.steps if s.operation is Operation.READ]
    # Read before the writes: the client had no Server instance yet.
    assert all(s.code == "2.05" and s.content is not None for s in reads)
    assert reads[0].content is not None and reads[0].content["instances"] == []
    assert [a.short_server_id for a in client.store.server_accounts()] == [102]


async def test_refused_read_does_not_end_the_session(world: World) -> None:
    """A LwM2M 1.0 client has no Bootstrap-Read: the refusal is recorded, the writes go on."""
    await world.bs.configs.put(
        "dev-10",
        {
            "read": ["/1"],
            "servers": [{"short_server_id": 101, "uri": world.server_uri}],
        },
    )
    client = world.client("dev-10", registered=False, lwm2m_version="1.0")
    install_bootstrap(client, BootstrapOptions(max_attempts=1, finish_timeout_s=TIMEOUT))
    await world.start_registered(client)
    (record,) = world.bs.sessions.list("dev-10")
    assert record.ok, record.message
    (read,) = [s for s in record.steps if s.operation is Operation.READ]
    assert read.code == "4.06" and read.content is None


def test_config_read_paths_are_validated() -> None:
    config = parse_client_config("dev-1", {"read": ["/1", "/2/3"]})
    assert config.read == (Path(1), Path(2, 3))
    assert config.to_json()["read"] == ["/1", "/2/3"]
    for bad, where in (
        (["/0"], "read[0]"),
        (["/1", "/3/0"], "read[1]"),
        (["/1/0/0"], "read[0]"),
        ("/1", "read"),
        ([7], "read[0]"),
    ):
        with pytest.raises(BootstrapConfigError) as info:
            parse_client_config("dev-1", {"read": bad})
        assert f".{where}:" in str(info.value)


def test_step_content_survives_the_history_log() -> None:
    content = {"path": "/1", "kind": "object", "id": 1, "instances": []}
    record = SessionRecord(
        "abc",
        "dev",
        SessionMode.SERVER_INITIATED,
        "127.0.0.1:1",
        1.0,
        steps=(Step(0, Operation.READ, "/1", 1.0, code="2.05", content=content),),
    )
    again = SessionRecord.from_json(record.to_json())
    assert again == record and again.steps[0].content == content


# ----------------------------------------------------------------------------- the client's answers


@pytest.fixture
async def fake_bs() -> AsyncIterator[Endpoint]:
    endpoint = await Endpoint.create("127.0.0.1", 0)
    yield endpoint
    await endpoint.close()


async def _get(endpoint: Endpoint, to: Address, path: str, accept: int | None) -> Message:
    segments = tuple(s for s in path.split("/") if s)
    return await endpoint.request(
        Message(Code.GET, uri_path=segments, accept=accept), to, timeout=TIMEOUT
    )


async def test_client_answers_bootstrap_read(world: World, fake_bs: Endpoint) -> None:
    client = world.client("dev-wire", bs_port=fake_bs.local_address[1])
    install_bootstrap(client)
    address = await world.start_registered(client)
    cbor = int(ContentFormat.SENML_CBOR)

    response = await _get(fake_bs, address, "/1", cbor)
    assert response.code == Code.CONTENT and response.content_format == cbor
    node = formats.decode(response.payload, Path(1), cbor, default_registry())
    assert isinstance(node, LwM2MObject) and node.instances[0].resources[0].value == 101

    security = await _get(fake_bs, address, "/0", cbor)
    assert security.code == Code.UNAUTHORIZED
    assert (await _get(fake_bs, address, "/0/1", cbor)).code == Code.UNAUTHORIZED
    assert security.content_format == ContentFormat.TEXT  # a diagnostic, no account data
    for path in ("/3", "/3/0", "/1/0/1", "/"):
        assert (await _get(fake_bs, address, path, cbor)).code == Code.BAD_REQUEST, path
    assert (await _get(fake_bs, address, "/2/5", cbor)).code == Code.NOT_FOUND
    assert (await _get(fake_bs, address, "/1", 9999)).code == Code.NOT_ACCEPTABLE
    # Link format (or no Accept) is still Bootstrap-Discover.
    discover = await _get(fake_bs, address, "/1", None)
    assert discover.code == Code.CONTENT
    assert discover.content_format == ContentFormat.LINK_FORMAT


async def test_lwm2m_servers_cannot_bootstrap_read(world: World, fake_bs: Endpoint) -> None:
    """Only the Bootstrap-Server account's address reaches the Bootstrap Interface."""
    client = world.client("dev-dm", bs_port=fake_bs.local_address[1])
    install_bootstrap(client)
    await world.start_registered(client)
    with pytest.raises(RemoteError) as info:
        await world.server.read("dev-dm", "/0/0")
    assert info.value.code == Code.UNAUTHORIZED
