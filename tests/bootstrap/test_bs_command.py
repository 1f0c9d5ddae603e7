"""``lwm2m bootstrap`` and the embedded start used by ``lwm2m server``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path as FsPath

from bs_rawpeer import RawPeer

from lwm2m.bootstrap.embedded import start, start_embedded
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.stores.memory import MemoryStores

CONFIG = {
    "clients": {"dev-1": {"servers": [{"short_server_id": 1, "uri": "coap://127.0.0.1:5683"}]}}
}


def run_bootstrap(*options: str) -> subprocess.CompletedProcess[str]:
    """``lwm2m bootstrap`` on free ports with ``options``; it is expected to stop by itself."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lwm2m",
            "bootstrap",
            "--coap-port",
            "0",
            "--coaps-port",
            "0",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_config_exits_2_with_the_field(tmp_path: FsPath) -> None:
    file = tmp_path / "bs.json"
    file.write_text(
        json.dumps({"clients": {"dev-1": {"servers": [{"short_server_id": 0, "uri": "coap://h"}]}}})
    )
    proc = run_bootstrap("--config", str(file))
    assert proc.returncode == 2
    assert "clients['dev-1'].servers[0].short_server_id: 0 out of range 1-65534" in proc.stderr


def test_bad_models_directory_exits_2_with_file_and_line(tmp_path: FsPath) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.xml").write_text("<LWM2M><Object><ObjectID>x</ObjectID>")
    proc = run_bootstrap("--models", str(models))
    assert proc.returncode == 2
    assert "--models" in proc.stderr and "broken.xml" in proc.stderr


def test_bad_security_file_exits_2_in_both_server_commands(tmp_path: FsPath) -> None:
    security = tmp_path / "security.json"
    security.write_text('[{"endpoint": "dev-1", "psk": {"identity": "id"}}]')
    standalone = run_bootstrap("--security", str(security))
    embedded = subprocess.run(
        [
            *(sys.executable, "-m", "lwm2m", "server", "--coap-port", "0", "--coaps-port", "0"),
            *("--http-port", "0", "--store", "memory", "--security", str(security)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    for proc in (standalone, embedded):
        assert proc.returncode == 2, proc.stderr
        assert str(security) in proc.stderr and "Traceback" not in proc.stderr


async def test_embedded_start_uses_the_servers_model(tmp_path: FsPath) -> None:
    from lwm2m.model.registry import ModelRegistry

    class FakeServer:
        model = ModelRegistry()

        def add_registration_listener(self, *_: object) -> None: ...

    bs = await start_embedded(MemoryStores(), coap_port=0, model=FakeServer.model)
    try:
        assert bs.model is FakeServer.model
    finally:
        await bs.close()


async def test_embedded_start_serves_loaded_config(tmp_path: FsPath, raw_peer: RawPeer) -> None:
    file = tmp_path / "bs.json"
    file.write_text(json.dumps(CONFIG))
    stores = MemoryStores()
    bs = await start_embedded(stores, coap_port=0, config_file=str(file))
    try:
        assert bs.coap_address is not None and bs.coaps_address is None
        response = await raw_peer.request(
            Message(Code.POST, uri_path=("bs",), uri_query=("ep=dev-1",)), bs.coap_address
        )
        assert response.code == Code.CHANGED
        # The configuration went to the document store (survives with SQLite/Redis).
        assert await stores.documents.get("bootstrap-config", "dev-1") is not None
    finally:
        await bs.close()


async def test_server_hook_reads_its_options() -> None:
    stores = MemoryStores()
    args = argparse.Namespace(host="127.0.0.1", bootstrap_coap_port=0, no_bootstrap=False)
    bs = await start(args, stores)
    try:
        assert bs.coap_address is not None and bs.coap_address[1] != 0
    finally:
        await bs.stop()


async def test_command_serves_until_sigterm(tmp_path: FsPath, raw_peer: RawPeer) -> None:
    import asyncio
    import re
    import signal

    file = tmp_path / "bs.json"
    file.write_text(json.dumps(CONFIG))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lwm2m",
        "bootstrap",
        "--coap-port",
        "0",
        "--coaps-port",
        "0",
        "--config",
        str(file),
        "--data",
        str(tmp_path / "data"),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        port = None
        while port is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "the command ended before serving"
            match = re.search(r"bootstrap server on coap 127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
        response = await raw_peer.request(
            Message(Code.POST, uri_path=("bs",), uri_query=("ep=unknown",)), ("127.0.0.1", port)
        )
        assert response.code == Code.BAD_REQUEST
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert (tmp_path / "data" / "lwm2m.sqlite3").exists()  # history and configs persisted
