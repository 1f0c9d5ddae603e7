"""Write-Attributes survive a restart through the state file; a deleted account's do not."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path as FsPath

import pytest
from client_harness import MakeClient, until
from client_rawserver import RawServer

from lwm2m.client import state
from lwm2m.client.client import LwM2MClient
from lwm2m.client.observe import AttributeStore
from lwm2m.client.state import StateFileError
from lwm2m.client.store import SERVER, ObjectStore
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.protocol.attributes import Attributes


def saved_attributes(path: FsPath) -> list[dict[str, object]]:
    if not path.exists():
        return []
    entries = json.loads(path.read_text()).get("attributes", [])
    assert isinstance(entries, list)
    return entries


async def test_attributes_survive_a_restart(
    make_client: MakeClient, server: RawServer, tmp_path: FsPath
) -> None:
    path = tmp_path / "state.json"
    h = await make_client(state_file=str(path))
    for uri, query in (
        (("3", "0", "9"), ("pmin=10", "pmax=60", "gt=50", "lt=20", "st=2")),
        (("3",), ("epmin=1", "epmax=30")),
    ):
        r = await server.request(Message(Code.PUT, uri_path=uri, uri_query=query), h.address)
        assert r.code == Code.CHANGED
    await until(lambda: len(saved_attributes(path)) == 2)
    assert {"ssid": 1, "path": "/3", "attributes": {"epmin": 1, "epmax": 30}} in (
        saved_attributes(path)
    )
    stopping = asyncio.ensure_future(h.client.stop())
    msg, addr = await server.next_request()
    server.reply(msg, addr, Code.DELETED)
    await stopping
    again = LwM2MClient(h.client.config, registry=h.client.registry)
    await again.start()
    try:
        await server.accept_registration()
        assert again.attributes.get(1, Path(3, 0, 9)) == Attributes(
            pmin=10, pmax=60, gt=50.0, lt=20.0, st=2.0
        )
        effective = again.attributes.effective(1, Path(3, 0, 9))
        assert (effective.pmin, effective.epmax) == (10, 30)
    finally:
        await again.stop(deregister=False)


async def test_deleted_account_drops_its_attributes(
    make_client: MakeClient, server: RawServer, tmp_path: FsPath
) -> None:
    path = tmp_path / "state.json"
    h = await make_client(state_file=str(path))
    r = await server.request(
        Message(Code.PUT, uri_path=("3", "0", "9"), uri_query=("pmin=5",)), h.address
    )
    assert r.code == Code.CHANGED
    await until(lambda: len(saved_attributes(path)) == 1)
    h.client.store.delete_instance(SERVER, 0)  # what a Bootstrap-Delete /1/0 does
    assert h.client.attributes.items() == []
    await until(lambda: "attributes" in json.loads(path.read_text()))
    await until(lambda: saved_attributes(path) == [])


def test_restore_keeps_only_live_accounts_and_rejects_garbage(
    tmp_path: FsPath, registry: ModelRegistry
) -> None:
    store = ObjectStore(registry)
    store.create_instance(0, 0, {0: "coap://h:1", 1: False, 2: 3, 10: 1})
    store.create_instance(1, 0, {0: 1, 1: 60, 7: "U"})
    attrs = AttributeStore()
    attrs.set(1, Path(3, 0, 9), Attributes(pmin=3))
    attrs.set(7, Path(3, 0, 9), Attributes(pmax=9))  # no account 7: not saved
    data = state.snapshot(store, attributes=attrs)
    assert data["attributes"] == [{"ssid": 1, "path": "/3/0/9", "attributes": {"pmin": 3}}]
    data["attributes"].append({"ssid": 8, "path": "/3", "attributes": {"pmin": 1}})
    fresh = AttributeStore()
    assert state.restore_attributes(store, fresh, data) == 1  # account 8 does not exist
    assert fresh.items() == [(1, Path(3, 0, 9), Attributes(pmin=3))]
    for bad, message in (
        ("nope", "must be a list"),
        ([5], "not an object"),
        ([{"ssid": 0, "path": "/3", "attributes": {}}], "bad ssid"),
        ([{"ssid": 1, "path": "/x", "attributes": {}}], "attribute entry of server 1"),
        ([{"ssid": 1, "path": "/3", "attributes": {"foo": 1}}], "unknown attribute"),
        ([{"ssid": 1, "path": "/3", "attributes": {"pmin": 1.5}}], "bad pmin"),
        ([{"ssid": 1, "path": "/3", "attributes": {"pmin": 9, "pmax": 2}}], "less than pmin"),
    ):
        with pytest.raises(StateFileError, match=message):
            state.restore_attributes(store, AttributeStore(), {"attributes": bad})
