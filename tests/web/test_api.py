"""REST routes over in-memory backends, through a real uvicorn server and httpx."""

from __future__ import annotations

import base64

import httpx
from web_fakes import Running

from lwm2m.model.nodes import ObjectInstance, Resource
from lwm2m.model.path import Path
from lwm2m.web.backend import DeviceTimeout


async def test_list_and_get_clients(running: Running) -> None:
    resp = await running.http.get("/api/clients")
    assert resp.status_code == 200
    (client,) = resp.json()
    assert client["endpoint"] == "dev-1"
    assert client["registrationId"] == "reg-dev-1"
    assert client["lwM2mVersion"] == "1.1"
    assert client["bindingMode"] == "U"
    assert client["lifetime"] == 300
    assert client["queuemode"] is False
    assert {"url": "/3/0", "attributes": {}} in client["objectLinks"]
    one = await running.http.get("/api/clients/dev-1")
    assert one.json() == client


async def test_unknown_client_is_404_with_message(running: Running) -> None:
    for method, url in [
        ("GET", "/api/clients/nobody"),
        ("GET", "/api/clients/nobody/3/0/1"),
        ("PUT", "/api/clients/nobody/3/0/14"),
        ("DELETE", "/api/clients/nobody/3/0"),
        ("POST", "/api/clients/nobody/3/0/4/observe"),
    ]:
        resp = await running.http.request(method, url, json={"value": 1})
        assert resp.status_code == 404, (method, url)
        assert "nobody" in resp.json()["message"]


async def test_read_resource_typed_with_code(running: Running) -> None:
    resp = await running.http.get("/api/clients/dev-1/3/0/9")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "CONTENT"
    assert body["code"] == "2.05"
    assert body["success"] is True
    assert body["content"]["value"] == 87
    assert body["content"]["name"] == "Battery Level"
    assert body["content"]["units"] == "%"


async def test_read_instance_and_object(running: Running) -> None:
    inst = (await running.http.get("/api/clients/dev-1/3303/0")).json()["content"]
    assert inst["kind"] == "instance"
    values = {r["id"]: r["value"] for r in inst["resources"]}
    assert values == {5700: 21.5, 5701: "Cel"}
    obj = (await running.http.get("/api/clients/dev-1/3")).json()["content"]
    assert obj["kind"] == "object" and obj["instances"][0]["id"] == 0


async def test_read_passes_format_and_timeout(running: Running) -> None:
    resp = await running.http.get("/api/clients/dev-1/3/0/9?format=SENML_JSON&timeout=2")
    assert resp.status_code == 200
    _, _, (path, fmt, timeout) = running.devices.calls[-1]
    assert path == Path.parse("/3/0/9")
    assert int(fmt) == 110
    assert timeout == 2.0


async def test_bad_path_format_timeout_are_400(running: Running) -> None:
    for url in [
        "/api/clients/dev-1/3/x/1",
        "/api/clients/dev-1/3/0/1/2/3",
        "/api/clients/dev-1/99999999",
        "/api/clients/dev-1/3/0/1?format=XML",
        "/api/clients/dev-1/3/0/1?timeout=-1",
        "/api/clients/dev-1/3/0/1?timeout=abc",
    ]:
        resp = await running.http.get(url)
        assert resp.status_code == 400, url
        assert resp.json()["message"]


async def test_device_error_is_502_with_coap_code(running: Running) -> None:
    resp = await running.http.get("/api/clients/dev-1/5/0/1")
    assert resp.status_code == 502
    assert resp.json() == {
        "message": "device answered 4.04 Not Found",
        "status": "NOT_FOUND",
        "code": "4.04",
    }


async def test_device_timeout_is_504(running: Running) -> None:
    running.devices.timeout_endpoints.add("dev-1")
    resp = await running.http.get("/api/clients/dev-1/3/0/9")
    assert resp.status_code == 504
    assert "no answer" in resp.json()["message"]


