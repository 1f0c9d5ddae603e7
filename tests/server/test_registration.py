"""Registration interface over real UDP with exact datagrams: every seed response code."""

from __future__ import annotations

import asyncio

import pytest
from server_helpers import FakeClock, RawPeer, register_message

from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat
from lwm2m.server import (
    DeregistrationEvent,
    LwM2MServer,
    RegistrationEvent,
    UpdatedEvent,
)


async def test_register_answers_created_with_location(server: LwM2MServer, raw: RawPeer) -> None:
    with server.events.subscribe() as events:
        reply = await raw.request(
            register_message(
                ("ep=dev-1", "lt=300", "lwm2m=1.1", "b=U"),
                b'</>;rt="oma.lwm2m";ct="60 110 11542",</1>;ver=1.1,</1/0>,</3/0>,</5>',
                content_format=int(ContentFormat.LINK_FORMAT),
            ),
            server.coap_address,
        )
        assert reply.code == Code.CREATED
        assert reply.location_path[0] == "rd" and len(reply.location_path) == 2
        event = events.get_nowait()
    reg = server.get_registration("dev-1")
    assert reg is not None
    assert reg.id == reply.location_path[1]
    assert reg.address == raw.address
    assert reg.lifetime_s == 300
    assert reg.lwm2m_version == "1.1"
    assert reg.links.content_formats == (60, 110, 11542)
    assert [(o.id, o.version, o.instances) for o in reg.objects] == [
        (1, "1.1", (0,)),
        (3, None, (0,)),
        (5, None, ()),
    ]
    assert isinstance(event, RegistrationEvent) and event.registration == reg


async def test_register_with_alternate_root_path(server: LwM2MServer, raw: RawPeer) -> None:
    reply = await raw.request(
        register_message(("ep=alt",), b'</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>,</lwm2m/3/0>'),
        server.coap_address,
    )
    assert reply.code == Code.CREATED
    reg = server.get_registration("alt")
    assert reg is not None and reg.root_path == "/lwm2m"
    assert [o.id for o in reg.objects] == [1, 3]


async def test_default_lifetime_and_seed_ept(server: LwM2MServer, raw: RawPeer) -> None:
    reply = await raw.request(
        register_message(("ept=2", "ep=IMEI:490154203237518")), server.coap_address
    )
    assert reply.code == Code.CREATED
    reg = server.get_registration("IMEI:490154203237518")
    assert reg is not None and reg.lifetime_s == 86400 and reg.endpoint_type == 2


@pytest.mark.parametrize(
    ("query", "payload", "diagnostic"),
    [
        (("lt=60",), b"</1/0>", "ep"),
        (("ep=",), b"</1/0>", "ep is empty"),
        (("ep=" + "x" * 64,), b"</1/0>", "64 bytes"),
        (("ep=a", "foo=1"), b"</1/0>", "unknown parameter"),
        (("ep=a", "lt=0"), b"</1/0>", "lt="),
        (("ep=a", "lt=-5"), b"</1/0>", "lt="),
        (("ep=a", "lt=abc"), b"</1/0>", "lt="),
        (("ept=1", "ep=not-an-oui"), b"</1/0>", "OUI"),
        (("ept=2", "ep=IMEI:123"), b"</1/0>", "IMEI"),
        (("ept=7", "ep=a"), b"</1/0>", "reserved"),
        (("ep=a",), b"1/0, nonsense", "link-format"),
        (("ep=a",), b"", "payload"),
    ],
)
async def test_register_bad_request(
    server: LwM2MServer, raw: RawPeer, query: tuple[str, ...], payload: bytes, diagnostic: str
) -> None:
    reply = await raw.request(register_message(query, payload), server.coap_address)
    assert reply.code == Code.BAD_REQUEST
    assert diagnostic in reply.payload.decode()
    assert server.registrations() == []


async def test_vendor_ept_and_oui_accepted(server: LwM2MServer, raw: RawPeer) -> None:
    for query in (("ept=200", "ep=whatever"), ("ept=1", "ep=00A0C9-Router-12345")):
        reply = await raw.request(register_message(query), server.coap_address)
        assert reply.code == Code.CREATED


async def test_conflict_when_another_address_holds_the_name(
    server: LwM2MServer, raw: RawPeer
) -> None:
    assert (
        await raw.request(register_message(("ep=dup",)), server.coap_address)
    ).code == Code.CREATED
    other = await RawPeer.create("127.0.0.2")
    try:
        reply = await other.request(register_message(("ep=dup",)), server.coap_address)
    finally:
        other.close()
    assert reply.code == Code.CONFLICT
    reg = server.get_registration("dup")
    assert reg is not None and reg.address == raw.address


async def test_conflict_ends_when_old_registration_expired(
    server: LwM2MServer, raw: RawPeer, clock: FakeClock
) -> None:
    assert (
        await raw.request(register_message(("ep=dup", "lt=30")), server.coap_address)
    ).code == Code.CREATED
    clock.advance(30 + server.config.lifetime_grace_s + 1)
    other = await RawPeer.create("127.0.0.2")
    try:
        reply = await other.request(register_message(("ep=dup",)), server.coap_address)
    finally:
        other.close()
    assert reply.code == Code.CREATED


async def test_reregister_replaces_old_registration(server: LwM2MServer, raw: RawPeer) -> None:
    first = await raw.request(register_message(("ep=re",)), server.coap_address)
    with server.events.subscribe("re") as events:
        second = await raw.request(register_message(("ep=re",)), server.coap_address)
        assert second.code == Code.CREATED
        assert second.location_path != first.location_path
        gone = events.get_nowait()
        new = events.get_nowait()
    assert isinstance(gone, DeregistrationEvent) and gone.replaced
    assert isinstance(new, RegistrationEvent) and new.replaced is not None
    old_update = await raw.request(
        Message(Code.POST, uri_path=first.location_path), server.coap_address
    )
    assert old_update.code == Code.NOT_FOUND
    assert len(server.registrations()) == 1


