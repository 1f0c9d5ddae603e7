"""A restarted server (same data directory and port) knows its clients without re-registration."""

from __future__ import annotations

import asyncio
from pathlib import Path as FsPath
from typing import Any

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat
from lwm2m.server import LwM2MServer, NotificationEvent, ServerConfig
from lwm2m.stores import open_stores


async def _answer(request: Any) -> Message:
    return Message(Code.CONTENT, payload=b"still here", content_format=int(ContentFormat.TEXT))


async def test_restart_keeps_registrations(tmp_path: FsPath) -> None:
    device = await Endpoint.create("127.0.0.1", 0, handler=_answer)
    try:
        stores = await open_stores("sqlite", tmp_path)
        first = LwM2MServer(stores, config=ServerConfig(coap_port=0))
        await first.start()
        port = first.coap_address[1]
        reply = await device.request(
            Message(
                Code.POST,
                uri_path=("rd",),
                uri_query=("ep=persistent", "lt=3600"),
                payload=b"</1/0>,</3/0>",
            ),
            first.coap_address,
            timeout=5,
        )
        assert reply.code == Code.CREATED
        location = reply.location_path
        await first.stop()
        await stores.close()

        stores = await open_stores("sqlite", tmp_path)
        second = LwM2MServer(stores, config=ServerConfig(coap_port=port))
        await second.start()
        try:
            reg = second.get_registration("persistent")
            assert reg is not None and reg.address == device.local_address
            response = await second.read("persistent", "/3/0/0", timeout=5)
            assert response.content.value == "still here"  # type: ignore[union-attr]
            # The old location still works for Update.
            upd = await device.request(
                Message(Code.POST, uri_path=location), second.coap_address, timeout=5
            )
            assert upd.code == Code.CHANGED
        finally:
            await second.stop()
            await stores.close()
    finally:
        await device.close()


class Observable:
    def __init__(self) -> None:
        self.observe_requests = 0
        self.observations: list[Any] = []

    async def handle(self, request: Any) -> Message:
        msg: Message = request.message
        if msg.observe == 0:
            self.observe_requests += 1
            self.observations.append(request.start_observation())
        return Message(Code.CONTENT, payload=b"42", content_format=int(ContentFormat.TEXT))


async def test_restart_restores_observations_on_next_update(tmp_path: FsPath) -> None:
    client = Observable()
    device = await Endpoint.create("127.0.0.1", 0, handler=client.handle)
    try:
        stores = await open_stores("sqlite", tmp_path)
        first = LwM2MServer(stores, config=ServerConfig(coap_port=0))
        await first.start()
        port = first.coap_address[1]
        reply = await device.request(
            Message(Code.POST, uri_path=("rd",), uri_query=("ep=obs",), payload=b"</3/0>"),
            first.coap_address,
            timeout=5,
        )
        await first.observe("obs", "/3/0/9")
        await first.stop()
        await stores.close()

        stores = await open_stores("sqlite", tmp_path)
        second = LwM2MServer(stores, config=ServerConfig(coap_port=port))
        await second.start()
        try:
            assert len(second.observations_of("obs")) == 1
            with second.events.subscribe("obs") as events:
                upd = await device.request(
                    Message(Code.POST, uri_path=reply.location_path), second.coap_address, timeout=5
                )
                assert upd.code == Code.CHANGED
                # The server observes again; the new observation delivers notifications.
                await second.wait_background()
                assert client.observe_requests == 2
                await client.observations[-1].notify(
                    Message(Code.CONTENT, payload=b"43", content_format=0)
                )
                while True:
                    event = await asyncio.wait_for(events.get(), 5)
                    if isinstance(event, NotificationEvent):
                        break
            assert event.content.value == 43  # type: ignore[union-attr]
            assert len(second.observations_of("obs")) == 1
        finally:
            await second.stop()
            await stores.close()
    finally:
        await device.close()