async def test_write_resource_value(running: Running) -> None:
    resp = await running.http.put("/api/clients/dev-1/3/0/14", json={"value": "+02"})
    assert resp.status_code == 200
    assert resp.json()["status"] == "CHANGED"
    _, _, (path, node, replace) = running.devices.calls[-1]
    assert path == Path.parse("/3/0/14") and replace is True
    assert node == Resource.single(14, "+02", node.type)
    read = await running.http.get("/api/clients/dev-1/3/0/14")
    assert read.json()["content"]["value"] == "+02"


async def test_write_checks_the_model_type(running: Running) -> None:
    # /1/0/1 (Lifetime) is an Integer: a string is refused before anything is sent.
    calls = len(running.devices.calls)
    resp = await running.http.put("/api/clients/dev-1/1/0/1", json={"value": "soon"})
    assert resp.status_code == 400
    assert "/1/0/1" in resp.json()["message"]
    assert len(running.devices.calls) == calls


async def test_write_partial_instance(running: Running) -> None:
    body = {"resources": [{"id": 1, "value": 600}]}
    resp = await running.http.put("/api/clients/dev-1/1/0?replace=false", json=body)
    assert resp.status_code == 200
    _, _, (path, node, replace) = running.devices.calls[-1]
    assert path == Path.parse("/1/0") and replace is False
    assert isinstance(node, ObjectInstance) and node.resources[1].value == 600


