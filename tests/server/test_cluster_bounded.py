"""A cluster node does not hold the fleet (issue 12): its own registrations and a bounded
cache in memory, the rest read from Redis; take-over, change-feed reconnect, PSK identities.

Real redis-server (tests/conftest.py), nodes in this process.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from redis_helpers import RedisServer
from server_helpers import RawPeer, register_message

from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message
from lwm2m.coap.peer import PeerIdentity
from lwm2m.formats.media import ContentFormat
from lwm2m.security.credentials import PskCredential, SecurityEntry
from lwm2m.server import LwM2MServer, NotificationEvent, ServerConfig
from lwm2m.stores.base import SecurityConflict, StoreError
from lwm2m.stores.memory import MemoryRegistrationStore
from lwm2m.stores.query import RegistrationQuery, SortKey
from lwm2m.stores.records import Registration
from lwm2m.stores.redis import RedisStores

TEXT = int(ContentFormat.TEXT)


def _reg(i: int, *, rng: random.Random | None = None, now: float = 1_700_000_000.0) -> Registration:
    rng = rng or random.Random(i)
    secure = rng.random() < 0.3
    return Registration(
        id=f"id{i:05d}",
        endpoint=f"{rng.choice(['meter', 'Tracker', 'gw'])}-{i:05d}",
        address=(f"10.0.{rng.randrange(4)}.{i % 250 + 1}", 5683 + i),
        lifetime_s=rng.choice([60, 300, 86400]),
        registered_at=now - rng.randrange(0, 7200),
        updated_at=now - rng.randrange(0, 60),
        lwm2m_version=rng.choice(["1.0", "1.1", "1.2"]),
        binding=rng.choice(["U", "UQ", "T"]),
        queue_mode=rng.random() < 0.4,
        identity=PeerIdentity(psk_identity=f"psk-{i}".encode()) if secure else None,
    )


@asynccontextmanager
async def _stores(url: str, node_id: str, **kwargs: Any) -> AsyncIterator[RedisStores]:
    stores = await RedisStores.open(url, node_id=node_id, **kwargs)
    try:
        yield stores
    finally:
        await stores.close()


@asynccontextmanager
async def _node(url: str, node_id: str) -> AsyncIterator[LwM2MServer]:
    stores = await RedisStores.open(url, node_id=node_id)
    server = LwM2MServer(stores, config=ServerConfig(coap_port=0, request_timeout_s=5.0))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        await stores.close()


async def test_a_node_holds_its_own_registrations_and_a_bounded_cache(redis_url: str) -> None:
    async with _stores(redis_url, "a") as a:
        for i in range(50):
            await a.registrations.add(_reg(i))
    async with _stores(redis_url, "b") as b:
        for i in range(50, 60):
            await b.registrations.add(_reg(i))
    # Restarted, b reads back its ten, not the sixty.
    async with _stores(redis_url, "b", cache_size=5) as b:
        assert len(b.registrations) == 10 and b.registrations.owned_count == 10
        assert b.registrations.get("id00001") is None  # a's: not loaded at start
        for i in range(20):
            fetched = await b.registrations.fetch(f"id{i:05d}")
            assert fetched == _reg(i)
        assert b.registrations.cached_count == 5
        assert len(b.registrations) == 15
        # The most recently fetched stay.
        assert b.registrations.get("id00019") == _reg(19)
        assert b.registrations.get("id00000") is None
        assert await b.registrations.fetch_count() == 60


async def test_a_registration_of_node_a_is_fetched_by_node_b(redis_url: str) -> None:
    async with _stores(redis_url, "a") as a, _stores(redis_url, "b") as b:
        reg = _reg(7)
        await a.registrations.add(reg)
        await b.sync()
        assert b.registrations.get(reg.id) is None  # the change feed loads nothing
        assert await b.registrations.fetch(reg.id) == reg
        b.registrations.clear_view()
        assert await b.registrations.fetch_by_endpoint(reg.endpoint) == reg
        b.registrations.clear_view()
        assert await b.registrations.fetch_by_address(reg.address) == reg
        # Cached on b, then changed on a: the change message evicts b's stale copy (no
        # round trip to Redis on b), and b's next fetch reads the new one.
        updated = replace(reg, lifetime_s=999)
        await a.registrations.update(updated)
        await b.sync()
        assert b.registrations.get(reg.id) is None
        assert await b.registrations.fetch(reg.id) == updated
        assert await b.registrations.owner(reg.id) == "a"
        await a.registrations.remove(reg.id)
        await b.sync()
        assert b.registrations.get(reg.id) is None
        assert await b.registrations.fetch(reg.id) is None
        assert await b.registrations.fetch_by_address(reg.address) is None


async def test_pages_searches_and_counts_agree_with_the_memory_store(redis_url: str) -> None:
    rng = random.Random(12)
    now = 1_700_000_000.0
    regs = [_reg(i, rng=rng, now=now) for i in range(300)]
    memory = MemoryRegistrationStore()
    async with _stores(redis_url, "a") as a, _stores(redis_url, "b", cache_size=10) as b:
        for i, reg in enumerate(regs):
            await memory.add(reg)
            await (a if i % 2 else b).registrations.add(reg)
        # Some gone, some updated, so the counters went down as well as up.
        for reg in regs[::7]:
            await memory.remove(reg.id)
            await a.registrations.remove(reg.id)
        for reg in regs[1::5]:
            if memory.get(reg.id) is None:
                continue
            changed = replace(reg, binding="UQ", queue_mode=True, updated_at=now)
            await memory.update(changed)
            await b.registrations.update(changed)
        queries = [RegistrationQuery(limit=25, offset=o) for o in (0, 25, 250, 400)]
        queries += [RegistrationQuery(limit=10, descending=True, offset=5), RegistrationQuery()]
        queries += [
            RegistrationQuery(text=t, limit=20) for t in ("TRACK", "meter-000", "10.0.3", "zz")
        ]
        queries += [
            RegistrationQuery(binding="UQ", limit=30),
            RegistrationQuery(lwm2m_version="1.1", queue_mode=False, limit=30, offset=3),
            RegistrationQuery(secure=True, sort=SortKey.REGISTERED, descending=True, limit=15),
            RegistrationQuery(registered_after=now - 3600, sort=SortKey.LIFETIME, limit=40),
            RegistrationQuery(updated_before=now - 30, sort=SortKey.ADDRESS, limit=12),
        ]
        for query in queries:
            for node in (a, b):
                assert await node.registrations.fetch_query(query) == memory.query(query), query
        assert await b.registrations.fetch_stats(now) == memory.stats(now)
        # Beyond the scan limit a filter is served by a bounded scan, and says so.
        b.registrations.scan_limit = 50
        page = await b.registrations.fetch_query(RegistrationQuery(binding="UQ"))
        assert not page.complete and page.total <= 50
        assert all(r.binding == "UQ" for r in page.items)
        search = await b.registrations.fetch_query(RegistrationQuery(text="tracker"))
        assert all("tracker" in r.endpoint.lower() for r in search.items)
        # The default page needs no scan: it stays exact.
        first = RegistrationQuery(limit=20)
        assert await b.registrations.fetch_query(first) == memory.query(first)
        assert b.registrations.cached_count <= 10


class _Device:
    """A NoSec device speaking exact datagrams, to see what each node answers."""

    def __init__(self, peer: RawPeer) -> None:
        self.peer = peer
        self.mid = 0x4000

    async def notify(self, server: LwM2MServer, token: bytes, seq: int) -> Message:
        """A CON notification; the node's empty ACK or RST."""
        self.mid += 1
        self.peer.send(
            Message(
                Code.CONTENT,
                MessageType.CON,
                self.mid,
                token,
                b"7",
                observe=seq,
                content_format=TEXT,
            ),
            server.coap_address,
        )
        while True:
            reply = await asyncio.wait_for(self.peer.inbox.get(), 5)
            if reply.mid == self.mid and reply.type in (MessageType.ACK, MessageType.RST):
                return reply


