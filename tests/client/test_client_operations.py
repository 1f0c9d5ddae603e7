"""Every Device Management operation and its response codes, over real UDP."""

from __future__ import annotations

import pytest
from client_harness import MakeClient

from lwm2m.client.instance import Instance, Res, execute
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.formats import senml_cbor, senml_json, tlv
from lwm2m.formats.media import ContentFormat
from lwm2m.model.nodes import LwM2MObject, ObjectInstance, Resource
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry

CF = ContentFormat


class Temperature(Instance, object_id=3303):
    value = Res(5700, 20.0)
    units = Res(5701, "Cel")
    resets: list[str]

    @execute(5605)
    async def reset_min_max(self, args: str) -> None:
        self.resets.append(args)


def get(*path: str, **opts: object) -> Message:
    return Message(Code.GET, uri_path=path, **opts)  # type: ignore[arg-type]


async def test_read_each_level_and_format(make_client: MakeClient, registry: ModelRegistry) -> None:
    h = await make_client()
    ask = h.server.request
    r = await ask(get("3", "0", "0"), h.address)
    assert (r.code, r.content_format, r.payload) == (Code.CONTENT, CF.TEXT, b"lwm2m-py")
    r = await ask(get("3", "0", "2"), h.address)
    assert r.payload == b"dev-1"  # serial number defaults to the endpoint name
    r = await ask(get("3", "0"), h.address)
    assert r.code == Code.CONTENT and r.content_format == CF.SENML_CBOR
    node = senml_cbor.decode(r.payload, Path(3, 0), registry)
    assert isinstance(node, ObjectInstance) and node.resources[0].value == "lwm2m-py"
    assert 4 not in node.resources  # executable resources are not read
    for fmt in (CF.LWM2M_TLV, CF.SENML_JSON, CF.LWM2M_JSON, CF.LWM2M_CBOR, CF.SENML_CBOR):
        r = await ask(get("3", "0", accept=fmt), h.address)
        assert (r.code, r.content_format) == (Code.CONTENT, fmt)
    r = await ask(get("3", accept=CF.LWM2M_TLV), h.address)
    assert r.code == Code.CONTENT
    r = await ask(get("3", "0", "11"), h.address)  # multiple resource: not text
    assert r.code == Code.CONTENT and r.content_format == CF.SENML_CBOR
    r = await ask(get("3", "0", "11", "0"), h.address)
    assert (r.code, r.payload) == (Code.CONTENT, b"0")


async def test_read_errors(make_client: MakeClient) -> None:
    h = await make_client()
    ask = h.server.request
    assert (await ask(get("3", "0", "11", accept=CF.TEXT), h.address)).code == Code.NOT_ACCEPTABLE
    assert (await ask(get("3", "0", accept=CF.TEXT), h.address)).code == Code.NOT_ACCEPTABLE
    assert (await ask(get("3", "0", "0", accept=9999), h.address)).code == Code.NOT_ACCEPTABLE
    assert (
        await ask(get("3", "0", "0", accept=CF.OCTET_STREAM), h.address)
    ).code == Code.NOT_ACCEPTABLE
    assert (await ask(get("3", "1"), h.address)).code == Code.NOT_FOUND
    assert (await ask(get("9999"), h.address)).code == Code.NOT_FOUND
    assert (await ask(get("3", "0", "4"), h.address)).code == Code.METHOD_NOT_ALLOWED  # Reboot
    assert (await ask(get("5", "0", "0"), h.address)).code == Code.METHOD_NOT_ALLOWED  # W only
    assert (await ask(get("3", "0", "99"), h.address)).code == Code.NOT_FOUND
    assert (await ask(get("abc"), h.address)).code == Code.BAD_REQUEST
    assert (await ask(get("0"), h.address)).code == Code.UNAUTHORIZED  # Security object
    assert (await ask(get("0", "0", "0"), h.address)).code == Code.UNAUTHORIZED
    assert (await ask(get(), h.address)).code == Code.METHOD_NOT_ALLOWED


