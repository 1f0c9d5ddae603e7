"""Fixtures: a server on 127.0.0.1:0 with a fake wall clock, raw UDP peers, simulated devices,
a private redis-server for the cluster tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from server_helpers import Device, FakeClock, Handler, RawPeer

from lwm2m.coap.endpoint import Endpoint
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.stores.memory import MemoryStores


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[LwM2MServer]:
    srv = LwM2MServer(
        MemoryStores(),
        config=ServerConfig(coap_port=0, expiry_interval_s=3600.0, request_timeout_s=5.0),
        clock=clock,
    )
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def raw() -> AsyncIterator[RawPeer]:
    peer = await RawPeer.create()
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture
async def make_device(
    server: LwM2MServer,
) -> AsyncIterator[Callable[[Handler], Awaitable[Device]]]:
    endpoints: list[Endpoint] = []

    async def make(handler: Handler) -> Device:
        ep = await Endpoint.create("127.0.0.1", 0, handler=handler)
        endpoints.append(ep)
        return Device(ep, server.coap_address)

    yield make
    for ep in endpoints:
        await ep.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private, persistent (AOF) redis-server; skipped when the binary is absent."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    pytest.importorskip("redis", reason="redis-py is not installed (pip install 'lwm2m[redis]')")
    directory = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
            *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.skip("redis-server did not start")
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
