"""LwM2M 1.1 E.2: while a server account is disabled, its requests get no answer at all."""

from __future__ import annotations

import asyncio

import pytest
from client_harness import Harness, MakeClient, until
from client_rawserver import Address, RawServer

from lwm2m.client.config import FactoryAccount
from lwm2m.client.registration import RegistrationState
from lwm2m.coap import codec
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message

READ = Message(Code.GET, uri_path=("3", "0", "0"))


async def disable(server: RawServer, address: Address, h: Harness, ssid: int, seconds: int) -> None:
    path = ("1", str(ssid - 1))
    r = await server.request(
        Message(Code.PUT, uri_path=(*path, "5"), payload=str(seconds).encode()), address
    )
    assert r.code == Code.CHANGED
    r = await server.request(Message(Code.POST, uri_path=(*path, "4")), address)
    assert r.code == Code.CHANGED  # the Disable itself is answered
    msg, addr = await server.next_request()
    assert msg.code == Code.DELETE  # de-registers first
    server.reply(msg, addr, Code.DELETED)
    await until(lambda: h.client.sessions[ssid].state is RegistrationState.DISABLED)


async def test_disabled_server_is_ignored_until_the_timeout_ends(make_client: MakeClient) -> None:
    h = await make_client()
    server = h.server
    await disable(server, h.address, h, 1, 30)
    seen = len(server.raw)
    with pytest.raises(TimeoutError):
        await server.request(READ, h.address, timeout=0.3)
    # A request and its retransmission (same MID and token) and a NON request get
    # nothing either; a CoAP ping is still reset (message layer, no request).
    server.send(Message(Code.EMPTY, MessageType.CON, 0x0EFF), h.address)
    ignored = Message(Code.GET, MessageType.CON, 0x0F00, b"again", uri_path=("3", "0", "0"))
    server.send(ignored, h.address)
    server.send(ignored, h.address)
    server.send(ignored.with_(type=MessageType.NON, mid=0x0F01), h.address)
    await until(lambda: codec.decode(server.raw[-1][0]).type == MessageType.RST)  # ping answered
    assert h.client.sessions[1].state is RegistrationState.DISABLED
    h.scheduler.advance(30)  # Disable Timeout over: register again, answer again
    await server.accept_registration("back")
    # Between the Disable and the new Register the client sent exactly one thing:
    # the RST to our empty CON ping (CoAP itself, not the server account).
    later = [codec.decode(data) for data, _ in server.raw[seen:]]
    register_at = next(i for i, m in enumerate(later) if m.code == Code.POST)
    assert [(m.type, m.code) for m in later[:register_at]] == [(MessageType.RST, Code.EMPTY)]
    r = await server.request(READ, h.address)
    assert r.code == Code.CONTENT and r.payload
    # The retransmitted request is remembered as a duplicate: still no answer.
    before = len(server.raw)
    server.send(ignored, h.address)
    r = await server.request(READ, h.address)
    assert r.code == Code.CONTENT
    assert len(server.raw) == before + 1


async def test_other_servers_are_still_answered(make_client: MakeClient, server: RawServer) -> None:
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
        # with two servers, access needs ACL instances: server 1 owns its account
        # and /3/0, which server 2 may read
        h.client.store.create_instance(2, 0, {0: 1, 1: 0, 2: {}, 3: 1})
        h.client.store.create_instance(2, 1, {0: 3, 1: 0, 2: {2: 1}, 3: 1})
        await disable(server, a1, h, 1, 60)
        read = asyncio.create_task(server.request(READ, a1, timeout=0.3))
        r = await other.request(READ, a2)
        assert r.code == Code.CONTENT
        with pytest.raises(TimeoutError):
            await read
        assert h.client.sessions[2].state is RegistrationState.REGISTERED
        h.scheduler.advance(60)
        await server.accept_registration("s1-back")
        assert (await server.request(READ, a1)).code == Code.CONTENT
    finally:
        other.close()
