"""``lwm2m firmware``: on a data directory (server stopped) and through the REST API."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path as FsPath

import pytest

from lwm2m.cli import main
from lwm2m.server.firmware import FirmwareRepository
from lwm2m.stores import open_stores
from lwm2m.stores.memory import MemoryStores
from lwm2m.web.app import WebServer, build_app

IMAGE = b"LWM2MFW1 4.2\n" + bytes(range(256)) * 100


async def _lwm2m(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lwm2m",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_data_dir_mode_is_what_the_server_loads(tmp_path: FsPath) -> None:
    file = tmp_path / "app.bin"
    file.write_bytes(IMAGE)
    data = tmp_path / "data"
    code, out, err = await _lwm2m(
        "firmware", "--data-dir", str(data), "add", str(file), "--version", "4.2",
        "--target", "/3/0/1=Model X",
    )  # fmt: skip
    assert code == 0, err
    image = json.loads(out)
    assert image["name"] == "app.bin" and image["target"] == {"/3/0/1": "Model X"}
    code, out, _ = await _lwm2m("firmware", "--data-dir", str(data), "list")
    assert code == 0 and out.split()[:3] == [image["id"], "app.bin", "4.2"]
    stores = await open_stores("sqlite", data)
    try:
        repo = await FirmwareRepository.open(stores.documents, data)
        stored = await repo.get(image["id"])
        assert stored is not None and stored.sha256 == hashlib.sha256(IMAGE).hexdigest()
    finally:
        await stores.close()
    code, _, err = await _lwm2m("firmware", "--data-dir", str(data), "add", str(file))
    assert code == 2 and "--version" in err
    code, _, err = await _lwm2m(
        "firmware", "--data-dir", str(data), "add", str(tmp_path / "none"), "--version", "1"
    )
    assert code == 1 and "none" in err
    code, _, _ = await _lwm2m("firmware", "--data-dir", str(data), "delete", image["id"])
    assert code == 0
    code, _, err = await _lwm2m("firmware", "--data-dir", str(data), "delete", image["id"])
    assert code == 1 and "no firmware image" in err


async def test_rest_mode(tmp_path: FsPath, capsys: pytest.CaptureFixture[str]) -> None:
    repo = await FirmwareRepository.open(MemoryStores().documents, tmp_path)
    web = WebServer(build_app(None, None, firmware=repo, api_token="t0k"), "127.0.0.1", 0)
    await web.start()
    url = f"http://127.0.0.1:{web.port}"
    file = tmp_path / "app.bin"
    file.write_bytes(IMAGE)
    try:
        argv = ["firmware", "--url", url, "--token", "t0k", "add", str(file), "--version", "4.2"]
        assert await asyncio.to_thread(main, [*argv, "--name", "app"]) == 0
        image = json.loads(capsys.readouterr().out)
        assert (await repo.get(image["id"])) is not None
        assert await asyncio.to_thread(main, ["firmware", "--url", url, "list"]) == 1
        assert "401" in capsys.readouterr().err
        assert (
            await asyncio.to_thread(main, ["firmware", "--url", url, "--token", "t0k", "list"]) == 0
        )
        assert capsys.readouterr().out.split()[:3] == [image["id"], "app", "4.2"]
        delete = ["firmware", "--url", url, "--token", "t0k", "delete", image["id"]]
        assert await asyncio.to_thread(main, delete) == 0
        assert await repo.list() == []
    finally:
        await web.stop()


async def test_server_serves_what_the_data_dir_holds(tmp_path: FsPath) -> None:
    """Provision with ``--data-dir``, start ``lwm2m server``: REST, HTTP and CoAP see the image."""
    import re
    import signal

    import httpx
    from server_helpers import RawPeer, free_tcp_port

    from lwm2m.coap.codes import Code
    from lwm2m.coap.message import Message

    file = tmp_path / "app.bin"
    file.write_bytes(IMAGE)
    data = tmp_path / "data"
    code, out, err = await _lwm2m(
        "firmware", "--data-dir", str(data), "add", str(file), "--version", "4.2"
    )
    assert code == 0, err
    image_id = json.loads(out)["id"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lwm2m", "server", "--coap-port", "0", "--coaps-port", "0",
        "--http-port", str(free_tcp_port()), "--no-bootstrap", "--data", str(data),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    peer = await RawPeer.create()
    try:
        coap_port = http_port = 0
        while not (coap_port and http_port):
            line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
            assert line, "the server exited"
            if found := re.search(r"listening on coap://127\.0\.0\.1:(\d+)", line):
                coap_port = int(found.group(1))
            if found := re.search(r"REST API on http://127\.0\.0\.1:(\d+)", line):
                http_port = int(found.group(1))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            listed = (await http.get("/api/firmware")).json()
            assert [i["id"] for i in listed] == [image_id]
            assert (await http.get(f"/fw/{image_id}")).content == IMAGE
        reply = await peer.request(
            Message(Code.GET, uri_path=("fw", image_id)), ("127.0.0.1", coap_port)
        )
        assert reply.code == Code.CONTENT and reply.payload == IMAGE[:1024]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        peer.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