async def _next_notification(events: Any) -> NotificationEvent:
    while True:
        event = await asyncio.wait_for(events.get(), 5)
        if isinstance(event, NotificationEvent):
            return event


async def test_take_over_when_the_owner_is_gone_and_its_observation_goes_on(
    redis_url: str,
) -> None:
    first = await RawPeer.create()
    moved = await RawPeer.create()  # the same device through a new load-balancer session
    try:
        async with _node(redis_url, "a") as a, _node(redis_url, "b") as b:
            redis = b.stores.registrations._r  # type: ignore[attr-defined]
            liveness = redis.key("node:a")
            await redis.run(("SET", liveness, '{"id": "a"}'))
            reply = await first.request(
                register_message(("ep=meter", "lt=3600"), b"</3/0>"), a.coap_address
            )
            assert reply.code == Code.CREATED
            observing = asyncio.create_task(a.observe("meter", "/3/0/9"))
            request = await first.receive_request()
            first.respond(
                request,
                Message(Code.CONTENT, payload=b"5", content_format=TEXT, observe=1),
                a.coap_address,
            )
            record = (await observing).observation
            device = _Device(moved)
            # a is alive: b does not take its device, and refuses the token.
            assert (await device.notify(b, request.token, 2)).type == MessageType.ACK
            await b.wait_background()
            assert (await device.notify(b, request.token, 3)).type == MessageType.RST
            assert await b.stores.registrations.owner(reply.location_path[1]) == "a"
            # a is gone: b takes the registration over and the notification flows.
            await redis.run(("DEL", liveness))
            b._unknown_tokens.clear()
            with b.events.subscribe("meter") as events:
                assert (await device.notify(b, request.token, 4)).type == MessageType.ACK
                await b.wait_background()
                assert (await device.notify(b, request.token, 5)).type == MessageType.ACK
                event = await _next_notification(events)
                assert event.observation == record
                assert event.content.value == 7  # type: ignore[union-attr]
            rid = reply.location_path[1]
            assert await b.stores.registrations.owner(rid) == "b"
            taken = await b.fetch_registration("meter")
            assert taken is not None and taken.id == rid and taken.address == moved.address
            assert [r.id for r in b.stores.observations.for_registration(rid)] == [record.id]
    finally:
        first.close()
        moved.close()


