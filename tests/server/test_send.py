"""The generic ``LwM2MServer.send``: any request class, one timeout for all of them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from server_helpers import Device

from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.formats import registry
from lwm2m.formats.media import ContentFormat
from lwm2m.model.nodes import Resource
from lwm2m.model.path import Path
from lwm2m.server import ClientTimeout, LwM2MServer, RemoteError
from lwm2m.server.operations import (
    CancelObservationRequest,
    ObserveRequest,
    ReadRequest,
    Request,
    Target,
)


@dataclass(frozen=True, slots=True)
class RawReadResponse:
    payload: bytes
    content_format: int | None
    code: Code


@dataclass(frozen=True, slots=True)
class RawReadRequest(Request[RawReadResponse]):
    """An operation the server does not know: a GET whose answer stays undecoded."""

    path: Path

    def to_message(self, target: Target) -> Message:
        return Message(Code.GET, uri_path=target.uri_path(self.path))

    def to_response(self, answer: Message, target: Target) -> RawReadResponse:
        return RawReadResponse(answer.payload, answer.content_format, Code(answer.code))


class Battery:
    """A client with /3/0/9 that can be told to leave Observe cancellations unanswered."""

    def __init__(self) -> None:
        self.requests: list[Message] = []
        self.answer_cancel = asyncio.Event()
        self.observations: list[Any] = []

    async def handle(self, request: Any) -> Message:
        msg: Message = request.message
        self.requests.append(msg)
        if msg.uri_path != ("3", "0", "9"):
            return Message(Code.NOT_FOUND, payload=b"no such resource")
        if msg.observe == 1:
            await self.answer_cancel.wait()
        elif msg.observe == 0:
            self.observations.append(request.start_observation())
        fmt = int(ContentFormat.TEXT)
        path = Path(3, 0, 9)
        payload = registry.encode(Resource.single(9, 87), path, fmt)
        return Message(Code.CONTENT, payload=payload, content_format=fmt)


@pytest.fixture
async def battery(make_device: Any) -> Battery:
    device = Battery()
    registered: Device = await make_device(device.handle)
    reply = await registered.register("dev", "lt=300", "lwm2m=1.1", payload=b"</3/0>")
    assert reply.code == Code.CREATED
    return device


async def test_a_request_class_the_server_does_not_know_is_sent(
    server: LwM2MServer, battery: Battery
) -> None:
    raw = await server.send("dev", RawReadRequest(Path(3, 0, 9)))
    assert raw == RawReadResponse(b"87", int(ContentFormat.TEXT), Code.CONTENT)
    assert battery.requests[-1].uri_path == ("3", "0", "9")
    assert battery.requests[-1].accept is None
    # The server's error handling applies to it as to its own operations.
    with pytest.raises(RemoteError) as caught:
        await server.send("dev", RawReadRequest(Path(3, 0, 1)))
    assert caught.value.code == Code.NOT_FOUND
    assert caught.value.message == "no such resource"


async def test_the_wrappers_send_the_typed_requests(server: LwM2MServer, battery: Battery) -> None:
    by_wrapper = await server.read("dev", "/3/0/9", format=int(ContentFormat.TEXT))
    by_send = await server.send("dev", ReadRequest(Path(3, 0, 9), int(ContentFormat.TEXT)))
    assert by_wrapper == by_send
    assert by_send.content == Resource.single(9, 87, by_send.content.type)  # type: ignore[union-attr]


async def test_the_timeout_bounds_an_unanswered_observe_cancel(
    server: LwM2MServer, battery: Battery
) -> None:
    observed = await server.send("dev", ObserveRequest(Path(3, 0, 9), int(ContentFormat.TEXT)))
    assert server.observations.is_live(observed.observation.id)
    try:
        with pytest.raises(ClientTimeout):
            await server.send("dev", CancelObservationRequest(Path(3, 0, 9)), timeout=0.3)
        # Gone on the server's side even though the client never confirmed.
        assert server.observations_of("dev") == []
        assert not server.observations.is_live(observed.observation.id)
    finally:
        battery.answer_cancel.set()


async def test_cancel_counts_only_matching_observations(
    server: LwM2MServer, battery: Battery
) -> None:
    battery.answer_cancel.set()
    await server.send("dev", ObserveRequest(Path(3, 0, 9), int(ContentFormat.TEXT)))
    other = await server.send("dev", CancelObservationRequest(Path(3, 0, 8)))
    assert other.cancelled == 0
    passive = await server.send("dev", CancelObservationRequest(Path(3, 0, 9), active=False))
    assert passive.cancelled == 1
    assert server.observations_of("dev") == []
    assert not any(m.observe == 1 for m in battery.requests)
