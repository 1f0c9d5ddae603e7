"""``lwm2m client`` in each bootstrap mode, as a real process, against in-process servers."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import pytest

from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.client.bootstrap.smartcard import encode_image
from lwm2m.protocol.bootstrap_config import parse_client_config
from lwm2m.protocol.provisioning import plan_writes
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.events import RegistrationEvent
from lwm2m.stores.memory import MemoryStores


@pytest.fixture
async def servers() -> AsyncIterator[tuple[LwM2MServer, BootstrapServer]]:
    server = LwM2MServer(MemoryStores(), config=ServerConfig(coap_port=0, request_timeout_s=5.0))
    await server.start()
    bs = BootstrapServer(request_timeout_s=5.0)
    await bs.start("127.0.0.1", 0)
    yield server, bs
    await bs.close()
    await server.stop()


@pytest.mark.parametrize("mode", ["bootstrap", "factory", "smartcard"])
async def test_client_command_modes(
    servers: tuple[LwM2MServer, BootstrapServer], tmp_path: FsPath, mode: str
) -> None:
    server, bs = servers
    assert bs.coap_address is not None
    ep = f"cli-{mode}"
    account = {
        "servers": [{"short_server_id": 42, "uri": f"coap://127.0.0.1:{server.coap_address[1]}"}]
    }
    args = ["-e", ep, "--no-console", "--host", "127.0.0.1"]
    if mode == "bootstrap":
        await bs.configs.put(ep, account)
        args += ["--bootstrap", f"coap://127.0.0.1:{bs.coap_address[1]}"]
    elif mode == "factory":
        (tmp_path / "factory.json").write_text(json.dumps(account))
        args += ["--factory", str(tmp_path / "factory.json")]
    else:
        image = encode_image(plan_writes(parse_client_config(ep, account)))
        (tmp_path / "card.bin").write_bytes(image)
        args += ["--smartcard", str(tmp_path / "card.bin")]
    with server.events.subscribe(ep) as sub:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lwm2m",
            "client",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            event = await asyncio.wait_for(sub.get(), 30)
            assert isinstance(event, RegistrationEvent)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    if mode == "bootstrap":
        assert bs.sessions.list(ep)[0].ok


async def test_corrupt_smartcard_is_reported(tmp_path: FsPath) -> None:
    card = tmp_path / "card.bin"
    card.write_bytes(b"LWSC\x01\x00\x00\x00\x00\x00\x00\x00\xde\xad\xbe\xef")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lwm2m",
        "client",
        "-e",
        "x",
        "--no-console",
        "--smartcard",
        str(card),
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode != 0
    assert b"--smartcard:" in err and b"CRC mismatch" in err