async def test_discover(make_client: MakeClient) -> None:
    h = await make_client()
    ask = h.server.request
    r = await ask(get("3", accept=CF.LINK_FORMAT), h.address)
    assert r.code == Code.CONTENT and r.content_format == CF.LINK_FORMAT
    links = r.payload.decode().split(",")
    assert links[:3] == ["</3>;ver=1.1", "</3/0>", "</3/0/0>"]
    assert "</3/0/11>;dim=1" in links
    await ask(
        Message(Code.PUT, uri_path=("3", "0", "9"), uri_query=("pmin=10", "gt=50")), h.address
    )
    r = await ask(get("3", "0", "9", accept=CF.LINK_FORMAT), h.address)
    assert r.payload == b"</3/0/9>;pmin=10;gt=50"
    assert (await ask(get("3", "7", accept=CF.LINK_FORMAT), h.address)).code == Code.NOT_FOUND


async def test_write_replace_partial_and_errors(
    make_client: MakeClient, registry: ModelRegistry
) -> None:
    h = await make_client()
    ask = h.server.request
    r = await ask(
        Message(Code.PUT, uri_path=("1", "0", "2"), payload=b"5", content_format=CF.TEXT), h.address
    )
    assert r.code == Code.CHANGED
    assert h.client.instance(1, 0).get(2) == 5  # type: ignore[union-attr]
    r = await ask(
        Message(Code.PUT, uri_path=("1", "0", "3"), payload=b"30"), h.address
    )  # no CF: text
    assert r.code == Code.CHANGED
    payload = tlv.encode(
        ObjectInstance.of(0, [Resource.single(2, 7), Resource.single(3, 70)]), Path(1, 0), registry
    )
    r = await ask(
        Message(Code.POST, uri_path=("1", "0"), payload=payload, content_format=CF.LWM2M_TLV),
        h.address,
    )
    assert r.code == Code.CHANGED
    assert h.client.instance(1, 0).get(3) == 70  # type: ignore[union-attr]
    # errors
    r = await ask(Message(Code.PUT, uri_path=("3", "0", "0"), payload=b"x"), h.address)
    assert r.code == Code.METHOD_NOT_ALLOWED  # read-only
    r = await ask(Message(Code.PUT, uri_path=("1", "0", "2"), payload=b"abc"), h.address)
    assert r.code == Code.BAD_REQUEST  # not an integer
    r = await ask(
        Message(Code.PUT, uri_path=("1", "0", "2"), payload=b"1", content_format=4242), h.address
    )
    assert r.code == Code.UNSUPPORTED_CONTENT_FORMAT
    r = await ask(
        Message(
            Code.PUT, uri_path=("1", "0", "2"), payload=b"\xff\x00", content_format=CF.LWM2M_TLV
        ),
        h.address,
    )
    assert r.code == Code.BAD_REQUEST
    r = await ask(Message(Code.PUT, uri_path=("1", "9", "2"), payload=b"1"), h.address)
    assert r.code == Code.NOT_FOUND
    r = await ask(Message(Code.PUT, uri_path=("3",), payload=b"1"), h.address)
    assert r.code == Code.METHOD_NOT_ALLOWED


async def test_write_attributes(make_client: MakeClient) -> None:
    h = await make_client()
    ask = h.server.request

    def wa(path: tuple[str, ...], *query: str) -> Message:
        return Message(Code.PUT, uri_path=path, uri_query=query)

    assert (await ask(wa(("3", "0", "9"), "pmin=1", "pmax=10"), h.address)).code == Code.CHANGED
    assert (
        await ask(wa(("3", "0", "9"), "pmin=20"), h.address)
    ).code == Code.BAD_REQUEST  # pmax < pmin
    assert (await ask(wa(("3", "0", "9"), "foo=1"), h.address)).code == Code.BAD_REQUEST
    assert (await ask(wa(("3", "0", "9"), "lt=10", "gt=5"), h.address)).code == Code.BAD_REQUEST
    assert (await ask(wa(("3", "0", "0"), "gt=5"), h.address)).code == Code.BAD_REQUEST  # string
    assert (await ask(wa(("3", "0"), "gt=5"), h.address)).code == Code.BAD_REQUEST  # not a resource
    assert (await ask(wa(("3", "0", "9"), "pmin"), h.address)).code == Code.CHANGED  # removal
    assert h.client.attributes.get(1, Path(3, 0, 9)).pmin is None
    assert h.client.attributes.get(1, Path(3, 0, 9)).pmax == 10
    assert (await ask(wa(("3", "5"), "pmin=1"), h.address)).code == Code.NOT_FOUND


