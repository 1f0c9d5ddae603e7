"""Register / Update / De-register on the wire, against a raw CoAP socket."""

from __future__ import annotations

from client_harness import MakeClient, make_bootstrapping_client, until
from client_rawserver import RawServer

from lwm2m.client.config import FactoryAccount
from lwm2m.client.registration import RegistrationState, update_delay
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat


async def test_register_query_and_payload(make_client: MakeClient) -> None:
    h = await make_client("dev-1", lifetime_s=60)
    msg = h.register
    assert isinstance(msg, Message)
    assert msg.code == Code.POST and msg.type == MessageType.CON
    assert msg.uri_path == ("rd",)
    assert msg.uri_query == ("ep=dev-1", "lt=60", "lwm2m=1.1", "b=U")
    assert msg.content_format == ContentFormat.LINK_FORMAT
    links = msg.payload.decode().split(",")
    assert links[0] == '</>;rt="oma.lwm2m"'
    assert "</1>;ver=1.1" in links and "</1/0>" in links
    assert "</3>;ver=1.1" in links and "</3/0>" in links
    assert "</5/0>" in links and "</2>" in links
    assert not any(link.startswith("</0") for link in links)  # Security never announced
    assert h.client.sessions[1].location == ("rd", "abc")


async def test_register_with_ept_and_queue_mode(make_client: MakeClient) -> None:
    h = await make_client("IMEI:490154203237518", endpoint_type=2, queue_mode=True)
    msg = h.register
    assert isinstance(msg, Message)
    assert msg.uri_query == ("ept=2", "ep=IMEI:490154203237518", "lt=60", "lwm2m=1.1", "b=U", "Q")


async def test_update_before_lifetime_expires(make_client: MakeClient) -> None:
    h = await make_client(lifetime_s=60)
    assert update_delay(60) == 30.0  # shorter than two exchanges (2 x 93 s): half the lifetime
    session = h.client.sessions[1]
    assert session.next_update_at is not None and session.expires_at is not None
    due = session.next_update_at - h.scheduler.now()
    assert 27.0 <= due <= 30.0  # drawn up to 10 % early
    h.scheduler.advance(due - 0.1)
    assert h.server.requests.empty()
    h.scheduler.advance(0.2)
    msg, addr = await h.server.next_request()
    assert msg.code == Code.POST and msg.uri_path == ("rd", "abc")
    assert msg.uri_query == () and msg.payload == b""  # nothing changed
    h.server.reply(msg, addr, Code.CHANGED)
    await until(lambda: h.client.sessions[1].updates == 1)
    h.scheduler.advance(30.1)  # and again one period later
    msg, addr = await h.server.next_request()
    assert msg.uri_path == ("rd", "abc")
    h.server.reply(msg, addr, Code.CHANGED)


async def test_update_carries_new_lifetime_and_objects(make_client: MakeClient) -> None:
    h = await make_client()
    response = await h.server.request(
        Message(Code.PUT, uri_path=("1", "0", "1"), payload=b"120"), h.address
    )
    assert response.code == Code.CHANGED
    msg, addr = await h.server.next_request()
    assert msg.uri_query == ("lt=120",) and msg.payload == b""
    h.server.reply(msg, addr, Code.CHANGED)
    await until(lambda: h.client.sessions[1].updates == 1)
    h.client.store.create_instance(3303, 0, {5700: 21.5})
    msg, addr = await h.server.next_request()
    assert msg.uri_query == ()
    assert b"</3303/0>" in msg.payload and msg.content_format == ContentFormat.LINK_FORMAT
    h.server.reply(msg, addr, Code.CHANGED)


async def test_update_404_registers_again(make_client: MakeClient) -> None:
    h = await make_client()
    h.client.trigger_update()
    msg, addr = await h.server.next_request()
    h.server.reply(msg, addr, Code.NOT_FOUND)
    msg, addr = await h.server.next_request()
    assert msg.uri_path == ("rd",)
    h.server.reply(msg, addr, Code.CREATED, location_path=("rd", "new"))
    await until(lambda: h.client.sessions[1].location == ("rd", "new"))


async def test_deregister_on_stop(make_client: MakeClient, server: RawServer) -> None:
    h = await make_client()
    import asyncio

    stopping = asyncio.ensure_future(h.client.stop())
    msg, addr = await server.next_request()
    assert msg.code == Code.DELETE and msg.uri_path == ("rd", "abc")
    server.reply(msg, addr, Code.DELETED)
    await stopping
    assert h.client.sessions[1].state is RegistrationState.DEREGISTERED


async def test_register_retries_with_backoff(make_client: MakeClient, server: RawServer) -> None:
    h = await make_client(register=False)
    msg, addr = await server.next_request()
    server.reply(msg, addr, Code.BAD_REQUEST)
    await until(lambda: h.client.sessions[1].state is RegistrationState.FAILED)
    assert h.client.sessions[1].failures == 1
    h.scheduler.advance(1.5)  # 2 s +/- 20 %: not yet
    assert server.requests.empty()
    h.scheduler.advance(1.0)
    msg, addr = await server.next_request()
    server.reply(msg, addr, Code.BAD_REQUEST)
    await until(lambda: h.client.sessions[1].failures == 2)
    h.scheduler.advance(3.1)  # 4 s - 20 %: not yet
    assert server.requests.empty()
    h.scheduler.advance(2.0)
    msg, addr = await server.next_request()
    server.reply(msg, addr, Code.CREATED, location_path=("rd", "x"))
    await until(lambda: h.client.sessions[1].registered)


async def test_falls_back_to_bootstrap_after_failures(
    make_client: MakeClient, server: RawServer
) -> None:
    bs = await RawServer().start()
    try:
        h, called = await make_bootstrapping_client(
            make_client, server, bs, bootstrap_after_failures=2
        )
        for _ in range(2):
            msg, addr = await server.next_request()
            server.reply(msg, addr, Code.FORBIDDEN)
            await until(lambda: h.client.sessions[1].state is RegistrationState.FAILED)
            h.scheduler.advance(10)
        await until(lambda: bool(called))
    finally:
        bs.close()


async def test_two_servers_both_registered(make_client: MakeClient, server: RawServer) -> None:
    other = await RawServer().start()
    try:
        h = await make_client(
            register=False,
            servers=(
                FactoryAccount(server.uri, 1, lifetime_s=60),
                FactoryAccount(other.uri, 2, lifetime_s=90),
            ),
        )
        m1, _ = await server.accept_registration("one")
        m2, _ = await other.accept_registration("two")
        assert "lt=60" in m1.uri_query and "lt=90" in m2.uri_query
        await until(lambda: all(s.registered for s in h.client.sessions.values()))
    finally:
        other.close()


async def test_no_lifetime_resource_no_lt_parameter(
    make_client: MakeClient, server: RawServer
) -> None:
    h = await make_client()
    await h.client.stop(deregister=False)
    server_instance = h.client.instance(1, 0)
    assert server_instance is not None
    server_instance.unset(1)
    await h.client.start()
    msg, _ = await server.accept_registration()
    assert not any(q.startswith("lt=") for q in msg.uri_query)
    assert h.client.sessions[1].lifetime_s == 86400  # the default it then assumes
