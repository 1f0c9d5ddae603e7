"""``/api/campaigns`` over a live server and simulated devices: bodies, control, SSE, metrics."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path as FsPath
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(FsPath(__file__).parents[1] / "server"))

from campaign_helpers import Rig, firmware, fleet, package, start_rig, until

from lwm2m.client.simulator import Simulator
from lwm2m.stores.memory import MemoryStores
from lwm2m.web.app import WebServer, create_app


class Live:
    def __init__(self, rig: Rig, sim: Simulator, http: httpx.AsyncClient) -> None:
        self.rig = rig
        self.sim = sim
        self.http = http


@pytest.fixture
async def live(tmp_path: FsPath) -> AsyncIterator[Live]:
    rig = await start_rig(MemoryStores(), tmp_path)
    web = WebServer(create_app(rig.server, None, campaigns=rig.campaigns), "127.0.0.1", 0)
    await web.start()
    rig.server.http_address = ("127.0.0.1", web.port)
    sim = fleet(rig.server, 3)
    await sim.start()
    try:
        await until(lambda: len(rig.server.registrations()) == 3)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}", timeout=20) as http:
            yield Live(rig, sim, http)
    finally:
        await sim.stop()
        await web.stop()
        await rig.stop()


async def upload(live: Live, version: str = "2.0") -> str:
    response = await live.http.post(
        "/api/firmware",
        params={"name": "demo", "version": version},
        content=package(version),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    image_id: str = response.json()["id"]
    return image_id


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        ("{}", "firmware"),
        ('{"firmware": "X", "endpoints": ["dev-0"]}', "no image"),
        ('{"firmware": "@", "endpoints": ["dev-0"], "filter": {}}', "either endpoints"),
        ('{"firmware": "@", "endpoints": []}', "endpoints"),
        ('{"firmware": "@", "endpoints": ["a", "a"]}', "twice"),
        ('{"firmware": "@", "filter": {"/3/x": "1"}}', "filter"),
        ('{"firmware": "@", "filter": {"endpoint": "nomatch-*"}}', "no registered device"),
        ('{"firmware": "@", "endpoints": ["dev-0"], "method": "ftp"}', "method"),
        ('{"firmware": "@", "endpoints": ["dev-0"], "concurrency": 0}', "concurrency"),
        ('{"firmware": "@", "endpoints": ["dev-0"], "timeout": -1}', "timeout"),
        ('{"firmware": "@", "endpoints": ["dev-0"], "retries": true}', "retries"),
        ('{"firmware": "@", "endpoints": ["dev-0"], "colour": "red"}', "unknown field"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(live: Live, body: str, message: str) -> None:
    image_id = await upload(live)
    response = await live.http.post(
        "/api/campaigns",
        content=body.replace("@", image_id),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]
    assert (await live.http.get("/api/campaigns")).json() == []


async def test_corrupted_image_refused_before_any_device_is_touched(live: Live) -> None:
    image_id = await upload(live)
    stored = live.rig.repository.directory / f"{image_id}.bin"
    data = bytearray(stored.read_bytes())
    data[100] ^= 0xFF
    stored.write_bytes(bytes(data))
    touched: list[str] = []
    live.rig.server.add_message_tracer(lambda direction, message, peer: touched.append(direction))
    response = await live.http.post(
        "/api/campaigns", json={"firmware": image_id, "filter": {"endpoint": "dev-*"}}
    )
    assert response.status_code == 422, response.text
    assert "corrupted" in response.json()["message"] and image_id in response.json()["message"]
    assert touched == []
    assert (await live.http.get("/api/campaigns")).json() == []
    for client in live.sim.clients:
        assert firmware(client).get(3) == 0 and firmware(client).package == b""


async def read_events(http: httpx.AsyncClient, sink: list[tuple[str, Any]]) -> None:
    async with http.stream("GET", "/api/event") as stream:
        kind = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                sink.append((kind, json.loads(line[6:])))


@pytest.mark.parametrize("method", ["push", "coap", "http"])
async def test_campaign_over_rest_with_events_and_metrics(live: Live, method: str) -> None:
    image_id = await upload(live)
    traced: list[str] = []
    live.rig.server.add_message_tracer(lambda direction, message, peer: traced.append(direction))
    events: list[tuple[str, Any]] = []
    reader = asyncio.create_task(read_events(live.http, events))
    try:
        await until(lambda: live.rig.campaigns._listeners != [])
        response = await live.http.post(
            "/api/campaigns",
            json={
                "firmware": image_id,
                "endpoints": ["dev-0", "dev-1", "dev-2"],
                "method": method,
                "concurrency": 2,
                "timeout": 20,
            },
        )
        assert response.status_code == 201, response.text
        campaign_id = response.json()["id"]
        async with asyncio.timeout(30):
            await live.rig.campaigns.wait_ended(campaign_id)
        await until(lambda: any(k == "CAMPAIGN" and d["state"] == "finished" for k, d in events))
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    assert traced  # the tracer sees campaign traffic (the corrupted-image test relies on it)
    shown = (await live.http.get(f"/api/campaigns/{campaign_id}")).json()
    assert shown["state"] == "finished" and shown["method"] == method
    assert shown["totals"]["updated"] == 3 and shown["totals"]["done"] == 3
    assert [d["state"] for d in shown["devices"]] == ["updated"] * 3
    assert all(d["attempts"] == 1 and d["lastResult"] == 1 for d in shown["devices"])
    results = {
        d["endpoint"] for k, d in events if k == "CAMPAIGN_DEVICE" and d["state"] == "updated"
    }
    assert results == {"dev-0", "dev-1", "dev-2"}
    listed = (await live.http.get("/api/campaigns")).json()
    assert [c["id"] for c in listed] == [campaign_id]
    metrics = (await live.http.get("/metrics")).text
    assert "lwm2m_campaign_devices_updated_total 3" in metrics
    assert "lwm2m_campaigns_started_total 1" in metrics


async def test_pause_resume_cancel_answers(live: Live) -> None:
    image_id = await upload(live)
    # A device that never answers keeps the campaign running while we steer it.
    response = await live.http.post(
        "/api/campaigns",
        json={"firmware": image_id, "endpoints": ["absent-device"], "timeout": 60},
    )
    assert response.status_code == 201, response.text
    campaign_id = response.json()["id"]
    base = f"/api/campaigns/{campaign_id}"
    assert (await live.http.post(f"{base}/resume")).status_code == 409
    paused = await live.http.post(f"{base}/pause")
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    assert (await live.http.delete(f"/api/firmware/{image_id}")).status_code == 409
    resumed = await live.http.post(f"{base}/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "running"
    cancelled = await live.http.post(f"{base}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    async with asyncio.timeout(10):
        await live.rig.campaigns.wait_ended(campaign_id)
    shown = (await live.http.get(base)).json()
    assert shown["devices"][0]["state"] == "cancelled"
    assert (await live.http.post(f"{base}/cancel")).status_code == 409
    assert (await live.http.get("/api/campaigns/nope")).status_code == 404
    assert (await live.http.post("/api/campaigns/nope/pause")).status_code == 404
