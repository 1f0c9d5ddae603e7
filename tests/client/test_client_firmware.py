"""Firmware Update state machine: Block1 push, CoAP pull, HTTP pull, Update, failures."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.client.objects.firmware import FirmwareUpdate, Result, State
from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint, IncomingRequest
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat
from lwm2m.model.registry import ModelRegistry

PACKAGE = b"FW:demo:2.0\n" + bytes(range(256)) * 20  # 5 KiB: several Block1 blocks


@dataclass
class Rig:
    server: Endpoint
    client: LwM2MClient
    address: tuple[str, int]

    @property
    def fw(self) -> FirmwareUpdate:
        inst = self.client.instance(5, 0)
        assert isinstance(inst, FirmwareUpdate)
        return inst

    async def state(self) -> tuple[int, int]:
        s = await self.server.request(Message(Code.GET, uri_path=("5", "0", "3")), self.address)
        r = await self.server.request(Message(Code.GET, uri_path=("5", "0", "5")), self.address)
        return int(s.payload), int(r.payload)


@pytest.fixture
async def rig(registry: ModelRegistry) -> AsyncIterator[Rig]:
    registered: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()

    async def handle(request: IncomingRequest) -> Message:
        msg = request.message
        if msg.uri_path == ("rd",):
            if not registered.done():
                registered.set_result(request.peer.address)
            return Message(Code.CREATED, location_path=("rd", "fw"))
        if msg.uri_path == ("fw", "pkg"):
            return Message(Code.CONTENT, payload=PACKAGE, content_format=ContentFormat.OCTET_STREAM)
        if msg.uri_path[:1] == ("rd",):
            return Message(Code.CHANGED)
        return Message(Code.NOT_FOUND)

    server = await Endpoint.create("127.0.0.1", 0, handler=handle)
    host, port = server.local_address
    client = LwM2MClient(
        ClientConfig(
            "fw-1", servers=(FactoryAccount(f"coap://{host}:{port}"),), local_host="127.0.0.1"
        ),
        registry=registry,
    )
    await client.start()
    address = await asyncio.wait_for(registered, 5)
    yield Rig(server, client, address)
    await client.stop(deregister=False)
    await server.close()


async def wait_state(rig: Rig, state: State) -> None:
    for _ in range(500):
        if rig.fw.get(3) == state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"state {rig.fw.get(3)} never became {state}")


async def test_block1_push_then_update(rig: Rig) -> None:
    assert await rig.state() == (State.IDLE, Result.INITIAL)
    r = await rig.server.request(
        Message(
            Code.PUT,
            uri_path=("5", "0", "0"),
            payload=PACKAGE,
            content_format=ContentFormat.OCTET_STREAM,
        ),
        rig.address,
    )
    assert r.code == Code.CHANGED
    assert rig.fw.package == PACKAGE  # reassembled from Block1
    assert await rig.state() == (State.DOWNLOADED, Result.INITIAL)
    r = await rig.server.request(Message(Code.POST, uri_path=("5", "0", "2")), rig.address)
    assert r.code == Code.CHANGED
    await wait_state(rig, State.IDLE)
    assert await rig.state() == (State.IDLE, Result.SUCCESS)
    name = await rig.server.request(Message(Code.GET, uri_path=("5", "0", "6")), rig.address)
    version = await rig.server.request(Message(Code.GET, uri_path=("3", "0", "3")), rig.address)
    assert (name.payload, version.payload) == (b"demo", b"2.0")


async def test_update_only_when_downloaded(rig: Rig) -> None:
    r = await rig.server.request(Message(Code.POST, uri_path=("5", "0", "2")), rig.address)
    assert r.code == Code.METHOD_NOT_ALLOWED
    assert await rig.state() == (State.IDLE, Result.INITIAL)


async def test_bad_package_fails_integrity_check(rig: Rig) -> None:
    r = await rig.server.request(
        Message(
            Code.PUT,
            uri_path=("5", "0", "0"),
            payload=b"BAD package",
            content_format=ContentFormat.OCTET_STREAM,
        ),
        rig.address,
    )
    assert r.code == Code.CHANGED
    assert await rig.state() == (State.IDLE, Result.INTEGRITY_CHECK_FAILURE)


async def test_coap_pull_and_cancel(rig: Rig) -> None:
    host, port = rig.server.local_address
    uri = f"coap://{host}:{port}/fw/pkg".encode()
    r = await rig.server.request(
        Message(Code.PUT, uri_path=("5", "0", "1"), payload=uri), rig.address
    )
    assert r.code == Code.CHANGED
    await wait_state(rig, State.DOWNLOADED)
    assert rig.fw.package == PACKAGE  # Block2 followed by our endpoint
    r = await rig.server.request(
        Message(Code.PUT, uri_path=("5", "0", "1"), payload=b""), rig.address
    )
    assert r.code == Code.CHANGED
    assert await rig.state() == (State.IDLE, Result.INITIAL)


async def test_pull_errors(rig: Rig) -> None:
    host, port = rig.server.local_address
    await rig.server.request(
        Message(Code.PUT, uri_path=("5", "0", "1"), payload=b"ftp://x/y"), rig.address
    )
    assert await rig.state() == (State.IDLE, Result.UNSUPPORTED_PROTOCOL)
    missing = f"coap://{host}:{port}/nothing".encode()
    await rig.server.request(
        Message(Code.PUT, uri_path=("5", "0", "1"), payload=missing), rig.address
    )
    for _ in range(500):
        if rig.fw.get(5) == Result.INVALID_URI:
            break
        await asyncio.sleep(0.01)
    assert await rig.state() == (State.IDLE, Result.INVALID_URI)


async def test_http_pull(rig: Rig) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(PACKAGE)))
            self.end_headers()
            self.wfile.write(PACKAGE)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{httpd.server_address[1]}/pkg.bin".encode()
        await rig.server.request(
            Message(Code.PUT, uri_path=("5", "0", "1"), payload=uri), rig.address
        )
        await wait_state(rig, State.DOWNLOADED)
        assert rig.fw.package == PACKAGE
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
