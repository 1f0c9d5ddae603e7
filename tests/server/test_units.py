"""Pure parts: the event bus, registration records, garbage never crashes the registrar."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer, PeerIdentity
from lwm2m.server import registrar as registrar_module
from lwm2m.server.events import EventBus, SleepingEvent
from lwm2m.server.registrar import Registrar
from lwm2m.stores.base import StoreError
from lwm2m.stores.memory import MemoryRegistrationStore, MemoryStores
from lwm2m.stores.records import Registration


async def test_event_bus_filters_and_bounds() -> None:
    bus = EventBus(buffer_size=2)
    everything = bus.subscribe()
    only_a = bus.subscribe("a")
    for n in range(3):
        bus.publish(SleepingEvent("a", float(n), "rid"))
    bus.publish(SleepingEvent("b", 9.0, "rid"))
    assert [e.time for e in [everything.get_nowait(), everything.get_nowait()]] == [2.0, 9.0]
    assert everything.dropped == 2
    assert [e.time for e in [only_a.get_nowait(), only_a.get_nowait()]] == [1.0, 2.0]
    assert only_a.get_nowait() is None
    only_a.close()
    assert bus.subscriber_count == 1
    bus.close()
    assert [e async for e in everything] == []


def test_registration_document_round_trip() -> None:
    from lwm2m.server.object_links import interpret_links

    reg = Registration(
        id="r1",
        endpoint="urn:imei:490154203237518",
        address=("::1", 5683),
        lifetime_s=60,
        registered_at=1.5,
        updated_at=2.5,
        endpoint_type=2,
        lwm2m_version="1.1",
        binding="UQ",
        queue_mode=True,
        sms_number="+331234",
        links=interpret_links('</a>;rt="oma.lwm2m";ct=110,</a/1/0>,</a/3>;ver=1.1'),
        identity=PeerIdentity(psk_identity=b"\x00id", certificate_der=b"\x30\x00"),
    )
    assert Registration.from_dict(reg.to_dict()) == reg


class _Failing(MemoryRegistrationStore):
    async def _persist_add(self, reg: Registration, replaced: Registration | None) -> None:
        raise StoreError("disk full")


async def test_store_failure_is_not_acknowledged() -> None:
    stores = MemoryStores()
    registrar = Registrar(_Failing(), stores.security, EventBus())
    reply = await registrar.handle(
        Message(Code.POST, uri_path=("rd",), uri_query=("ep=x",), payload=b"</1/0>"),
        Peer(("127.0.0.1", 1)),
    )
    assert reply.code == Code.INTERNAL_SERVER_ERROR
    assert registrar.registrations.get_by_endpoint("x") is None


@settings(max_examples=300, deadline=None)
@given(
    query=st.lists(st.text(max_size=70), max_size=6),
    payload=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    method=st.sampled_from([Code.POST, Code.PUT, Code.DELETE, Code.GET]),
    path=st.lists(st.text(max_size=12), min_size=1, max_size=3).map(lambda p: ["rd", *p[1:]]),
)
def test_garbage_gets_an_answer(
    query: list[str], payload: bytes, method: Code, path: list[str]
) -> None:
    import asyncio

    async def run() -> Any:
        registrar = Registrar(MemoryRegistrationStore(), None, EventBus())
        return await registrar.handle(
            Message(method, uri_path=tuple(path), uri_query=tuple(query), payload=payload),
            Peer(("127.0.0.1", 1)),
        )

    reply = asyncio.run(run())
    assert reply.code in (
        Code.CREATED,
        Code.CHANGED,
        Code.DELETED,
        Code.BAD_REQUEST,
        Code.NOT_FOUND,
        Code.METHOD_NOT_ALLOWED,
        Code.CONFLICT,
    )


def test_registration_ids_grow_with_time_around_40_random_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ordered by the second (the SQLite id index appends), unguessable by the random part."""
    ids = []
    for now in (1_800_000_000.2, 1_800_000_000.9, 1_800_000_001.1):
        monkeypatch.setattr(registrar_module.time, "time", lambda now=now: now)
        ids.append(registrar_module._random_id())
    assert all(re.fullmatch(r"[0-9a-f]{18}", rid) for rid in ids)
    assert ids[0][:8] == ids[1][:8] == f"{1_800_000_000:08x}"
    assert ids[2][:8] == f"{1_800_000_001:08x}" and ids[2] > max(ids[0], ids[1])
    assert len({rid[8:] for rid in ids}) == 3
