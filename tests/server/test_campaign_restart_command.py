"""``lwm2m server`` stopped (SIGTERM) and started again mid-campaign: it resumes, updates nobody twice."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from pathlib import Path as FsPath
from typing import Any

import httpx
import pytest
from campaign_helpers import CountingInstaller, firmware, package, until

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig
from lwm2m.client.config import FactoryAccount as ClientServerConfig
from lwm2m.client.simulator import Simulator
from lwm2m.model.registry import default_registry

pytestmark = pytest.mark.slow


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _start_server(data: FsPath, coap_port: int, http_port: int) -> Any:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lwm2m", "server", "--coap-port", str(coap_port),
        "--coaps-port", "0", "--http-port", str(http_port), "--no-bootstrap",
        "--data", str(data),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        assert line, "the server exited"
        if re.search(r"REST API on http://127\.0\.0\.1:(\d+)", line):
            return proc


async def _stop_server(proc: Any) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_server_restart_resumes_the_campaign(tmp_path: FsPath) -> None:
    coap_port = _free_port(socket.SOCK_DGRAM)
    http_port = _free_port(socket.SOCK_STREAM)
    data = tmp_path / "data"
    release = asyncio.Event()
    installers: dict[str, CountingInstaller] = {}

    def held(client: LwM2MClient) -> None:
        installers[client.endpoint_name] = firmware(client).installer = CountingInstaller(release)

    proc = await _start_server(data, coap_port, http_port)
    config = ClientConfig(
        "dev",
        servers=(ClientServerConfig(f"coap://127.0.0.1:{coap_port}", lifetime_s=300),),
        local_host="127.0.0.1",
    )
    sim = Simulator(config, 4, registry=default_registry(), rate_per_s=1000, customize=held)
    await sim.start()
    base = f"http://127.0.0.1:{http_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:

            async def campaign() -> dict[str, Any]:
                answer: dict[str, Any] = (await http.get(f"/api/campaigns/{campaign_id}")).json()
                return answer

            await until(lambda: sim.summary().registered == 4)
            uploaded = await http.post(
                "/api/firmware",
                params={"name": "demo", "version": "2.0"},
                content=package("2.0"),
                headers={"Content-Type": "application/octet-stream"},
            )
            assert uploaded.status_code == 201, uploaded.text
            created = await http.post(
                "/api/campaigns",
                json={
                    "firmware": uploaded.json()["id"],
                    "filter": {"endpoint": "dev-*"},
                    "concurrency": 2,
                    "timeout": 40,
                },
            )
            assert created.status_code == 201, created.text
            campaign_id = created.json()["id"]
            async with asyncio.timeout(20):
                while sum(d["executed"] for d in (await campaign())["devices"]) < 2:
                    await asyncio.sleep(0.05)
            before = await campaign()
            executed = {d["endpoint"] for d in before["devices"] if d["executed"]}
            assert before["totals"]["pending"] == 2  # two wait for a slot

            await _stop_server(proc)
            proc = await _start_server(data, coap_port, http_port)
            release.set()
            async with asyncio.timeout(40):
                while (await campaign())["state"] != "finished":
                    await asyncio.sleep(0.1)
            after = await campaign()
    finally:
        release.set()
        await sim.stop()
        await _stop_server(proc)
    assert [d["state"] for d in after["devices"]] == ["updated"] * 4
    for endpoint, installer in installers.items():
        assert len(installer.installed) == 1, endpoint
        if endpoint in executed:
            assert installer.checks == 1, endpoint
