"""Devices pull firmware from ``/fw/{id}`` over CoAP with Block2: our endpoint, aiocoap, libcoap."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import pytest
from server_helpers import RawPeer

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Block, Message
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.firmware import FirmwareImage, FirmwareRepository
from lwm2m.stores.memory import MemoryStores
from lwm2m.stores.records import Registration

IMAGE = hashlib.sha256(b"seed").digest() * 1500 + b"end"  # 48003 bytes: 47 blocks of 1024
COAP_CLIENT = shutil.which("coap-client-notls")


@pytest.fixture
async def fw_server(tmp_path: FsPath) -> AsyncIterator[tuple[LwM2MServer, FirmwareImage]]:
    stores = MemoryStores()
    repo = await FirmwareRepository.open(stores.documents, tmp_path)
    image = await repo.add(IMAGE, name="fw", version="2.0")
    server = LwM2MServer(stores, config=ServerConfig(coap_port=0), firmware=repo)
    await server.start()
    try:
        yield server, image
    finally:
        await server.stop()


async def test_endpoint_pulls_byte_exact(fw_server: tuple[LwM2MServer, FirmwareImage]) -> None:
    server, image = fw_server
    async with await Endpoint.create("127.0.0.1", 0) as ep:
        response = await ep.request(
            Message(Code.GET, uri_path=("fw", image.id)), server.coap_address, timeout=30
        )
    assert response.code == Code.CONTENT
    assert hashlib.sha256(response.payload).hexdigest() == image.sha256


async def test_blocks_carry_etag_size_and_honour_smaller_size(
    fw_server: tuple[LwM2MServer, FirmwareImage], raw: RawPeer
) -> None:
    server, image = fw_server
    etag = bytes.fromhex(image.sha256[:16])
    path = ("fw", image.id)

    async def get(**options: object) -> Message:
        message = Message(Code.GET, uri_path=path).with_(**options)
        return await asyncio.wait_for(raw.request(message, server.coap_address), 10)

    first = await get()
    assert first.code == Code.CONTENT and first.block2 == Block(0, True, 6)
    assert first.etag == (etag,)
    assert first.size2 == len(IMAGE)
    assert first.payload == IMAGE[:1024]
    small = await get(block2=Block(3, False, 2))
    assert small.block2 == Block(3, True, 2)
    assert small.payload == IMAGE[192:256]
    assert small.etag == (etag,)
    last = await get(block2=Block(46, False, 6))
    assert last.block2 == Block(46, False, 6) and last.payload == IMAGE[46 * 1024 :]
    assert (await get(block2=Block(47, False, 6))).code == Code.BAD_OPTION
    valid = await get(etag=(etag,))
    assert valid.code == Code.VALID and valid.payload == b""
    assert (await get(uri_path=("fw", "0" * 16))).code == Code.NOT_FOUND
    assert (await get(code=Code.PUT, payload=b"x")).code == Code.METHOD_NOT_ALLOWED


async def test_no_repository_no_fw(tmp_path: FsPath) -> None:
    async with (
        LwM2MServer(MemoryStores(), config=ServerConfig(coap_port=0)) as server,
        await Endpoint.create("127.0.0.1", 0) as ep,
    ):
        response = await ep.request(
            Message(Code.GET, uri_path=("fw", "0" * 16)), server.coap_address, timeout=10
        )
    assert response.code == Code.NOT_FOUND


async def test_aiocoap_pulls_byte_exact(fw_server: tuple[LwM2MServer, FirmwareImage]) -> None:
    aiocoap = pytest.importorskip("aiocoap")
    server, image = fw_server
    context = await aiocoap.Context.create_client_context()
    try:
        request = aiocoap.Message(
            code=aiocoap.GET, uri=f"coap://127.0.0.1:{server.coap_address[1]}/fw/{image.id}"
        )
        response = await asyncio.wait_for(context.request(request).response, 30)
    finally:
        await context.shutdown()
    assert str(response.code) == "2.05 Content"
    assert hashlib.sha256(response.payload).hexdigest() == image.sha256


@pytest.mark.interop
@pytest.mark.skipif(COAP_CLIENT is None, reason="coap-client-notls (libcoap3-bin) not installed")
async def test_libcoap_pulls_byte_exact(
    fw_server: tuple[LwM2MServer, FirmwareImage], tmp_path: FsPath
) -> None:
    assert COAP_CLIENT is not None
    server, image = fw_server
    out_file = tmp_path / "pulled.bin"
    proc = await asyncio.create_subprocess_exec(
        COAP_CLIENT,
        "-m",
        "get",
        "-b",
        "1024",
        "-o",
        str(out_file),
        f"coap://127.0.0.1:{server.coap_address[1]}/fw/{image.id}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    # libcoap exits 0 even on an error answer: the bytes decide.
    assert not re.search(rb"\b4\.\d\d\b", out), out
    assert out_file.is_file(), out
    assert hashlib.sha256(out_file.read_bytes()).hexdigest() == image.sha256


def _registration(address: tuple[str, int], *, secure: bool) -> Registration:
    from lwm2m.coap.peer import PeerIdentity

    return Registration(
        id="r1",
        endpoint="dev",
        address=address,
        lifetime_s=60,
        registered_at=0.0,
        updated_at=0.0,
        identity=PeerIdentity(psk_identity=b"dev") if secure else None,
    )


async def test_firmware_uri(tmp_path: FsPath) -> None:
    config = ServerConfig(host="0.0.0.0", coap_port=0)
    async with LwM2MServer(MemoryStores(), config=config) as server:
        port = server.coap_address[1]
        reg = _registration(("127.0.0.1", 40000), secure=False)
        assert server.firmware_uri("abc", reg, "coap") == f"coap://127.0.0.1:{port}/fw/abc"
        with pytest.raises(ValueError, match="http"):
            server.firmware_uri("abc", reg, "http")
        server.http_address = ("0.0.0.0", 8080)
        assert server.firmware_uri("abc", reg, "http") == "http://127.0.0.1:8080/fw/abc"
        with pytest.raises(ValueError, match="DTLS"):
            server.firmware_uri("abc", _registration(("127.0.0.1", 1), secure=True), "coap")
        with pytest.raises(ValueError, match="unknown"):
            server.firmware_uri("abc", reg, "ftp")
    config = ServerConfig(coap_port=0, public_host="fw.example.com")
    async with LwM2MServer(MemoryStores(), config=config) as server:
        uri = server.firmware_uri("abc", reg, "coap")
        assert uri == f"coap://fw.example.com:{server.coap_address[1]}/fw/abc"
