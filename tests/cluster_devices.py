"""Simulated devices shared by the cluster tests of tests/server and tests/web."""

from __future__ import annotations

from typing import Any

from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat

TEXT = int(ContentFormat.TEXT)


class Battery:
    """A device answering /3/0/9 with "42" and keeping the observations it accepted."""

    def __init__(self) -> None:
        self.observations: list[Any] = []

    async def handle(self, request: Any) -> Message:
        if request.message.observe == 0:
            self.observations.append(request.start_observation())
        return Message(Code.CONTENT, payload=b"42", content_format=TEXT)
