"""Interop with libcoap 4.3 (``coap-server-notls`` / ``coap-client-notls``, Debian libcoap3-bin).

Both directions: our client against their server, their client against ours.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from libcoap_process import start_server, stop

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint, IncomingRequest, ServerObservation
from lwm2m.coap.errors import RequestTimeout
from lwm2m.coap.message import Message

SERVER_BIN = shutil.which("coap-server-notls")
CLIENT_BIN = shutil.which("coap-client-notls")

pytestmark = pytest.mark.interop

needs_server = pytest.mark.skipif(
    SERVER_BIN is None, reason="coap-server-notls (libcoap3-bin) not installed"
)
needs_client = pytest.mark.skipif(
    CLIENT_BIN is None, reason="coap-client-notls (libcoap3-bin) not installed"
)

BIG = bytes(range(32, 127)) * 40  # 3800 printable bytes: 4 blocks of 1024


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- our client -> libcoap server ---------------------------------------------------------


@pytest.fixture
async def libcoap_server() -> AsyncIterator[tuple[str, int]]:
    assert SERVER_BIN is not None
    server_bin = SERVER_BIN

    def command(port: int) -> list[str]:
        return [server_bin, "-A", "127.0.0.1", "-p", str(port), "-d", "10"]

    async with await Endpoint.create() as probe:

        async def ready(port: int) -> bool:
            try:
                await probe.request(Message(Code.GET), ("127.0.0.1", port), timeout=0.2)
            except RequestTimeout:
                return False
            return True

        proc, port = await start_server(command, free_port, ready)
    try:
        yield ("127.0.0.1", port)
    finally:
        await stop(proc)


@needs_server
async def test_our_client_against_libcoap_server(libcoap_server: tuple[str, int]) -> None:
    async with await Endpoint.create() as client:
        core = await client.request(
            Message(Code.GET, uri_path=(".well-known", "core")), libcoap_server
        )
        assert core.code == Code.CONTENT and b"</time>" in core.payload
        put = await client.request(
            Message(Code.PUT, uri_path=("example_data",), payload=b"hello"), libcoap_server
        )
        assert put.code in (Code.CREATED, Code.CHANGED)  # libcoap: 2.01 on the first PUT
        got = await client.request(Message(Code.GET, uri_path=("example_data",)), libcoap_server)
        assert got.payload == b"hello"
        created = await client.request(
            Message(Code.POST, uri_path=("made",), payload=b"p"), libcoap_server
        )
        assert created.code == Code.CREATED and created.location_path == ("made",)
        deleted = await client.request(Message(Code.DELETE, uri_path=("made",)), libcoap_server)
        assert deleted.code == Code.DELETED
        gone = await client.request(Message(Code.GET, uri_path=("made",)), libcoap_server)
        assert gone.code == Code.NOT_FOUND


@needs_server
async def test_ping_libcoap_server(libcoap_server: tuple[str, int]) -> None:
    async with await Endpoint.create() as client:
        assert await client.ping(libcoap_server, timeout=5) is True
        # Nobody listens on a fresh port: no answer within the timeout.
        assert await client.ping(("127.0.0.1", free_port()), timeout=0.3) is False


@needs_server
async def test_blockwise_against_libcoap_server(libcoap_server: tuple[str, int]) -> None:
    async with await Endpoint.create() as client:
        put = await client.request(
            Message(Code.PUT, uri_path=("example_data",), payload=BIG), libcoap_server
        )
        assert put.code in (Code.CREATED, Code.CHANGED)
        got = await client.request(Message(Code.GET, uri_path=("example_data",)), libcoap_server)
        assert got.code == Code.CONTENT and got.payload == BIG


@needs_server
async def test_observe_libcoap_time(libcoap_server: tuple[str, int]) -> None:
    async with await Endpoint.create() as client:
        obs = client.observe(Message(Code.GET, uri_path=("time",)), libcoap_server)
        first = await obs.first()
        assert first.code == Code.CONTENT and first.observe is not None
        notes = []
        async for note in obs:  # /time notifies every second
            notes.append(note)
            break
        assert notes and notes[0].observe is not None
        await asyncio.wait_for(obs.cancel(), 10)
        assert not obs.active


# --- libcoap client -> our server ----------------------------------------------------------


class Store:
    """A tiny resource store answering GET/PUT/POST/DELETE, with an observable /obs."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, ...], bytes] = {("big",): BIG}
        self.observations: list[ServerObservation] = []

    async def handle(self, request: IncomingRequest) -> Message:
        msg = request.message
        path = msg.uri_path
        if msg.code == Code.GET:
            if path == ("obs",):
                if msg.observe == 0:
                    self.observations.append(request.start_observation())
                return Message(Code.CONTENT, payload=b"n0")
            if path not in self.data:
                return Message(Code.NOT_FOUND)
            return Message(Code.CONTENT, payload=self.data[path])
        if msg.code == Code.PUT:
            created = path not in self.data
            self.data[path] = msg.payload
            return Message(Code.CREATED if created else Code.CHANGED)
        if msg.code == Code.POST:
            self.data[(*path, "child")] = msg.payload
            return Message(Code.CREATED, location_path=(*path, "child"))
        if msg.code == Code.DELETE:
            return Message(
                Code.DELETED if self.data.pop(path, None) is not None else Code.NOT_FOUND
            )
        return Message(Code.METHOD_NOT_ALLOWED)


async def run_client(*args: str) -> str:
    assert CLIENT_BIN is not None
    proc = await asyncio.create_subprocess_exec(
        CLIENT_BIN, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, stderr.decode()
    return stdout.decode().rstrip("\n")  # coap-client ends its output with a newline


@needs_client
async def test_libcoap_client_against_our_server(tmp_path: Path) -> None:
    store = Store()
    async with await Endpoint.create(handler=store.handle) as server:
        base = f"coap://127.0.0.1:{server.local_address[1]}"
        assert await run_client("-m", "put", "-e", "v1", f"{base}/a") == ""
        assert store.data[("a",)] == b"v1"
        assert await run_client("-m", "get", f"{base}/a") == "v1"
        await run_client("-m", "post", "-e", "p", f"{base}/a")
        assert store.data[("a", "child")] == b"p"
        await run_client("-m", "delete", f"{base}/a")
        assert ("a",) not in store.data
        # Block2 from us, Block1 to us.
        assert (await run_client("-m", "get", f"{base}/big")).encode() == BIG
        body = tmp_path / "body.txt"
        body.write_bytes(BIG[::-1])
        await run_client("-m", "put", "-f", str(body), f"{base}/upload")
        assert store.data[("upload",)] == BIG[::-1]
        await run_client("-m", "put", "-b", "64", "-f", str(body), f"{base}/small-blocks")
        assert store.data[("small-blocks",)] == BIG[::-1]
        assert (await run_client("-m", "get", "-b", "64", f"{base}/small-blocks")).encode() == BIG[
            ::-1
        ]


@needs_client
async def test_libcoap_client_observes_our_server() -> None:
    store = Store()
    async with await Endpoint.create(handler=store.handle) as server:
        base = f"coap://127.0.0.1:{server.local_address[1]}"
        client = asyncio.create_task(run_client("-s", "3", "-B", "3", f"{base}/obs"))
        while not store.observations:
            await asyncio.sleep(0.02)
        observation = store.observations[0]
        for i in range(1, 4):
            await observation.notify(Message(Code.CONTENT, payload=b"n%d" % i), confirmable=i == 2)
        output = await client
        assert output.startswith("n0") and "n1" in output and "n2" in output and "n3" in output