async def test_execute(make_client: MakeClient) -> None:
    h = await make_client()
    temp = Temperature(0)
    temp.resets = []
    h.client.add_instance(temp)
    ask = h.server.request
    r = await ask(Message(Code.POST, uri_path=("3303", "0", "5605"), payload=b"0='a',1"), h.address)
    assert r.code == Code.CHANGED and temp.resets == ["0='a',1"]
    r = await ask(Message(Code.POST, uri_path=("3303", "0", "5605"), payload=b"0=a"), h.address)
    assert r.code == Code.BAD_REQUEST
    r = await ask(Message(Code.POST, uri_path=("3303", "0", "5700")), h.address)
    assert r.code == Code.METHOD_NOT_ALLOWED
    r = await ask(Message(Code.POST, uri_path=("3303", "1", "5605")), h.address)
    assert r.code == Code.NOT_FOUND
    r = await ask(Message(Code.POST, uri_path=("3", "0", "12")), h.address)  # reset error code
    assert r.code == Code.CHANGED


async def test_create_and_delete(make_client: MakeClient, registry: ModelRegistry) -> None:
    h = await make_client()
    h.client.add_object(3303)
    ask = h.server.request
    payload = tlv.encode(
        LwM2MObject.of(3303, [ObjectInstance.of(4, [Resource.single(5750, "Far")])]),
        Path(3303),
        registry,
    )
    # 5700 is mandatory and read-only in 3303: not needed for a server's Create
    r = await ask(
        Message(Code.POST, uri_path=("3303",), payload=payload, content_format=CF.LWM2M_TLV),
        h.address,
    )
    assert r.code == Code.CREATED and r.location_path == ("3303", "4")
    assert h.client.instance(3303, 4).get(5750) == "Far"  # type: ignore[union-attr]
    r = await ask(
        Message(Code.POST, uri_path=("3303",), payload=payload, content_format=CF.LWM2M_TLV),
        h.address,
    )
    assert r.code == Code.BAD_REQUEST  # taken
    r = await ask(Message(Code.POST, uri_path=("3",), payload=b""), h.address)
    assert r.code == Code.BAD_REQUEST  # single-instance object
    r = await ask(Message(Code.POST, uri_path=("4242",), payload=b""), h.address)
    assert r.code == Code.NOT_FOUND
    # the Update announces the new instance
    while True:
        msg, addr = await h.server.next_request()
        assert msg.uri_path == ("rd", "abc")
        h.server.reply(msg, addr, Code.CHANGED)
        if b"</3303/4>" in msg.payload:
            break
    r = await ask(Message(Code.DELETE, uri_path=("3303", "4")), h.address)
    assert r.code == Code.DELETED
    assert (
        await ask(Message(Code.DELETE, uri_path=("3303", "4")), h.address)
    ).code == Code.NOT_FOUND
    assert (
        await ask(Message(Code.DELETE, uri_path=("3", "0")), h.address)
    ).code == Code.METHOD_NOT_ALLOWED
    assert (
        await ask(Message(Code.DELETE, uri_path=("3",)), h.address)
    ).code == Code.METHOD_NOT_ALLOWED


