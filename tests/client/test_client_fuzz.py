"""Arbitrary requests never crash the dispatcher: every answer is a 2.xx or 4.xx code."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.client.scheduler import ManualScheduler
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer
from lwm2m.formats.media import ContentFormat
from lwm2m.model.registry import default_registry

SERVER = ("127.0.0.1", 5683)
REGISTRY = default_registry()


class FakeRequest:
    def __init__(self, message: Message) -> None:
        self.message = message
        self.peer = Peer(SERVER)

    def start_observation(self, on_cancel: object = None) -> object:
        return object()


segments = st.one_of(
    st.sampled_from(["0", "1", "2", "3", "4", "5", "6", "7", "3303", "65535", "0", "11", "13"]),
    st.text(max_size=6),
)
messages = st.builds(
    Message,
    code=st.sampled_from(
        [Code.GET, Code.POST, Code.PUT, Code.DELETE, Code.FETCH, Code.IPATCH, Code.PATCH]
    ),
    uri_path=st.lists(segments, max_size=5).map(tuple),
    uri_query=st.lists(
        st.sampled_from(["pmin=1", "pmax=0", "gt=1.5", "st", "lt=x", "con=1", "ep=1"]), max_size=3
    ).map(tuple),
    payload=st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"1", b"abc", b"0='x'", b"\x08\x00\x03\xc1\x01\x05"]),
    ),
    content_format=st.one_of(st.none(), st.sampled_from([int(c) for c in ContentFormat] + [7777])),
    accept=st.one_of(st.none(), st.sampled_from([int(c) for c in ContentFormat] + [9999])),
    observe=st.one_of(st.none(), st.sampled_from([0, 1, 5])),
)


def make_client() -> LwM2MClient:
    client = LwM2MClient(
        ClientConfig("fuzz", servers=(FactoryAccount("coap://127.0.0.1:5683"),)),
        registry=REGISTRY,
        scheduler=ManualScheduler(),
    )
    client._addresses[SERVER] = 1  # as if registered
    client.store.create_instance(3303, 0, {5700: 1.5})
    return client


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=6))
def test_dispatcher_never_fails(batch: list[Message]) -> None:
    async def run() -> None:
        client = make_client()
        for message in batch:
            response = await client.dispatcher.handle(FakeRequest(message))
            assert response.is_response
            assert Code(response.code).class_ in (2, 4), (message, response)
        client.observations.clear()

    asyncio.run(run())