async def test_an_update_takes_a_registration_over_with_its_observations(redis_url: str) -> None:
    async with _stores(redis_url, "a") as a, _stores(redis_url, "b") as b:
        from lwm2m.model.path import Path
        from lwm2m.stores.records import ObservationRecord

        reg = _reg(3)
        await a.registrations.add(reg)
        obs = ObservationRecord("abcd", reg.id, reg.endpoint, (Path.parse("/3/0/9"),))
        await a.observations.add(obs)
        assert b.observations.get("abcd") is None
        moved = replace(reg, address=("10.9.9.9", 40000), updated_at=reg.updated_at + 1)
        await b.registrations.update(moved)
        assert b.registrations.owned_count == 1
        assert b.observations.for_registration(reg.id) == [obs]
        assert await a.registrations.fetch_by_address(("10.9.9.9", 40000)) == moved
        assert await a.registrations.fetch_by_address(reg.address) is None


async def test_the_change_feed_comes_back_after_a_redis_restart(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m.stores")
    async with _stores(redis_server.url, "a") as a, _stores(redis_server.url, "b") as b:
        reg = _reg(1)
        await a.registrations.add(reg)
        assert await b.registrations.fetch(reg.id) == reg  # now cached on b
        redis_server.restart()
        # b drops what it cached and subscribes again; sync() answers once it is back.
        deadline = time.monotonic() + 20
        while True:
            try:
                await b.sync(timeout=1.0)
                break
            except StoreError:
                assert time.monotonic() < deadline, "the change feed did not come back"
        assert b.registrations.get(reg.id) is None
        assert await b.registrations.fetch(reg.id) == reg  # the AOF kept it
        changed = replace(reg, lifetime_s=1234)
        for _ in range(20):  # a's own connection may need a retry after the restart
            try:
                await a.registrations.update(changed)
                break
            except StoreError:
                await a.sync(timeout=1.0)
        await b.sync()
        assert b.registrations.get(reg.id) is None  # evicted by the change message
        assert await b.registrations.fetch(reg.id) == changed
    lost = [r for r in caplog.records if "change feed lost" in r.getMessage()]
    back = [r for r in caplog.records if "change feed back" in r.getMessage()]
    # Once per node at ERROR when it drops, once at INFO when it is back.
    assert 1 <= len(lost) <= 2 and all(r.levelno == logging.ERROR for r in lost)
    assert 1 <= len(back) <= 2 and all(r.levelno == logging.INFO for r in back)


async def test_one_psk_identity_for_two_endpoints_on_two_nodes_is_one_conflict(
    redis_url: str,
) -> None:
    async with _stores(redis_url, "a") as a, _stores(redis_url, "b") as b:
        for round_ in range(5):
            psk = PskCredential(f"shared-{round_}".encode(), b"secret")
            results = await asyncio.gather(
                a.security.put(SecurityEntry(f"one-{round_}", psk=psk)),
                b.security.put(SecurityEntry(f"two-{round_}", psk=psk)),
                return_exceptions=True,
            )
            conflicts = [r for r in results if isinstance(r, SecurityConflict)]
            assert len(conflicts) == 1, results
            await a.sync()
            await b.sync()
            holders = {
                a.security.get_by_psk_identity(psk.identity),
                b.security.get_by_psk_identity(psk.identity),
            }
            assert len(holders) == 1 and None not in holders
        # Removed, the identity is free for another endpoint on the other node.
        holder = a.security.get_by_psk_identity(b"shared-0")
        assert holder is not None
        await (a if holder.endpoint.startswith("one") else b).security.remove(holder.endpoint)
        await b.security.put(SecurityEntry("three", psk=PskCredential(b"shared-0", b"k")))


async def test_a_prefix_written_before_the_indexes_is_indexed_at_start(redis_url: str) -> None:
    from lwm2m.model.path import Path
    from lwm2m.stores.codec import observation_text, registration_text
    from lwm2m.stores.records import ObservationRecord

    regs = [_reg(i) for i in range(30)]
    obs = ObservationRecord("beef", regs[0].id, regs[0].endpoint, (Path.parse("/3/0/9"),))
    async with _stores(redis_url, "old") as old:  # the keys an older version wrote, no more
        await old.redis.client.flushdb()
        await old.redis.run(
            *(("HSET", "lwm2m:registrations", r.id, registration_text(r)) for r in regs),
            ("HSET", "lwm2m:observations", obs.id, observation_text(obs)),
        )
    async with _stores(redis_url, "new") as new:
        memory = MemoryRegistrationStore()
        for reg in regs:
            await memory.add(reg)
        query = RegistrationQuery(limit=10, offset=5)
        assert await new.registrations.fetch_query(query) == memory.query(query)
        assert await new.registrations.fetch_stats(0.0) == memory.stats(0.0)
        assert await new.registrations.fetch_by_endpoint(regs[3].endpoint) == regs[3]
        assert await new.observations.fetch_for_registration(regs[0].id) == [obs]


async def test_more_commands_in_flight_than_connections_wait_for_one(redis_url: str) -> None:
    # 200 Registers at once through a pool of 4 connections (the change feed holds one):
    # each waits for a free connection; none fails with "Too many connections".
    async with _stores(redis_url, "a", max_connections=4) as a:
        regs = [_reg(i) for i in range(200)]
        results = await asyncio.gather(
            *(a.registrations.add(r) for r in regs), return_exceptions=True
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert await a.registrations.fetch_count() == 200


class _Request:
    """What ``LwM2MServer.handle`` reads of an incoming request."""

    def __init__(self, message: Message, address: tuple[str, int], psk_identity: bytes) -> None:
        from lwm2m.coap.peer import Peer

        self.message = message
        self.peer = Peer(address, PeerIdentity(psk_identity=psk_identity))


def _send(value: int) -> Message:
    payload = b'[{"n":"/3/0/9","v":%d}]' % value
    fmt = int(ContentFormat.SENML_JSON)
    return Message(Code.POST, uri_path=("dp",), payload=payload, content_format=fmt)


async def test_a_send_from_a_moved_dtls_client_takes_its_registration_over(
    redis_url: str,
) -> None:
    """A device whose node died re-handshakes with another node and Sends before any
    Update: its PSK identity names it, its registration is taken over, the data kept."""
    from lwm2m.server.events import SendEvent

    async with _node(redis_url, "a") as a, _node(redis_url, "b") as b:
        redis = b.stores.registrations._r  # type: ignore[attr-defined]
        liveness = redis.key("node:a")
        await redis.run(("SET", liveness, '{"id": "a"}'))
        await a.stores.security.put(SecurityEntry("dtls-dev", psk=PskCredential(b"dev-id", b"k")))
        await a.stores.security.put(SecurityEntry("other", psk=PskCredential(b"other-id", b"k")))
        reg = Registration(
            id="mv1",
            endpoint="dtls-dev",
            address=("10.1.1.1", 5001),
            lifetime_s=600,
            registered_at=1.0,
            updated_at=1.0,
            lwm2m_version="1.1",
            identity=PeerIdentity(psk_identity=b"dev-id"),
        )
        await a.stores.registrations.add(reg)
        moved = ("10.2.2.2", 6002)
        # a is alive: b does not take the device (4.04, the client registers again).
        reply = await b.handle(_Request(_send(1), moved, b"dev-id"))
        assert reply.code == Code.NOT_FOUND
        await redis.run(("DEL", liveness))  # a is gone
        # Another device's identity from that address takes nothing.
        reply = await b.handle(_Request(_send(2), moved, b"other-id"))
        assert reply.code == Code.NOT_FOUND
        with b.events.subscribe("dtls-dev") as events:
            reply = await b.handle(_Request(_send(3), moved, b"dev-id"))
            assert reply.code == Code.CHANGED
            event = await asyncio.wait_for(events.get(), 5)
        assert isinstance(event, SendEvent) and event.registration_id == "mv1"
        assert await b.stores.registrations.owner("mv1") == "b"
        taken = await b.fetch_registration("dtls-dev")
        assert taken is not None and taken.id == "mv1" and taken.address == moved
