"""State file: atomic, survives a restart; factory reset and reboot really act."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path as FsPath

import pytest
from client_harness import MakeClient, until
from client_rawserver import RawServer

from lwm2m.client import state
from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.client.state import StateFileError
from lwm2m.client.store import ObjectStore
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.model.registry import ModelRegistry


async def test_written_values_survive_restart(
    make_client: MakeClient, server: RawServer, tmp_path: FsPath
) -> None:
    path = tmp_path / "state.json"
    h = await make_client(state_file=str(path))
    r = await server.request(Message(Code.PUT, uri_path=("1", "0", "3"), payload=b"77"), h.address)
    assert r.code == Code.CHANGED
    r = await server.request(
        Message(Code.PUT, uri_path=("3", "0", "15"), payload=b"Europe/Paris"), h.address
    )
    assert r.code == Code.CHANGED
    await until(path.exists)
    data = json.loads(path.read_text())
    assert data["objects"]["1"]["0"]["3"] == 77
    # only writable values are kept: Manufacturer (3/0/0) is read-only, the code supplies it
    assert "0" not in data["objects"]["3"]["0"]
    assert "15" in data["objects"]["3"]["0"]
    stopping = asyncio.ensure_future(h.client.stop())
    msg, addr = await server.next_request()
    server.reply(msg, addr, Code.DELETED)
    await stopping
    # a new process: same config, same state file
    again = LwM2MClient(h.client.config, registry=h.client.registry)
    await again.start()
    try:
        await server.accept_registration()
        assert again.instance(1, 0).get(3) == 77  # type: ignore[union-attr]
        assert again.instance(3, 0).get(15) == "Europe/Paris"  # type: ignore[union-attr]
    finally:
        await again.stop(deregister=False)


async def test_bootstrap_result_persists(tmp_path: FsPath, registry: ModelRegistry) -> None:
    path = tmp_path / "s.json"
    srv = await RawServer().start()
    try:
        config = ClientConfig(
            "dev-9",
            servers=(FactoryAccount("coap://127.0.0.1:9", short_server_id=0, bootstrap=True),),
            state_file=str(path),
            local_host="127.0.0.1",
        )
        client = LwM2MClient(config, registry=registry)
        # what a bootstrap would leave behind
        client.store.create_instance(0, 5, {0: srv.uri, 1: False, 2: 3, 10: 42})
        client.store.create_instance(1, 5, {0: 42, 1: 300, 6: True, 7: "U"})
        client.bootstrapped = True
        client.save_state()
        again = LwM2MClient(config, registry=registry)
        await again.start()
        try:
            msg, _ = await srv.accept_registration()
            assert "lt=300" in msg.uri_query
            assert again.bootstrapped
            assert [a.short_server_id for a in again.store.server_accounts()] == [42]
        finally:
            await again.stop(deregister=False)
    finally:
        srv.close()


async def test_factory_reset_deregisters_and_restores(
    make_client: MakeClient, server: RawServer, tmp_path: FsPath
) -> None:
    path = tmp_path / "state.json"
    h = await make_client(state_file=str(path))
    await server.request(Message(Code.PUT, uri_path=("1", "0", "1"), payload=b"500"), h.address)
    msg, addr = await server.next_request()  # Update with lt=500
    server.reply(msg, addr, Code.CHANGED)
    h.client.store.create_instance(3303, 1, {5700: 3.0})
    msg, addr = await server.next_request()
    server.reply(msg, addr, Code.CHANGED)
    r = await server.request(Message(Code.POST, uri_path=("3", "0", "5")), h.address)
    assert r.code == Code.CHANGED  # answered before the reset happens
    msg, addr = await server.next_request()
    assert msg.code == Code.DELETE and msg.uri_path == ("rd", "abc")  # seed 5.2.3
    server.reply(msg, addr, Code.DELETED)
    msg, addr = await server.next_request()
    assert msg.uri_path == ("rd",) and "lt=60" in msg.uri_query  # factory lifetime again
    assert b"</3303/1>" not in msg.payload  # created after the factory state: gone
    server.reply(msg, addr, Code.CREATED, location_path=("rd", "again"))
    await until(lambda: h.client.sessions[1].registered)
    assert h.client.instance(1, 0).get(1) == 60  # type: ignore[union-attr]


async def test_factory_reset_goes_on_when_the_server_is_gone(
    make_client: MakeClient, server: RawServer
) -> None:
    h = await make_client(deregister_timeout_s=0.5)
    r = await server.request(Message(Code.POST, uri_path=("3", "0", "5")), h.address)
    assert r.code == Code.CHANGED
    msg, _ = await server.next_request()
    assert msg.code == Code.DELETE  # never answered: the server is gone
    # The De-register's retransmissions alone would last 62-93 s; the reset waits
    # deregister_timeout_s and registers again from the factory configuration.
    while True:
        msg, addr = await server.next_request(timeout=40.0)
        if msg.code == Code.POST and msg.uri_path == ("rd",):
            break
        assert msg.code == Code.DELETE  # a retransmission of the abandoned De-register
    server.reply(msg, addr, Code.CREATED, location_path=("rd", "again"))
    await until(lambda: h.client.sessions[1].registered)


async def test_reboot_registers_again(make_client: MakeClient, server: RawServer) -> None:
    h = await make_client()
    r = await server.request(Message(Code.POST, uri_path=("3", "0", "4")), h.address)
    assert r.code == Code.CHANGED
    msg, addr = await server.next_request()
    assert msg.uri_path == ("rd",)  # no De-register on reboot, a fresh Register
    server.reply(msg, addr, Code.CREATED, location_path=("rd", "r2"))
    await until(lambda: bool(h.client.sessions) and h.client.sessions[1].location == ("rd", "r2"))


def test_save_is_atomic_and_load_rejects_garbage(tmp_path: FsPath, registry: ModelRegistry) -> None:
    path = tmp_path / "x.json"
    store = ObjectStore(registry)
    store.create_instance(0, 0, {0: "coap://h", 1: False, 10: 1, 3: b"\x00\x01"})
    state.save(path, state.snapshot(store))
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left
    fresh = ObjectStore(registry)
    state.restore(fresh, state.load(path) or {})
    assert fresh.instance(0, 0).get(3) == b"\x00\x01"  # type: ignore[union-attr]
    path.write_text("{nope")
    with pytest.raises(StateFileError, match="not JSON"):
        state.load(path)
    path.write_text('{"format": "other"}')
    with pytest.raises(StateFileError, match="not an lwm2m client state file"):
        state.load(path)
    path.write_text(
        '{"format": "lwm2m-client-state", "version": 1, "objects": {"0": {"0": {"0": {"zz": 1}}}}}'
    )
    with pytest.raises(StateFileError):
        state.restore(ObjectStore(registry), state.load(path) or {})
    assert state.load(tmp_path / "missing.json") is None