async def test_write_rejects_bad_bodies(running: Running) -> None:
    for content in [b"", b"{not json", b"[1, 2]", b'{"value": 1, "instances": {}}']:
        resp = await running.http.put(
            "/api/clients/dev-1/3/0/14",
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 400, content
    resp = await running.http.put("/api/clients/dev-1/3/0/14?replace=false", json={"value": "x"})
    assert resp.status_code == 400


async def test_opaque_values_are_base64(running: Running) -> None:
    running.devices.values["dev-1"][Path.parse("/5/0/0")] = b"\x00\xff"
    resp = await running.http.get("/api/clients/dev-1/5/0/0")
    assert resp.json()["content"]["value"] == base64.b64encode(b"\x00\xff").decode()


async def test_execute_with_text_or_json_arguments(running: Running) -> None:
    resp = await running.http.post("/api/clients/dev-1/3/0/4", content="0='a',1")
    assert resp.status_code == 200 and resp.json()["status"] == "CHANGED"
    assert running.devices.calls[-1] == ("execute", "dev-1", (Path.parse("/3/0/4"), "0='a',1"))
    await running.http.post("/api/clients/dev-1/3/0/4", json={"arguments": "5"})
    assert running.devices.calls[-1][2] == (Path.parse("/3/0/4"), "5")
    await running.http.post("/api/clients/dev-1/3/0/4")
    assert running.devices.calls[-1][2] == (Path.parse("/3/0/4"), None)


async def test_create_on_object(running: Running) -> None:
    body = {"id": 1, "resources": [{"id": 5700, "value": 3.5}]}
    resp = await running.http.post("/api/clients/dev-1/3303", json=body)
    assert resp.status_code == 200
    assert resp.json()["status"] == "CREATED"
    assert resp.json()["location"] == "/3303/1"
    read = await running.http.get("/api/clients/dev-1/3303/1/5700")
    assert read.json()["content"]["value"] == 3.5


async def test_post_on_instance_is_400(running: Running) -> None:
    resp = await running.http.post("/api/clients/dev-1/3/0", json={})
    assert resp.status_code == 400


async def test_delete_instance(running: Running) -> None:
    resp = await running.http.delete("/api/clients/dev-1/3303/0")
    assert resp.status_code == 200 and resp.json()["status"] == "DELETED"
    assert (await running.http.get("/api/clients/dev-1/3303/0")).status_code == 502
    assert (await running.http.delete("/api/clients/dev-1/3303")).status_code == 400


async def test_discover(running: Running) -> None:
    resp = await running.http.get("/api/clients/dev-1/3303/0/discover")
    assert resp.status_code == 200
    links = resp.json()["objectLinks"]
    assert links[0] == {"url": "/3303/0", "attributes": {"pmin": "10"}}
    assert {"url": "/3303/0/5700", "attributes": {}} in links


async def test_write_attributes(running: Running) -> None:
    resp = await running.http.put("/api/clients/dev-1/3303/0/5700/attributes?pmin=5&pmax=60&st=0.5")
    assert resp.status_code == 200
    op, _, (path, update) = running.devices.calls[-1]
    assert op == "write_attributes" and path == Path.parse("/3303/0/5700")
    assert dict(update.set) == {"pmin": 5, "pmax": 60, "st": 0.5}
    resp = await running.http.put("/api/clients/dev-1/3303/0/5700/attributes?pmin")
    assert resp.status_code == 200
    assert running.devices.calls[-1][2][1].remove == ("pmin",)
    for bad in ["", "?pmin=x", "?bogus=1", "?pmin=9&pmax=1"]:
        resp = await running.http.put(f"/api/clients/dev-1/3303/0/5700/attributes{bad}")
        assert resp.status_code == 400, bad


async def test_composite_read_and_write(running: Running) -> None:
    resp = await running.http.get("/api/clients/dev-1/composite?paths=/3/0/9,/3303/0/5700,/3/0/99")
    assert resp.status_code == 200
    content = resp.json()["compositeContent"]
    assert content["/3/0/9"]["value"] == 87
    assert content["/3303/0/5700"]["value"] == 21.5
    assert content["/3/0/99"] is None
    resp = await running.http.put(
        "/api/clients/dev-1/composite", json={"/3/0/14": {"value": "+05"}, "/1/0/1": {"value": 60}}
    )
    assert resp.status_code == 200
    assert running.devices.values["dev-1"][Path.parse("/3/0/14")] == "+05"
    assert running.devices.values["dev-1"][Path.parse("/1/0/1")] == 60
    assert (await running.http.get("/api/clients/dev-1/composite?paths=")).status_code == 400
    assert (await running.http.put("/api/clients/dev-1/composite", json={})).status_code == 400


async def test_observe_and_cancel(running: Running) -> None:
    resp = await running.http.post("/api/clients/dev-1/3303/0/5700/observe")
    assert resp.status_code == 200
    assert resp.json()["content"]["value"] == 21.5
    resp = await running.http.delete("/api/clients/dev-1/3303/0/5700/observe")
    assert resp.json() == {"cancelled": 1}
    resp = await running.http.delete("/api/clients/dev-1/3303/0/5700/observe")
    assert resp.json() == {"cancelled": 0}


async def test_object_specs_for_a_client(running: Running) -> None:
    specs = (await running.http.get("/api/objectspecs/dev-1")).json()
    assert [s["id"] for s in specs] == [1, 3, 3303]
    device = specs[1]
    assert device["name"] == "Device"
    battery = next(r for r in device["resources"] if r["id"] == 9)
    assert battery["units"] == "%" and battery["type"] == "Integer" and battery["operations"] == "R"
    assert (await running.http.get("/api/objectspecs/nobody")).status_code == 404


async def test_security_crud_hides_keys(running: Running) -> None:
    entry = {"endpoint": "dev-2", "psk": {"identity": "dev-2-id", "key": "00112233"}}
    resp = await running.http.put("/api/security/clients", json=entry)
    assert resp.status_code == 200
    assert resp.json() == {"endpoint": "dev-2", "psk": {"identity": "dev-2-id"}, "x509": None}
    stored = running.devices.security["dev-2"]
    assert stored.psk is not None and stored.psk.key == bytes.fromhex("00112233")
    listing = (await running.http.get("/api/security/clients")).json()
    assert listing == [resp.json()]
    assert "00112233" not in (await running.http.get("/api/security/clients/dev-2")).text
    clash = {"endpoint": "dev-3", "psk": {"identity": "dev-2-id", "key": "00"}}
    assert (await running.http.post("/api/security/clients", json=clash)).status_code == 400
    bad_key = {"endpoint": "dev-3", "psk": {"identity": "x", "key": "xyz"}}
    assert (await running.http.put("/api/security/clients", json=bad_key)).status_code == 400
    neither = {"endpoint": "dev-3"}
    assert (await running.http.put("/api/security/clients", json=neither)).status_code == 400
    assert (await running.http.delete("/api/security/clients/dev-2")).status_code == 204
    assert (await running.http.delete("/api/security/clients/dev-2")).status_code == 404


async def test_bootstrap_configs_sessions_and_push(running: Running) -> None:
    config = {"servers": [{"short_server_id": 101, "uri": "coap://127.0.0.1:5683"}]}
    assert (await running.http.put("/api/bootstrap/dev-9", json=config)).status_code == 200
    assert (await running.http.get("/api/bootstrap")).json() == {"dev-9": config}
    assert (await running.http.get("/api/bootstrap/dev-9")).json() == config
    assert (await running.http.post("/api/bootstrap/dev-9", json={"nope": 1})).status_code == 400
    resp = await running.http.post("/api/bootstrap/dev-9/push?address=127.0.0.1:5690")
    assert resp.status_code == 200
    assert resp.json()["address"] == "127.0.0.1:5690"
    sessions = (await running.http.get("/api/bootstrap/sessions?ep=dev-9")).json()
    assert sessions[-1]["result"] == "finished"
    assert (await running.http.post("/api/bootstrap/dev-9/push?address=nowhere")).status_code == 400
    assert (await running.http.post("/api/bootstrap/other/push?address=h:1")).status_code == 404
    running.bootstrap.push_result = DeviceTimeout("client did not answer Bootstrap-Finish")
    resp = await running.http.post("/api/bootstrap/dev-9/push?address=127.0.0.1:5690")
    assert resp.status_code == 504
    assert resp.json()["message"] == "client did not answer Bootstrap-Finish"
    assert (await running.http.delete("/api/bootstrap/dev-9")).status_code == 204
    assert (await running.http.get("/api/bootstrap/dev-9")).status_code == 404


async def test_metrics_exposition(running: Running) -> None:
    await running.http.get("/api/clients/dev-1/3/0/9")
    await running.http.get("/api/clients/dev-1/9/0/0")
    text = (await running.http.get("/metrics")).text
    assert "# TYPE lwm2m_registrations gauge\nlwm2m_registrations 1\n" in text
    assert 'lwm2m_requests_total{operation="read",result="success"} 1' in text
    assert 'lwm2m_requests_total{operation="read",result="device_error"} 1' in text
    assert "# TYPE lwm2m_dtls_handshakes_total counter\nlwm2m_dtls_handshakes_total 3" in text
    assert "lwm2m_bootstrap_configs 0" in text


async def test_ui_and_docs_are_served(running: Running) -> None:
    index = await running.http.get("/")
    assert index.status_code == 200 and '<main id="view"' in index.text
    assert (await running.http.get("/js/app.js")).status_code == 200
    assert (await running.http.get("/style.css")).status_code == 200
    assert (await running.http.get("/docs")).status_code == 200
    schema = (await running.http.get("/openapi.json")).json()
    assert "/api/clients/{endpoint}/{path}" in schema["paths"]
    assert "Client" in schema["components"]["schemas"]


async def test_composite_observe_and_cancel(running: Running) -> None:
    url = "/api/clients/dev-1/composite/observe?paths=/3/0/9,/3303/0/5700"
    resp = await running.http.post(url)
    assert resp.status_code == 200
    assert resp.json()["compositeContent"]["/3303/0/5700"]["value"] == 21.5
    assert (await running.http.delete(url)).json() == {"cancelled": 1}
    assert (await running.http.delete(url)).json() == {"cancelled": 0}
    assert (
        await running.http.post("/api/clients/dev-1/composite/observe?paths=x")
    ).status_code == 400


async def test_leshan_node_json_is_accepted(running: Running) -> None:
    """Bodies in Leshan's demo-server shape work unchanged."""
    tree = running.devices.values["dev-1"]
    single = {"id": 14, "kind": "singleResource", "type": "string", "value": "+04"}
    assert (await running.http.put("/api/clients/dev-1/3/0/14", json=single)).status_code == 200
    assert tree[Path.parse("/3/0/14")] == "+04"
    # Integers travel as strings in Leshan's JSON.
    lifetime = {"id": 1, "kind": "singleResource", "type": "integer", "value": "600"}
    assert (await running.http.put("/api/clients/dev-1/1/0/1", json=lifetime)).status_code == 200
    assert tree[Path.parse("/1/0/1")] == 600
    instance = {
        "id": 0,
        "kind": "instance",
        "resources": [{"id": 1, "kind": "singleResource", "type": "integer", "value": "90"}],
    }
    resp = await running.http.put("/api/clients/dev-1/1/0?replace=false", json=instance)
    assert resp.status_code == 200
    assert tree[Path.parse("/1/0/1")] == 90
    # Opaque as hex.
    tree[Path.parse("/5/0/0")] = b""
    package = {"id": 0, "kind": "singleResource", "type": "opaque", "value": "00ff10"}
    assert (await running.http.put("/api/clients/dev-1/5/0/0", json=package)).status_code == 200
    assert tree[Path.parse("/5/0/0")] == b"\x00\xff\x10"
    bad = {"id": 1, "kind": "singleResource", "type": "integer", "value": "ten"}
    resp = await running.http.put("/api/clients/dev-1/1/0/1", json=bad)
    assert resp.status_code == 400 and "not an integer" in resp.json()["message"]


async def test_leshan_multi_resource_and_create(running: Running) -> None:
    multi = {
        "id": 7,
        "kind": "multiResource",
        "type": "integer",
        "values": {"0": "3800", "1": "5000"},
    }
    resp = await running.http.put("/api/clients/dev-1/3/0/7", json=multi)
    _, _, (_path, node, _replace) = running.devices.calls[-1]
    assert resp.status_code == 200
    assert isinstance(node, Resource) and dict(node.instances or {}) == {0: 3800, 1: 5000}
    read = (await running.http.get("/api/clients/dev-1/3/0/7")).json()["content"]
    assert read["instances"] == {"0": 3800, "1": 5000}
    create = {
        "id": 2,
        "kind": "instance",
        "resources": [{"id": 5700, "kind": "singleResource", "type": "float", "value": "4.5"}],
    }
    resp = await running.http.post("/api/clients/dev-1/3303", json=create)
    assert resp.status_code == 200 and resp.json()["location"] == "/3303/2"
    assert running.devices.values["dev-1"][Path.parse("/3303/2/5700")] == 4.5


async def test_bootstrap_only_app_has_no_client_routes() -> None:
    from web_fakes import FakeBootstrap

    from lwm2m.web.app import WebServer, build_app

    web = WebServer(build_app(None, FakeBootstrap()), "127.0.0.1", 0)
    await web.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}") as http:
            info = (await http.get("/api/server")).json()
            assert info["lwm2mServer"] is False and info["bootstrapServer"] is True
            assert (await http.get("/api/clients")).status_code == 404
            assert (await http.get("/api/bootstrap")).json() == {}
            metrics = (await http.get("/metrics")).text
            assert "lwm2m_registrations" not in metrics
            assert "lwm2m_bootstrap_configs 0" in metrics
    finally:
        await web.stop()


