"""The Bootstrap Server through the REST API (lwm2m.web): configs, push, sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from bs_rawpeer import RawPeer

from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.coap.codes import Code

CONFIG = {
    "servers": [
        {
            "short_server_id": 101,
            "uri": "coaps://127.0.0.1:5684",
            "security": {"mode": "psk", "identity": "dev-1", "key": "a0a1a2"},
        }
    ],
    "discover": False,
}


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, BootstrapServer]]:
    from lwm2m.web.app import create_app

    bs = BootstrapServer(request_timeout_s=0.5)
    await bs.start("127.0.0.1", 0)
    app = create_app(None, bs)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as http:
        yield http, bs
    await bs.close()


async def _answer_all(peer: RawPeer, code_for_put: Code = Code.CHANGED) -> None:
    while True:
        msg, source = await peer.receive()
        if msg.code == Code.PUT:
            peer.answer(msg, source, code_for_put)
            if code_for_put != Code.CHANGED:
                return
        elif msg.code == Code.POST:
            peer.answer(msg, source, Code.CHANGED)
            return
        else:
            peer.answer(msg, source, Code.DELETED)


async def test_config_crud_and_push(
    api: tuple[httpx.AsyncClient, BootstrapServer], raw_peer: RawPeer
) -> None:
    http, bs = api
    r = await http.put("/api/bootstrap/dev-1", json=CONFIG)
    assert r.status_code == 200, r.text
    assert r.json()["servers"][0]["security"]["key"] == "<hidden>"
    bad = await http.put(
        "/api/bootstrap/dev-2", json={"servers": [{"short_server_id": 0, "uri": "coap://h"}]}
    )
    assert bad.status_code == 400 and "servers[0].short_server_id" in bad.text
    address = f"127.0.0.1:{raw_peer.address[1]}"
    answering = asyncio.create_task(_answer_all(raw_peer))
    r = await http.post("/api/bootstrap/dev-1/push", params={"address": address})
    await answering
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "finished"
    # The stored key was not replaced by "<hidden>" on the way.
    assert bs.configs.get("dev-1") is not None
    assert bs.configs.get("dev-1").servers[0].security.secret_key == b"\xa0\xa1\xa2"  # type: ignore[union-attr]
    sessions = (await http.get("/api/bootstrap/sessions", params={"ep": "dev-1"})).json()
    assert sessions[0]["status"] == "finished"


async def test_push_failures_map_to_502_and_504(
    api: tuple[httpx.AsyncClient, BootstrapServer], raw_peer: RawPeer
) -> None:
    http, _ = api
    await http.put("/api/bootstrap/dev-1", json=CONFIG)
    address = f"127.0.0.1:{raw_peer.address[1]}"
    answering = asyncio.create_task(_answer_all(raw_peer, Code.BAD_REQUEST))
    r = await http.post("/api/bootstrap/dev-1/push", params={"address": address})
    await answering
    assert r.status_code == 502, r.text
    silent = await http.post("/api/bootstrap/dev-1/push", params={"address": "127.0.0.1:9"})
    assert silent.status_code == 504, silent.text
    unknown = await http.post("/api/bootstrap/nobody/push", params={"address": address})
    assert unknown.status_code == 404
