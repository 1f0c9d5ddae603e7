"""NAT rebinding: the client's port changes between Updates; the server follows it."""

from __future__ import annotations

from typing import Any

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat
from lwm2m.server import LwM2MServer, ServerConfig


def _device(name: bytes) -> Any:
    async def answer(request: Any) -> Message:
        return Message(Code.CONTENT, payload=name, content_format=int(ContentFormat.TEXT))

    return answer


async def test_update_from_a_new_port_moves_the_registration() -> None:
    old_port = await Endpoint.create("127.0.0.1", 0, handler=_device(b"old port"))
    new_port = await Endpoint.create("127.0.0.1", 0, handler=_device(b"new port"))
    async with LwM2MServer(config=ServerConfig(coap_port=0)) as server:
        try:
            reply = await old_port.request(
                Message(
                    Code.POST,
                    uri_path=("rd",),
                    uri_query=("ep=behind-nat", "lt=60"),
                    payload=b"</1/0>,</3/0>",
                ),
                server.coap_address,
                timeout=5,
            )
            assert reply.code == Code.CREATED
            first = await server.read("behind-nat", "/3/0/0", timeout=5)
            assert first.content.value == "old port"  # type: ignore[union-attr]
            # The NAT gave the device a new port: its next Update comes from there.
            update = await new_port.request(
                Message(Code.POST, uri_path=reply.location_path), server.coap_address, timeout=5
            )
            assert update.code == Code.CHANGED
            reg = server.get_registration("behind-nat")
            assert reg is not None and reg.address == new_port.local_address
            assert reg.id == reply.location_path[1]  # the same registration, moved
            later = await server.read("behind-nat", "/3/0/0", timeout=5)
            assert later.content.value == "new port"  # type: ignore[union-attr]
        finally:
            await old_port.close()
            await new_port.close()