@pytest.mark.parametrize("method", [Code.POST, Code.PUT])
async def test_update(server: LwM2MServer, raw: RawPeer, clock: FakeClock, method: Code) -> None:
    reply = await raw.request(register_message(("ep=up", "lt=60")), server.coap_address)
    before = server.get_registration("up")
    clock.advance(10)
    with server.events.subscribe() as events:
        upd = await raw.request(
            Message(
                method,
                uri_path=reply.location_path,
                uri_query=("lt=120", "b=UQ"),
                payload=b"</1/0>,</3/0>,</6/0>",
            ),
            server.coap_address,
        )
        assert upd.code == Code.CHANGED
        event = events.get_nowait()
    after = server.get_registration("up")
    assert before is not None and after is not None
    assert after.lifetime_s == 120 and after.queue_mode and after.binding == "UQ"
    assert [o.id for o in after.objects] == [1, 3, 6]
    assert after.updated_at == before.updated_at + 10
    assert isinstance(event, UpdatedEvent) and event.previous == before


async def test_update_rejects_bad_parameters_and_other_name(
    server: LwM2MServer, raw: RawPeer
) -> None:
    reply = await raw.request(register_message(("ep=up",)), server.coap_address)
    for query in (("lt=0",), ("bogus=1",), ("ep=someone-else",)):
        upd = await raw.request(
            Message(Code.PUT, uri_path=reply.location_path, uri_query=query), server.coap_address
        )
        assert upd.code == Code.BAD_REQUEST, query
    upd = await raw.request(
        Message(Code.PUT, uri_path=reply.location_path, uri_query=("ep=up",)), server.coap_address
    )
    assert upd.code == Code.CHANGED


async def test_update_unknown_id(server: LwM2MServer, raw: RawPeer) -> None:
    for method in (Code.POST, Code.PUT):
        reply = await raw.request(Message(method, uri_path=("rd", "nope")), server.coap_address)
        assert reply.code == Code.NOT_FOUND


async def test_update_records_new_address(server: LwM2MServer, raw: RawPeer) -> None:
    reply = await raw.request(register_message(("ep=nat",)), server.coap_address)
    moved = await RawPeer.create()
    try:
        upd = await moved.request(
            Message(Code.POST, uri_path=reply.location_path), server.coap_address
        )
        assert upd.code == Code.CHANGED
        reg = server.get_registration("nat")
        assert reg is not None and reg.address == moved.address
    finally:
        moved.close()


async def test_deregister(server: LwM2MServer, raw: RawPeer) -> None:
    reply = await raw.request(register_message(("ep=bye",)), server.coap_address)
    with server.events.subscribe() as events:
        gone = await raw.request(
            Message(Code.DELETE, uri_path=reply.location_path), server.coap_address
        )
        assert gone.code == Code.DELETED
        event = events.get_nowait()
    assert isinstance(event, DeregistrationEvent) and not event.expired
    assert server.get_registration("bye") is None
    again = await raw.request(
        Message(Code.DELETE, uri_path=reply.location_path), server.coap_address
    )
    assert again.code == Code.NOT_FOUND


async def test_lifetime_expiry(server: LwM2MServer, raw: RawPeer, clock: FakeClock) -> None:
    await raw.request(register_message(("ep=short", "lt=20")), server.coap_address)
    await raw.request(register_message(("ep=long", "lt=1000")), server.coap_address)
    clock.advance(20 + server.config.lifetime_grace_s - 1)
    assert await server.check_expiry() == []
    with server.events.subscribe() as events:
        clock.advance(2)
        removed = await server.check_expiry()
        event = events.get_nowait()
    assert [r.endpoint for r in removed] == ["short"]
    assert isinstance(event, DeregistrationEvent) and event.expired
    assert server.get_registration("short") is None
    assert server.get_registration("long") is not None


async def test_update_extends_lifetime(server: LwM2MServer, raw: RawPeer, clock: FakeClock) -> None:
    reply = await raw.request(register_message(("ep=keep", "lt=20")), server.coap_address)
    clock.advance(19)
    await raw.request(Message(Code.POST, uri_path=reply.location_path), server.coap_address)
    clock.advance(20)
    assert await server.check_expiry() == []
    assert server.get_registration("keep") is not None


async def test_wrong_method_and_unknown_paths(server: LwM2MServer, raw: RawPeer) -> None:
    reply = await raw.request(Message(Code.GET, uri_path=("rd",)), server.coap_address)
    assert reply.code == Code.METHOD_NOT_ALLOWED
    reply = await raw.request(Message(Code.GET, uri_path=("nothing",)), server.coap_address)
    assert reply.code == Code.NOT_FOUND


async def test_expiry_sweep_runs_by_itself(clock: FakeClock, raw: RawPeer) -> None:
    from lwm2m.server import ServerConfig
    from lwm2m.stores.memory import MemoryStores

    srv = LwM2MServer(
        MemoryStores(), config=ServerConfig(coap_port=0, expiry_interval_s=0.01), clock=clock
    )
    await srv.start()
    try:
        await raw.request(register_message(("ep=sweep", "lt=10")), srv.coap_address)
        with srv.events.subscribe("sweep") as events:
            clock.advance(10 + srv.config.lifetime_grace_s + 1)
            event = await asyncio.wait_for(events.get(), 5)
        assert isinstance(event, DeregistrationEvent) and event.expired
        assert srv.get_registration("sweep") is None
    finally:
        await srv.stop()
