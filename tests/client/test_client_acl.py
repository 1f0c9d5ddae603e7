"""Access control with two servers (LwM2M 1.1 7.3, seed D.1.2 rules for owners)."""

from __future__ import annotations

from client_harness import MakeClient, until
from client_rawserver import RawServer

from lwm2m.client.acl import FULL, AccessControl, Permission
from lwm2m.client.config import FactoryAccount
from lwm2m.client.store import ObjectStore
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.model.registry import ModelRegistry

R, W, E, D, C = 1, 2, 4, 8, 16


async def test_two_servers_enforce_acl(make_client: MakeClient, server: RawServer) -> None:
    other = await RawServer().start()
    try:
        h = await make_client(
            register=False,
            servers=(
                FactoryAccount(server.uri, 1, lifetime_s=60),
                FactoryAccount(other.uri, 2, lifetime_s=60),
            ),
        )
        _, a1 = await server.accept_registration("s1")
        _, a2 = await other.accept_registration("s2")
        await until(lambda: all(s.registered for s in h.client.sessions.values()))
        store = h.client.store
        # /3/0: server 1 may read and execute, owner is server 2, default: nothing
        store.create_instance(2, 0, {0: 3, 1: 0, 2: {1: R | E}, 3: 2})
        # object 3303: server 2 may create
        store.create_instance(2, 1, {0: 3303, 1: 65535, 2: {2: C}, 3: 65535})
        store.add_object(3303)
        get = Message(Code.GET, uri_path=("3", "0", "0"))
        assert (await server.request(get, a1)).code == Code.CONTENT
        assert (await other.request(get, a2)).code == Code.CONTENT  # owner: full rights
        write = Message(Code.PUT, uri_path=("3", "0", "13"), payload=b"1700000000")
        assert (await server.request(write, a1)).code == Code.UNAUTHORIZED  # no W
        assert (await other.request(write, a2)).code == Code.CHANGED
        # no ACL instance at all: nobody may read
        store.create_instance(3303, 7, {5700: 1.0})
        temp = Message(Code.GET, uri_path=("3303", "7", "5700"))
        assert (await server.request(temp, a1)).code == Code.UNAUTHORIZED
        # Create needs C on the MAX_ID instance
        create = Message(Code.POST, uri_path=("3303",))
        assert (await server.request(create, a1)).code == Code.UNAUTHORIZED
        created = await other.request(create, a2)
        assert created.code == Code.CREATED
        iid = int(created.location_path[1])
        # the creator became Access Control Owner of the new instance
        assert h.client.acl.find(3303, iid) == ({}, 2)
        read_new = Message(Code.GET, uri_path=("3303", str(iid)))
        assert (await other.request(read_new, a2)).code == Code.CONTENT
        assert (await server.request(read_new, a1)).code == Code.UNAUTHORIZED
        # Delete by its owner removes its ACL instance too
        assert (
            await other.request(Message(Code.DELETE, uri_path=("3303", str(iid))), a2)
        ).code == Code.DELETED
        assert h.client.acl.find(3303, iid) is None
        # ACL instances: readable by all, writable by their owner only
        acl_write = Message(Code.PUT, uri_path=("2", "0", "3"), payload=b"1")
        assert (
            await server.request(Message(Code.GET, uri_path=("2", "0")), a1)
        ).code == Code.CONTENT
        assert (await server.request(acl_write, a1)).code == Code.UNAUTHORIZED
        # Security object: never
        assert (
            await other.request(Message(Code.GET, uri_path=("0",)), a2)
        ).code == Code.UNAUTHORIZED
    finally:
        other.close()


def test_rights_resolution(registry: ModelRegistry) -> None:
    store = ObjectStore(registry)
    acl = AccessControl(store)
    for i, ssid in enumerate((1, 2, 3)):
        store.create_instance(0, i, {0: f"coap://h{i}", 1: False, 10: ssid})
        store.create_instance(1, i, {0: ssid, 1: 60, 6: True, 7: "U"})
    store.create_instance(2, 0, {0: 3, 1: 0, 2: {1: R, 0: R | W}, 3: 2})
    assert acl.enforced()
    assert acl.rights(1, 3, 0) == Permission.READ  # own instance wins over the default
    assert acl.rights(2, 3, 0) == FULL  # owner without own ACL entry
    assert acl.rights(3, 3, 0) == Permission.READ | Permission.WRITE  # default ACL (ri 0)
    assert acl.rights(1, 3, 1) == Permission.NONE  # no ACL instance
    assert acl.rights(1, 0, 0) == Permission.NONE  # Security


def test_single_server_has_full_access(registry: ModelRegistry) -> None:
    store = ObjectStore(registry)
    acl = AccessControl(store)
    store.create_instance(0, 0, {0: "coap://h", 1: False, 10: 1})
    store.create_instance(1, 0, {0: 1, 1: 60, 6: True, 7: "U"})
    store.create_instance(0, 1, {0: "coap://bs", 1: True})  # bootstrap account does not count
    assert not acl.enforced()
    assert Permission.WRITE in acl.rights(1, 3, 0)
    assert acl.rights(1, 0, 0) == Permission.NONE
