"""Bearer-token authentication and the bind warning."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from web_fakes import FakeBootstrap, FakeDevices, Running

from lwm2m.web.app import WebServer, build_app, check_bind

TOKEN = "s3cret-token"


@pytest.fixture
async def secured(devices: FakeDevices) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(devices, FakeBootstrap(), api_token=TOKEN, keepalive_s=0.2)
    web = WebServer(app, "127.0.0.1", 0)
    await web.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}", timeout=10) as http:
        yield http
    await web.stop()


PROTECTED = [
    ("GET", "/api/clients"),
    ("GET", "/api/clients/dev-1"),
    ("GET", "/api/clients/dev-1/3/0/9"),
    ("PUT", "/api/clients/dev-1/3/0/14"),
    ("GET", "/api/security/clients"),
    ("GET", "/api/bootstrap"),
    ("GET", "/api/objectspecs"),
    ("GET", "/api/server"),
    ("GET", "/api/event"),
    ("GET", "/metrics"),
]


@pytest.mark.parametrize(("method", "url"), PROTECTED)
async def test_every_api_route_needs_the_token(
    secured: httpx.AsyncClient, method: str, url: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        resp = await secured.request(method, url, headers=headers, json={"value": "x"})
        assert resp.status_code == 401, (url, headers)
        assert "token" in resp.json()["message"]


async def test_the_right_token_is_accepted(secured: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await secured.get("/api/clients", headers=auth)).status_code == 200
    assert (await secured.get("/api/clients/dev-1/3/0/9", headers=auth)).json()["content"][
        "value"
    ] == 87
    assert (await secured.get("/metrics", headers=auth)).status_code == 200
    async with secured.stream("GET", "/api/event", headers=auth) as stream:
        assert stream.status_code == 200


async def test_ui_and_openapi_stay_public(secured: httpx.AsyncClient) -> None:
    assert (await secured.get("/")).status_code == 200
    assert (await secured.get("/js/api.js")).status_code == 200
    schema = (await secured.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["paths"]["/api/clients"]["get"]["security"] == [{"HTTPBearer": []}]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_warning(host: str) -> None:
    assert check_bind(host, None) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.5", "example.org"])
def test_open_bind_without_token_warns(host: str) -> None:
    warning = check_bind(host, None)
    assert warning is not None and "--api-token" in warning
    assert check_bind(host, "token") is None


async def test_cross_origin_writes_are_refused(running: Running) -> None:
    url = "/api/clients/dev-1/3/0/4"
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    resp = await running.http.post(url, content="", headers=evil)
    assert resp.status_code == 403
    assert resp.json()["message"] == "cross-origin request refused"
    assert not any(c[0] == "execute" for c in running.devices.calls)
    assert (
        await running.http.put(
            "/api/clients/dev-1/3/0/14", json={"value": "x"}, headers={"Origin": "null"}
        )
    ).status_code == 403
    # Same origin (the UI itself) and no Origin at all (curl, scripts) are fine; reads too.
    host = running.base_url.removeprefix("http://")
    assert (await running.http.post(url, headers={"Origin": f"http://{host}"})).status_code == 200
    assert (await running.http.post(url)).status_code == 200
    assert (
        await running.http.get("/api/clients", headers={"Origin": "http://evil.example"})
    ).status_code == 200


async def test_host_names_need_a_token(running: Running, secured: httpx.AsyncClient) -> None:
    rebound = {"Host": "attacker.example:8080"}
    resp = await running.http.get("/api/clients", headers=rebound)
    assert resp.status_code == 403 and "--api-token" in resp.json()["message"]
    assert (await running.http.get("/", headers=rebound)).status_code == 403
    for host in ("localhost:8080", "127.0.0.1", "[::1]:8080", "dev.localhost"):
        assert (await running.http.get("/api/clients", headers={"Host": host})).status_code == 200
    # With a token the name does not matter: the token is what protects the API.
    auth = {"Authorization": f"Bearer {TOKEN}", **rebound}
    assert (await secured.get("/api/clients", headers=auth)).status_code == 200