async def test_oversized_bodies_are_refused(running: Running) -> None:
    big = b'{"value": "' + b"x" * (1 << 20) + b'"}'
    resp = await running.http.put(
        "/api/clients/dev-1/3/0/14", content=big, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400 and "larger than" in resp.json()["message"]

    async def chunks():  # no Content-Length: the limit applies while streaming
        for _ in range(40):
            yield b"x" * 50_000

    resp = await running.http.post("/api/clients/dev-1/3/0/4", content=chunks())
    assert resp.status_code == 400 and "larger than" in resp.json()["message"]


async def test_leshan_security_shapes(running: Running) -> None:
    v1 = {"endpoint": "les-1", "x509": True}
    assert (await running.http.put("/api/security/clients", json=v1)).status_code == 200
    assert running.devices.security["les-1"].x509 is not None
    v2 = {
        "endpoint": "les-2",
        "tls": {"mode": "psk", "details": {"identity": "les-2", "key": "0102"}},
    }
    resp = await running.http.put("/api/security/clients", json=v2)
    assert resp.status_code == 200 and resp.json()["psk"] == {"identity": "les-2"}
    assert running.devices.security["les-2"].psk.key == b"\x01\x02"
    rpk = {"endpoint": "les-3", "tls": {"mode": "rpk", "details": {}}}
    assert (await running.http.put("/api/security/clients", json=rpk)).status_code == 400