async def test_composite_read_and_write(make_client: MakeClient, registry: ModelRegistry) -> None:
    h = await make_client()
    ask = h.server.request
    body = senml_json.encode_paths([Path(3, 0, 0), Path(1, 0, 1), Path(3, 0, 77)])
    r = await ask(
        Message(Code.FETCH, payload=body, content_format=CF.SENML_JSON, accept=CF.SENML_JSON),
        h.address,
    )
    assert r.code == Code.CONTENT and r.content_format == CF.SENML_JSON
    records = {rec.path: rec.value for rec in senml_json.decode_records(r.payload, registry)}
    assert records == {Path(3, 0, 0): "lwm2m-py", Path(1, 0, 1): 60}
    write = senml_cbor.encode_composite({Path(1, 0, 2): 3, Path(1, 0, 3): 33}, registry)
    r = await ask(Message(Code.IPATCH, payload=write, content_format=CF.SENML_CBOR), h.address)
    assert r.code == Code.CHANGED
    server = h.client.instance(1, 0)
    assert server is not None and (server.get(2), server.get(3)) == (3, 33)
    bad = senml_cbor.encode_composite({Path(3, 0, 0): "x"}, registry)
    r = await ask(Message(Code.IPATCH, payload=bad, content_format=CF.SENML_CBOR), h.address)
    assert r.code == Code.METHOD_NOT_ALLOWED
    r = await ask(Message(Code.FETCH, payload=b"\x00", content_format=CF.TEXT), h.address)
    assert r.code == Code.UNSUPPORTED_CONTENT_FORMAT
    r = await ask(Message(Code.FETCH, payload=b"[", content_format=CF.SENML_JSON), h.address)
    assert r.code == Code.BAD_REQUEST


async def test_send(make_client: MakeClient, registry: ModelRegistry) -> None:
    import asyncio

    h = await make_client()
    sending = asyncio.ensure_future(h.client.send(["/3/0/9", "/6/0/0"]))
    msg, addr = await h.server.next_request()
    assert msg.code == Code.POST and msg.uri_path == ("dp",)
    assert msg.content_format == CF.SENML_CBOR
    records = {rec.path: rec.value for rec in senml_cbor.decode_records(msg.payload, registry)}
    assert records[Path(3, 0, 9)] == 100
    h.server.reply(msg, addr, Code.CHANGED)
    assert await sending == Code.CHANGED


@pytest.mark.parametrize("segment", ["99999", "-1", "01"])
async def test_bad_paths(make_client: MakeClient, segment: str) -> None:
    h = await make_client()
    r = await h.server.request(get("3", segment), h.address)
    assert r.code == Code.BAD_REQUEST


async def test_requests_from_strangers_are_refused(make_client: MakeClient) -> None:
    from client_rawserver import RawServer

    h = await make_client()
    stranger = await RawServer().start()
    try:
        r = await stranger.request(get("3", "0", "0"), h.address)
        assert r.code == Code.UNAUTHORIZED
    finally:
        stranger.close()


async def test_connectivity_statistics_start_stop(make_client: MakeClient) -> None:
    h = await make_client()
    ask = h.server.request
    assert (await ask(Message(Code.POST, uri_path=("7", "0", "6")), h.address)).code == Code.CHANGED
    big = b"x" * 3000
    for _ in range(2):  # traffic while collecting: 3 kB in each Write
        await ask(Message(Code.PUT, uri_path=("3", "0", "15"), payload=big), h.address)
    rx = await ask(Message(Code.GET, uri_path=("7", "0", "3")), h.address)
    assert int(rx.payload) >= 5  # kB received
    assert (await ask(Message(Code.POST, uri_path=("7", "0", "7")), h.address)).code == Code.CHANGED
    await ask(Message(Code.PUT, uri_path=("3", "0", "15"), payload=big), h.address)
    after = await ask(Message(Code.GET, uri_path=("7", "0", "3")), h.address)
    assert int(after.payload) == int(
        (await ask(Message(Code.GET, uri_path=("7", "0", "3")), h.address)).payload
    )
    assert int(after.payload) < 9  # the Write after Stop is not counted
