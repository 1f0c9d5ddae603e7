"""Two server nodes on one Redis key prefix (issue 12, first stage): one fleet, one set of rules.

A real redis-server is started per test on a free loopback port (``redis_url``, in
conftest.py); the nodes are two ``LwM2MServer`` instances in this process, each with its
own Redis connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path as FsPath
from typing import Any

from server_helpers import FakeClock, register_message

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.events import DeregistrationEvent
from lwm2m.stores import open_stores
from lwm2m.stores.query import RegistrationQuery
from lwm2m.stores.redis import RedisStores


async def _answer(request: Any) -> Message:
    return Message(Code.CONTENT, payload=b"from the device", content_format=int(ContentFormat.TEXT))


@asynccontextmanager
async def _node(
    url: str, tmp_path: FsPath, node_id: str, clock: FakeClock | None = None
) -> AsyncIterator[tuple[LwM2MServer, RedisStores]]:
    stores = await open_stores(url, tmp_path / node_id, node_id=node_id)
    assert isinstance(stores, RedisStores)
    server = (
        LwM2MServer(stores, config=ServerConfig(coap_port=0))
        if clock is None
        else LwM2MServer(stores, config=ServerConfig(coap_port=0), clock=clock)
    )
    await server.start()
    try:
        yield server, stores
    finally:
        await server.stop()
        await stores.close()


async def _register(device: Endpoint, server: LwM2MServer, ep: str, lt: int = 3600) -> Message:
    return await device.request(
        register_message((f"ep={ep}", f"lt={lt}")), server.coap_address, timeout=5
    )


async def test_a_registration_on_node_a_is_seen_and_served_by_node_b(
    redis_url: str, tmp_path: FsPath
) -> None:
    device = await Endpoint.create("127.0.0.1", 0, handler=_answer)
    try:
        async with (
            _node(redis_url, tmp_path, "a") as (a, _),
            _node(redis_url, tmp_path, "b") as (b, b_stores),
        ):
            reply = await _register(device, a, "shared-1")
            assert reply.code == Code.CREATED
            await b_stores.sync()
            reg = await b.fetch_registration("shared-1")
            assert reg is not None and reg.address == device.local_address
            page = await b.stores.registrations.fetch_query(RegistrationQuery())
            assert [r.endpoint for r in page.items] == ["shared-1"]
            assert await b_stores.registrations.owner(reg.id) == "a"
            # Node B reaches the device itself (plain UDP: the device answers any peer).
            response = await b.read("shared-1", "/3/0/0", timeout=5)
            assert response.content.value == "from the device"  # type: ignore[union-attr]
            # An Update received by B moves the ownership to B, and A sees the change.
            upd = await device.request(
                Message(Code.POST, uri_path=reply.location_path, uri_query=("lt=7200",)),
                b.coap_address,
                timeout=5,
            )
            assert upd.code == Code.CHANGED
            assert await b_stores.registrations.owner(reg.id) == "b"
            a_stores = a.stores
            assert isinstance(a_stores, RedisStores)
            await a_stores.sync()
            a_reg = await a.fetch_registration("shared-1")
            assert a_reg is not None and a_reg.lifetime_s == 7200
    finally:
        await device.close()


async def test_concurrent_registers_of_one_name_on_two_nodes(
    redis_url: str, tmp_path: FsPath
) -> None:
    # Two clients: NoSec "same client" means the same IP, so the second is on 127.0.0.2.
    first = await Endpoint.create("127.0.0.1", 0, handler=_answer)
    second = await Endpoint.create("127.0.0.2", 0, handler=_answer)
    try:
        async with (
            _node(redis_url, tmp_path, "a") as (a, a_stores),
            _node(redis_url, tmp_path, "b") as (b, b_stores),
        ):
            for round_ in range(5):
                ep = f"contested-{round_}"
                replies = await asyncio.gather(_register(first, a, ep), _register(second, b, ep))
                codes = sorted(r.code.dotted for r in replies)
                assert codes == ["2.01", "4.09"], codes
                await a_stores.sync()
                await b_stores.sync()
                winner = first if replies[0].code == Code.CREATED else second
                for node in (a, b):
                    reg = await node.fetch_registration(ep)
                    assert reg is not None and reg.address == winner.local_address
            # A re-Register by the holder replaces, through the other node.
            held = await a.fetch_registration("contested-0")
            assert held is not None
            holder = first if held.address == first.local_address else second
            other_node = b if holder is first else a
            again = await _register(holder, other_node, "contested-0")
            assert again.code == Code.CREATED
            await a_stores.sync()
            await b_stores.sync()
            for node in (a, b):
                reg = await node.fetch_registration("contested-0")
                assert reg is not None and reg.id != held.id
                assert await node.stores.registrations.fetch(held.id) is None
    finally:
        await first.close()
        await second.close()


async def test_an_expiry_seen_by_two_nodes_is_one_deregistration(
    redis_url: str, tmp_path: FsPath
) -> None:
    clock = FakeClock(time.time())
    device = await Endpoint.create("127.0.0.1", 0, handler=_answer)
    try:
        async with (
            _node(redis_url, tmp_path, "a", clock) as (a, a_stores),
            _node(redis_url, tmp_path, "b", clock) as (b, b_stores),
        ):
            events: list[DeregistrationEvent] = []

            def count(event: Any) -> None:
                if isinstance(event, DeregistrationEvent):
                    events.append(event)

            a.events.add_listener(count)
            b.events.add_listener(count)
            for i in range(10):
                assert (await _register(device, a, f"short-{i}", lt=60)).code == Code.CREATED
            await b_stores.sync()
            assert await b.stores.registrations.fetch_count() == 10
            clock.advance(60 + a.config.lifetime_grace_s + 1)
            removed_a, removed_b = await asyncio.gather(a.check_expiry(), b.check_expiry())
            assert len(removed_a) + len(removed_b) == 10
            assert sorted(e.endpoint for e in events) == sorted(f"short-{i}" for i in range(10))
            assert all(e.expired for e in events)
            await a_stores.sync()
            await b_stores.sync()
            assert len(a.stores.registrations) == 0 and len(b.stores.registrations) == 0
            assert await a.stores.registrations.fetch_count() == 0
    finally:
        await device.close()


async def test_an_update_on_one_node_wins_over_a_stale_expiry_on_the_other(
    redis_url: str, tmp_path: FsPath
) -> None:
    clock = FakeClock(time.time())
    async with (
        _node(redis_url, tmp_path, "a", clock) as (a, _),
        _node(redis_url, tmp_path, "b", clock) as (b, b_stores),
    ):
        device = await Endpoint.create("127.0.0.1", 0, handler=_answer)
        try:
            reply = await _register(device, a, "late", lt=60)
            await b_stores.sync()
            clock.advance(60 + a.config.lifetime_grace_s + 1)
            stale = await b.stores.registrations.fetch_expired(clock(), a.config.lifetime_grace_s)
            assert [r.endpoint for r in stale] == ["late"]
            # The device updates through A before B acts on its stale view.
            upd = await device.request(
                Message(Code.POST, uri_path=reply.location_path), a.coap_address, timeout=5
            )
            assert upd.code == Code.CHANGED
            assert await b.stores.registrations.remove(stale[0].id) is None
            await b_stores.sync()
            assert await b.fetch_registration("late") is not None
        finally:
            await device.close()


async def test_a_restart_of_both_nodes_keeps_every_registration(
    redis_url: str, tmp_path: FsPath
) -> None:
    devices = [await Endpoint.create("127.0.0.1", 0, handler=_answer) for _ in range(4)]
    try:
        locations: dict[str, tuple[str, ...]] = {}
        async with (
            _node(redis_url, tmp_path, "a") as (a, _),
            _node(redis_url, tmp_path, "b") as (b, _),
        ):
            for i, device in enumerate(devices):
                reply = await _register(device, a if i % 2 else b, f"kept-{i}")
                assert reply.code == Code.CREATED
                locations[f"kept-{i}"] = reply.location_path
        async with (
            _node(redis_url, tmp_path, "a") as (a, _),
            _node(redis_url, tmp_path, "b") as (b, _),
        ):
            for node in (a, b):
                page = await node.stores.registrations.fetch_query(RegistrationQuery())
                assert [r.endpoint for r in page.items] == sorted(locations)
            # Each node read back its own registrations only.
            assert sorted(r.endpoint for r in a.stores.registrations.list()) == ["kept-1", "kept-3"]
            assert sorted(r.endpoint for r in b.stores.registrations.list()) == ["kept-0", "kept-2"]
            for i, device in enumerate(devices):
                upd = await device.request(
                    Message(Code.POST, uri_path=locations[f"kept-{i}"]),
                    (a if i % 2 == 0 else b).coap_address,
                    timeout=5,
                )
                assert upd.code == Code.CHANGED
    finally:
        for device in devices:
            await device.close()
