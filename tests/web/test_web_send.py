"""One ``send`` through the web layer: new operations and every REST timeout reach the server.

A real LwM2M server and a real ``lwm2m`` client over UDP; the web app over
:class:`ServerAdapter`, with one extra route that only this test defines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from web_fakes import FakeDevices

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.model.path import Path
from lwm2m.server.events import RegistrationEvent
from lwm2m.server.operations import Request, Target
from lwm2m.server.server import LwM2MServer, ServerConfig
from lwm2m.web.adapters import ServerAdapter
from lwm2m.web.app import WebServer, build_app
from lwm2m.web.backend import DeviceError, DeviceManager

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RawReadResponse:
    payload: bytes
    code: Code


@dataclass(frozen=True, slots=True)
class RawReadRequest(Request[RawReadResponse]):
    """An operation neither the server, the backend nor the adapter knows."""

    path: Path

    def to_message(self, target: Target) -> Message:
        return Message(Code.GET, uri_path=target.uri_path(self.path))

    def to_response(self, answer: Message, target: Target) -> RawReadResponse:
        return RawReadResponse(answer.payload, Code(answer.code))


class RecordingServer(LwM2MServer):
    """The real server, noting which request went out with which timeout."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: list[tuple[type[Any], float | None]] = []

    async def send(self, endpoint: str, request: Request[R], timeout: float | None = None) -> R:
        self.sent.append((type(request), timeout))
        return await super().send(endpoint, request, timeout)


@dataclass
class World:
    server: RecordingServer
    device: LwM2MClient
    http: httpx.AsyncClient


def add_raw_route(app: FastAPI, devices: DeviceManager) -> None:
    """The second of the two places a new operation touches: its route."""
    router = APIRouter()

    @router.get("/api/raw/{endpoint}/{path:path}")
    async def raw(endpoint: str, path: str, timeout: float = 5) -> dict[str, Any]:
        answer = await devices.send(endpoint, RawReadRequest(Path.parse("/" + path)), timeout)
        return {"code": answer.code.dotted, "text": answer.payload.decode()}

    # Ahead of the web UI's static files, which the app mounts at "/".
    app.router.routes[:0] = router.routes


@pytest.fixture
async def world() -> AsyncIterator[World]:
    server = RecordingServer(config=ServerConfig(host="127.0.0.1", coap_port=0))
    await server.start()
    adapter = ServerAdapter(server)
    app = build_app(adapter, None, count_events=False)
    add_raw_route(app, adapter)
    web = WebServer(app, "127.0.0.1", 0)
    await web.start()
    host, port = server.coap_address
    config = ClientConfig(
        "dev-send",
        servers=(FactoryAccount(f"coap://{host}:{port}", lifetime_s=60),),
        local_host="127.0.0.1",
    )
    device = LwM2MClient(config)
    with server.events.subscribe("dev-send") as events:
        await device.start()
        async with asyncio.timeout(10):
            while not isinstance(await events.get(), RegistrationEvent):
                pass
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}", timeout=15) as http:
            yield World(server, device, http)
    finally:
        await device.stop()
        await web.stop()
        await server.stop()


async def test_a_new_operation_needs_only_its_class_and_route(world: World) -> None:
    world.device.instance(3).set(9, 42)
    resp = await world.http.get("/api/raw/dev-send/3/0/9")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"code": "2.05", "text": "42"}
    assert world.server.sent[-1] == (RawReadRequest, 5.0)
    # The adapter's error mapping covers it too: unknown client -> 404.
    assert (await world.http.get("/api/raw/nobody/3/0/9")).status_code == 404


async def test_every_rest_timeout_is_the_one_the_server_uses(world: World) -> None:
    base = "/api/clients/dev-send"
    calls = [
        ("GET", f"{base}/3/0/9?timeout=4.5", None),
        ("PUT", f"{base}/3/0/14?timeout=4.25", {"value": "+02"}),
        ("GET", f"{base}/3/0/discover?timeout=4.75", None),
        ("PUT", f"{base}/3/0/9/attributes?pmin=5&timeout=3.5", None),
        ("POST", f"{base}/3/0/12?timeout=3.25", None),
        ("GET", f"{base}/composite?paths=/3/0/9,/3/0/14&timeout=3.75", None),
        ("PUT", f"{base}/composite?timeout=2.5", {"/3/0/14": {"value": "+03"}}),
        ("POST", f"{base}/3/0/9/observe?timeout=2.25", None),
        ("DELETE", f"{base}/3/0/9/observe?timeout=2.75", None),
        ("POST", f"{base}/composite/observe?paths=/3/0/9,/3/0/14&timeout=1.5", None),
        ("DELETE", f"{base}/composite/observe?paths=/3/0/9,/3/0/14&timeout=1.25", None),
    ]
    for method, url, body in calls:
        world.server.sent.clear()
        resp = await world.http.request(method, url, json=body)
        assert resp.status_code == 200, (url, resp.text)
        wanted = float(url.rsplit("timeout=", 1)[1])
        assert [timeout for _, timeout in world.server.sent] == [wanted], url


async def test_the_fake_dispatches_any_request_through_send() -> None:
    fake = FakeDevices()
    fake.add("dev-1", {"/3/0/9": 87})
    # The fake is a device: an operation it does not implement is a 4.05, not a missing method.
    with pytest.raises(DeviceError) as caught:
        await fake.send("dev-1", RawReadRequest(Path(3, 0, 9)), 1.0)
    assert caught.value.code is Code.METHOD_NOT_ALLOWED
