"""Write-like REST bodies: ours, the ones Leshan's demo servers accept, and real refusals.

The Leshan bodies below are written from Leshan's own sources (eclipse-leshan/leshan):
the demo server's Vue client builds them in ``webapp/src/js/restutils.js``
(``singleInstanceResourceToREST``, ``multiInstanceResourceToREST``,
``resourceInstanceToREST``, ``instanceToREST``; text fields give strings,
``BooleanValueInput`` booleans, ``DateTimeValueInput`` epoch milliseconds,
``OpaqueValueInput`` hex, ``ObjLinkValueInput`` ``{objectId, objectInstanceId}``,
``InstanceCreateDialog`` the instance ID as typed text), ``CompositeObjectControl.vue``
maps paths to ``singleValueToREST`` nodes, ``JacksonLwM2mNodeDeserializer`` reads ``id``
with ``asInt`` and numeric types from strings or numbers; the security UI PUTs
``{"endpoint", "tls": {"mode", "details"}}`` to ``api/security/clients/``; the bootstrap
UI (``BootstrapView.vue`` ``addConfig`` + ``bsconfigutil.js`` ``configFromUIToRest``) POSTs
its ``BootstrapConfig`` with servers and security keyed by instance ID and byte arrays.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from web_fakes import Live, Running

from lwm2m.model.nodes import ObjectInstance, Resource, ResourceInstance
from lwm2m.model.path import Path
from lwm2m.model.registry import default_registry
from lwm2m.model.types import ObjectLink, ResourceType
from lwm2m.web.backend import InvalidInput
from lwm2m.web.request_bodies import (
    bootstrap_doc,
    create_instance_id,
    looks_like_leshan_config,
    node_from_body,
)

MODEL = default_registry()
UTC = datetime.UTC


def present(running: Running, *paths: str) -> None:
    """Give the fake device these resources (it answers 4.04 to a Write elsewhere)."""
    for path in paths:
        running.devices.values["dev-1"].setdefault(Path.parse(path), 0)


def last_write(running: Running) -> Any:
    """The node of the last Write the fake device received."""
    _, _, (_path, node, _replace) = running.devices.calls[-1]
    return node


# ---------------------------------------------------------------- issue 19's two bodies


async def test_issue_bodies_are_accepted(running: Running) -> None:
    tree = running.devices.values["dev-1"]
    url = "/api/clients/dev-1/1/0/1"
    resp = await running.http.put(url, json={"id": "1", "value": 120})
    assert resp.status_code == 200, resp.text
    assert tree[Path.parse("/1/0/1")] == 120
    resp = await running.http.put(url, json={"id": 1, "value": "121"})
    assert resp.status_code == 200, resp.text
    assert tree[Path.parse("/1/0/1")] == 121


@pytest.mark.parametrize(
    ("url", "body", "fragments"),
    [
        ("1/0/1", {"id": "2", "value": 120}, ["'id' '2' does not match the path"]),
        ("1/0/1", {"id": "one", "value": 120}, ["'id'", "not an ID"]),
        ("1/0/1", {"value": "12abc"}, ["/1/0/1", "'value'", "not an integer"]),
        ("1/0/1", {"value": "1.5"}, ["'value'", "not an integer"]),
        ("1/0/1", {"value": 1.5}, ["'value'", "not a Integer"]),
        ("1/0/1", {"value": "99999999999999999999"}, ["'value'", "signed 64-bit"]),
        ("1/0/1", {"value": True}, ["'value'", "not a Integer"]),
        ("1/0/14", {"value": "-1"}, ["'value'", "Unsigned Integer"]),
        ("3303/0/5700", {"value": "nan"}, ["'value'", "not a finite number"]),
        ("1/0/6", {"value": "yes"}, ["'value'", "not a boolean"]),
        ("1/0/6", {"value": 2}, ["'value'", "not a Boolean"]),
        ("3/0/13", {"value": "yesterday"}, ["'value'", "not a time"]),
        ("3/0/14", {"value": 2}, ["'value'", "String is a JSON string, got number"]),
        ("1/0/10", {"value": {"objectId": "x", "objectInstanceId": 0}}, ["objectId"]),
        ("1/0", {"resources": [{"id": "x", "value": 1}]}, ["resources[0]", "not an ID"]),
        ("1/0", {"resources": [{"id": 1, "value": "ten"}]}, ["resources[0] (/1/0/1)", "'value'"]),
        ("3/0/7", {"instances": {"0": "x"}}, ["'instances'['0']", "not an integer"]),
        ("3/0/7", {"instances": {"a": 1}}, ["'instances' key", "not an ID"]),
        ("3/0/14", {"kind": "resourceInstance", "value": "x"}, ["'kind' 'resourceInstance'"]),
    ],
)
async def test_wrong_bodies_name_the_field(
    running: Running, url: str, body: dict[str, Any], fragments: list[str]
) -> None:
    resp = await running.http.put(f"/api/clients/dev-1/{url}", json=body)
    assert resp.status_code == 400, resp.text
    message = resp.json()["message"]
    for fragment in fragments:
        assert fragment in message, message


# -------------------------------------------------------- Leshan's demo UI, route by route


async def test_leshan_single_resource_writes(running: Running) -> None:
    """ResourceControl.vue: PUT /{ep}/o/i/r with singleInstanceResourceToREST."""
    tree = running.devices.values["dev-1"]
    present(running, "/1/0/14", "/1/0/6", "/3/0/13", "/5/0/0", "/1/0/10")

    async def put(path: str, rid: int, type: str, value: object) -> None:
        body = {"id": rid, "kind": "singleResource", "value": value, "type": type}
        resp = await running.http.put(f"/api/clients/dev-1/{path}", json=body)
        assert resp.status_code == 200, (body, resp.text)

    await put("1/0/1", 1, "integer", "600")  # text field: a string
    assert tree[Path.parse("/1/0/1")] == 600
    await put("1/0/14", 14, "unsigned_integer", "18446744073709551615")
    assert tree[Path.parse("/1/0/14")] == 2**64 - 1
    await put("3303/0/5700", 5700, "float", "-12.25")
    assert tree[Path.parse("/3303/0/5700")] == -12.25
    await put("1/0/6", 6, "boolean", True)  # BooleanValueInput: a JSON boolean
    assert tree[Path.parse("/1/0/6")] is True
    await put("3/0/13", 13, "time", 1700000000000)  # DateTimeValueInput: epoch ms
    assert tree[Path.parse("/3/0/13")] == datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    await put("5/0/0", 0, "opaque", "00FF10")  # OpaqueValueInput: hex
    assert tree[Path.parse("/5/0/0")] == b"\x00\xff\x10"
    await put("1/0/10", 10, "objlnk", {"objectId": 11, "objectInstanceId": 0})
    assert tree[Path.parse("/1/0/10")] == ObjectLink(11, 0)
    await put("3/0/14", 14, "string", "+02")
    assert tree[Path.parse("/3/0/14")] == "+02"


async def test_leshan_resource_instance_and_multi_resource(running: Running) -> None:
    """ResourceInstanceControl.vue and multiInstanceResourceToREST."""
    present(running, "/3/0/7/1")
    body = {"id": 1, "kind": "resourceInstance", "value": "5000", "type": "integer"}
    resp = await running.http.put("/api/clients/dev-1/3/0/7/1", json=body)
    assert resp.status_code == 200, resp.text
    assert last_write(running) == ResourceInstance(1, 5000)
    multi = {"id": 7, "kind": "multiResource", "type": "integer", "values": {"0": "3800", "1": 4}}
    resp = await running.http.put("/api/clients/dev-1/3/0/7", json=multi)
    assert resp.status_code == 200, resp.text
    node = last_write(running)
    assert isinstance(node, Resource) and dict(node.instances or {}) == {0: 3800, 1: 4}


async def test_leshan_instance_write(running: Running) -> None:
    """InstanceControl.vue: PUT /{ep}/o/i with instanceToREST(model, id, values)."""
    body = {
        "kind": "instance",
        "resources": [
            {"id": 1, "kind": "singleResource", "value": "90", "type": "integer"},
            {"id": 6, "kind": "singleResource", "value": False, "type": "boolean"},
            {"id": 7, "kind": "singleResource", "value": "UQ", "type": "string"},
        ],
        "id": 0,
    }
    resp = await running.http.put("/api/clients/dev-1/1/0?replace=false", json=body)
    assert resp.status_code == 200, resp.text
    node = last_write(running)
    assert isinstance(node, ObjectInstance)
    assert {r.id: r.value for r in node.resources.values()} == {1: 90, 6: False, 7: "UQ"}


async def test_leshan_create_with_the_id_typed_as_text(running: Running) -> None:
    """ObjectControl.vue create: instanceToREST(objectdef, value.id, ...), id from a text field."""
    body = {
        "kind": "instance",
        "resources": [
            {"id": 0, "kind": "singleResource", "value": "102", "type": "integer"},
            {"id": 1, "kind": "singleResource", "value": "300", "type": "integer"},
            {"id": 6, "kind": "singleResource", "value": True, "type": "boolean"},
            {"id": 7, "kind": "singleResource", "value": "U", "type": "string"},
        ],
        "id": "1",
    }
    resp = await running.http.post("/api/clients/dev-1/1", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["location"] == "/1/1"
    tree = running.devices.values["dev-1"]
    assert tree[Path.parse("/1/1/0")] == 102 and tree[Path.parse("/1/1/6")] is True
    # A text field the user cleared sends "": no ID, as no "id" at all (ours: 0).
    body["id"] = ""
    resp = await running.http.post("/api/clients/dev-1/1", json=body)
    assert resp.status_code == 200 and resp.json()["location"] == "/1/0"
    body["id"] = "one"
    resp = await running.http.post("/api/clients/dev-1/1", json=body)
    assert resp.status_code == 400 and "Create: 'id'" in resp.json()["message"]


async def test_leshan_write_composite(running: Running) -> None:
    """CompositeObjectControl.vue: PUT /{ep}/composite, path -> singleValueToREST node."""
    body = {
        "/3/0/14": {"id": 14, "kind": "singleResource", "value": "+03", "type": "string"},
        "/1/0/1": {"id": 1, "kind": "singleResource", "value": "700", "type": "integer"},
        "/3/0/7/1": {"id": 1, "kind": "resourceInstance", "value": "4100", "type": "integer"},
    }
    resp = await running.http.put("/api/clients/dev-1/composite", json=body)
    assert resp.status_code == 200, resp.text
    tree = running.devices.values["dev-1"]
    assert tree[Path.parse("/3/0/14")] == "+03" and tree[Path.parse("/1/0/1")] == 700
    assert tree[Path.parse("/3/0/7/1")] == 4100
    bad = {"/1/0/1": {"id": 1, "kind": "singleResource", "value": "7oo", "type": "integer"}}
    resp = await running.http.put("/api/clients/dev-1/composite", json=bad)
    assert resp.status_code == 400 and "not an integer" in resp.json()["message"]


async def test_leshan_security_ui(running: Running) -> None:
    """SecurityView.vue PUTs to api/security/clients/ (trailing slash)."""
    psk = {
        "endpoint": "les-psk",
        "tls": {"mode": "psk", "details": {"identity": "les-psk-id", "key": "0A0B0C"}},
    }
    resp = await running.http.put("/api/security/clients/", json=psk)
    assert resp.status_code == 200, resp.text
    assert running.devices.security["les-psk"].psk.key == b"\x0a\x0b\x0c"
    x509 = {"endpoint": "les-x509", "tls": {"mode": "x509", "details": {}}}
    assert (await running.http.put("/api/security/clients/", json=x509)).status_code == 200
    assert running.devices.security["les-x509"].x509 is not None
    # Jackson's asText: numbers are their decimal text.
    numeric = {"endpoint": 4711, "tls": {"mode": "psk", "details": {"identity": 42, "key": "01"}}}
    resp = await running.http.put("/api/security/clients", json=numeric)
    assert resp.status_code == 200, resp.text
    assert running.devices.security["4711"].psk.identity == b"42"
    bad_key = {"endpoint": "x", "tls": {"mode": "psk", "details": {"identity": "i", "key": "0g"}}}
    assert (await running.http.put("/api/security/clients/", json=bad_key)).status_code == 400


def leshan_bootstrap_config(**dm_overrides: object) -> dict[str, Any]:
    """BootstrapView.addConfig + configFromUIToRest for one DM server with PSK and a BS server."""
    identity = [ord(c) for c in "dev-les"]  # fromAscii
    dm_security: dict[str, Any] = {
        "bootstrapServer": False,
        "clientOldOffTime": 1,
        "publicKeyOrId": identity,
        "secretKey": [1, 2, 3, 4],  # fromHex("01020304")
        "securityMode": "PSK",
        "serverId": 123,
        "serverSmsNumber": "",
        "smsBindingKeyParam": [],
        "smsBindingKeySecret": [],
        "smsSecurityMode": "NO_SEC",
        "uri": "coaps://127.0.0.1:5684",
    }
    server: dict[str, Any] = {
        "binding": "U",
        "defaultMinPeriod": 1,
        "lifetime": 300,
        "notifIfDisabled": True,
        "shortId": 123,
    }
    for key, value in dm_overrides.items():
        (server if key in server else dm_security)[key] = value
    return {
        "servers": {"0": server},
        "security": {
            "0": {
                "bootstrapServer": True,
                "clientOldOffTime": 1,
                "securityMode": "NO_SEC",
                "serverSmsNumber": "",
                "smsBindingKeyParam": [],
                "smsBindingKeySecret": [],
                "smsSecurityMode": "NO_SEC",
                "uri": "coap://127.0.0.1:5683",
            },
            "1": dm_security,
        },
        "oscore": {},
        "toDelete": ["/0", "/1"],
    }


async def test_leshan_bootstrap_ui_config(live: Live) -> None:
    resp = await live.http.post("/api/bootstrap/dev-les", json=leshan_bootstrap_config())
    assert resp.status_code == 200, resp.text
    stored = (await live.http.get("/api/bootstrap/dev-les")).json()
    (server,) = stored["servers"]
    assert server["short_server_id"] == 123 and server["lifetime"] == 300
    assert server["uri"] == "coaps://127.0.0.1:5684"
    assert server["security"]["mode"] == "psk" and server["security"]["identity"] == "dev-les"
    assert stored["bootstrap_server"]["uri"] == "coap://127.0.0.1:5683"
    assert stored["delete"] == ["/0", "/1"]
    # Jackson coerces scalars: numeric strings are numbers, "true" a boolean.
    lenient = leshan_bootstrap_config(shortId="124", serverId="124", lifetime="600")
    lenient["servers"]["0"]["notifIfDisabled"] = "true"
    resp = await live.http.put("/api/bootstrap/dev-les", json=lenient)
    assert resp.status_code == 200, resp.text
    (server,) = (await live.http.get("/api/bootstrap/dev-les")).json()["servers"]
    assert server["short_server_id"] == 124 and server["lifetime"] == 600
    wrong = leshan_bootstrap_config(shortId="abc")
    resp = await live.http.post("/api/bootstrap/dev-les", json=wrong)
    assert resp.status_code == 400 and "shortId" in resp.json()["message"]


# ------------------------------------------------------------------ the reader alone


@pytest.mark.parametrize(
    ("body", "path", "node"),
    [
        ({"value": "300"}, Path(1, 0, 1), Resource.single(1, 300)),
        ({"value": 300.0}, Path(1, 0, 1), Resource.single(1, 300)),
        ({"value": " -7 "}, Path(1, 0, 1), Resource.single(1, -7)),
        ({"value": "true"}, Path(1, 0, 6), Resource.single(6, True)),
        ({"value": 0}, Path(1, 0, 6), Resource.single(6, False)),
        ({"value": "1700000000"}, Path(3, 0, 13), None),  # ours: epoch seconds
        ({"value": "2023-11-14T22:13:20Z"}, Path(3, 0, 13), None),
        ({"value": "11:0"}, Path(1, 0, 10), Resource.single(10, ObjectLink(11, 0))),
        ({"value": "AAEC"}, Path(5, 0, 0), Resource.single(0, b"\x00\x01\x02")),  # ours: base64
        ({"id": 1.0, "value": 1}, Path(1, 0, 1), Resource.single(1, 1)),
        ({"instances": {"0": "1", "1": 2}}, Path(3, 0, 7), Resource.multiple(7, {0: 1, 1: 2})),
    ],
)
def test_reader_our_shape(body: dict[str, Any], path: Path, node: object) -> None:
    result = node_from_body(body, path, MODEL)
    if node is None:  # a Time: compare the value only
        assert isinstance(result, Resource)
        assert result.value == datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    else:
        assert isinstance(result, Resource)
        assert (result.id, result.value, result.instances) == (
            node.id,  # type: ignore[attr-defined]
            node.value,  # type: ignore[attr-defined]
            node.instances,  # type: ignore[attr-defined]
        )


def test_create_instance_id() -> None:
    assert create_instance_id({}) == 0
    assert create_instance_id({"id": None}) == 0
    assert create_instance_id({"id": "7"}) == 7
    assert create_instance_id({"id": 7}) == 7
    for bad in ("x", -1, 65535, True, "1.5"):
        with pytest.raises(InvalidInput, match="'id'"):
            create_instance_id({"id": bad})
    with pytest.raises(InvalidInput, match="JSON object"):
        create_instance_id([])


@pytest.mark.parametrize(
    ("value", "type", "path", "expected"),
    [
        (
            1700000000000,
            "time",
            Path(3, 0, 13),
            datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        ),
        (
            "1700000000000",
            "time",
            Path(3, 0, 13),
            datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        ),
        (
            "2023-11-14T22:13:20Z",
            "time",
            Path(3, 0, 13),
            datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        ),
        ("true", "boolean", Path(1, 0, 6), True),
        (1, "boolean", Path(1, 0, 6), True),
        (21.5, "float", Path(3303, 0, 5700), 21.5),
        ("1e3", "float", Path(3303, 0, 5700), 1000.0),
        ("1_000", "integer", Path(1, 0, 1), 1000),
        ("0aFF", "opaque", Path(5, 0, 0), b"\x0a\xff"),
        ("</3/0>", "corelink", Path(9999, 0, 1), "</3/0>"),  # no model: the node's type
    ],
)
def test_reader_leshan_shape(value: object, type: str, path: Path, expected: object) -> None:
    assert path.resource_id is not None
    body = {"id": path.resource_id, "kind": "singleResource", "type": type, "value": value}
    result = node_from_body(body, path, MODEL)
    assert isinstance(result, Resource) and result.value == expected


def test_bootstrap_doc_tells_the_shapes_apart() -> None:
    ours = {"servers": [{"short_server_id": 1, "uri": "coap://127.0.0.1:5683"}]}
    assert bootstrap_doc("e", ours) == ours
    assert not looks_like_leshan_config(ours) and not looks_like_leshan_config({})
    assert looks_like_leshan_config({"servers": {}}) and looks_like_leshan_config({"toDelete": []})
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nested too deeply"):
        bootstrap_doc("e", {"toDelete": deep})


def test_reader_declared_type() -> None:
    # The model's type wins over the body's; without a model entry the body's counts.
    known = {"id": 1, "kind": "singleResource", "type": "string", "value": "300"}
    assert node_from_body(known, Path(1, 0, 1), MODEL) == Resource.single(
        1, 300, ResourceType.INTEGER
    )
    for bad, message in ((5, "'type': must be a type name"), ("Nope", "'type': unknown")):
        body = {"id": 1, "kind": "singleResource", "type": bad, "value": 1}
        with pytest.raises(InvalidInput, match=message):
            node_from_body(body, Path(9999, 0, 1), MODEL)
