"""Notifications: pmin, pmax, gt, lt, st, inheritance, cancel, RST, CON/NON — on a manual clock."""

from __future__ import annotations

from client_harness import Harness, MakeClient, until

from lwm2m.client.observe import should_notify
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message
from lwm2m.formats.media import ContentFormat
from lwm2m.model.path import Path
from lwm2m.protocol.attributes import Attributes

CF = ContentFormat


async def observe(h: Harness, *path: str, **opts: object) -> Message:
    first = await h.server.request(
        Message(Code.GET, uri_path=path, observe=0, **opts),
        h.address,  # type: ignore[arg-type]
    )
    assert first.code == Code.CONTENT and first.observe is not None
    return first


async def write_attrs(h: Harness, path: tuple[str, ...], *query: str) -> None:
    r = await h.server.request(Message(Code.PUT, uri_path=path, uri_query=query), h.address)
    assert r.code == Code.CHANGED


async def test_change_notifies_non_by_default(make_client: MakeClient) -> None:
    h = await make_client()
    first = await observe(h, "3", "0", "9")
    assert first.payload == b"100"
    h.client.instance(3, 0).set(9, 80)  # type: ignore[union-attr]
    note = await h.server.next_notification()
    assert note.type == MessageType.NON and note.payload == b"80" and note.token == first.token
    assert note.observe is not None and note.observe > first.observe  # type: ignore[operator]
    assert note.content_format == CF.TEXT


async def test_pmin_delays_and_pmax_forces(make_client: MakeClient) -> None:
    h = await make_client(lifetime_s=300)  # no Update falls due in these 69 s
    await write_attrs(h, ("3", "0", "9"), "pmin=10", "pmax=60")
    await observe(h, "3", "0", "9")
    device = h.client.instance(3, 0)
    assert device is not None
    h.scheduler.advance(5)
    device.set(9, 90)
    device.set(9, 91)
    await until(lambda: not any(o.sending for o in h.client.observations.all()))
    assert h.client.stats.notifications_sent == 0  # inside pmin
    h.scheduler.advance(5)
    note = await h.server.next_notification()
    assert note.payload == b"91"  # the latest value, once, when pmin ends
    h.scheduler.advance(59)
    assert h.server.notifications.empty()
    h.scheduler.advance(2)
    note = await h.server.next_notification()
    assert note.payload == b"91"  # pmax without change


async def settled(h: Harness) -> int:
    """Wait until no notification is being decided or sent; returns how many were sent."""
    await until(lambda: not any(o.sending for o in h.client.observations.all()))
    return h.client.stats.notifications_sent


async def test_gt_lt_st_on_numeric_resource(make_client: MakeClient) -> None:
    h = await make_client()
    await write_attrs(h, ("3", "0", "9"), "gt=50", "lt=20")
    await observe(h, "3", "0", "9")
    device = h.client.instance(3, 0)
    assert device is not None
    device.set(9, 60)  # 100 -> 60: still above gt
    assert await settled(h) == 0
    device.set(9, 40)  # crosses gt
    assert (await h.server.next_notification()).payload == b"40"
    device.set(9, 30)  # between, no crossing
    assert await settled(h) == 1
    device.set(9, 10)  # crosses lt
    assert (await h.server.next_notification()).payload == b"10"
    await write_attrs(h, ("3", "0", "9"), "gt", "lt", "st=5")
    device.set(9, 13)
    assert await settled(h) == 2  # moved 3 < st
    device.set(9, 16)
    assert (await h.server.next_notification()).payload == b"16"  # moved 6 >= st


async def test_attributes_inherit_from_object_level(make_client: MakeClient) -> None:
    h = await make_client()
    await write_attrs(h, ("3",), "pmin=30")
    await write_attrs(h, ("3", "0"), "pmax=100")
    attrs = h.client.attributes.effective(1, Path(3, 0, 9))
    assert (attrs.pmin, attrs.pmax) == (30, 100)
    await write_attrs(h, ("3", "0", "9"), "pmin=2")
    assert h.client.attributes.effective(1, Path(3, 0, 9)).pmin == 2
    await observe(h, "3", "0", "9")
    h.client.instance(3, 0).set(9, 1)  # type: ignore[union-attr]
    h.scheduler.advance(1)
    await until(lambda: not any(o.sending for o in h.client.observations.all()))
    assert h.client.stats.notifications_sent == 0
    h.scheduler.advance(1)
    assert (await h.server.next_notification()).payload == b"1"


async def test_server_default_periods_apply(make_client: MakeClient) -> None:
    h = await make_client()
    r = await h.server.request(
        Message(Code.PUT, uri_path=("1", "0", "3"), payload=b"20"), h.address
    )
    assert r.code == Code.CHANGED
    await observe(h, "3", "0", "0")
    h.scheduler.advance(20.5)
    assert (await h.server.next_notification()).payload == b"lwm2m-py"


async def test_instance_observation_and_cancel(make_client: MakeClient) -> None:
    h = await make_client()
    first = await observe(h, "6", "0", accept=CF.SENML_JSON)
    assert first.content_format == CF.SENML_JSON
    loc = h.client.instance(6, 0)
    loc.move(1.5, 2.5)  # type: ignore[union-attr]
    note = await h.server.next_notification()
    assert note.content_format == CF.SENML_JSON and b"1.5" in note.payload
    await until(lambda: not any(o.sending for o in h.client.observations.all()))
    while not h.server.notifications.empty():  # one change may notify once per resource set
        h.server.notifications.get_nowait()
    # cancel with GET Observe=1 (same token)
    assert len(h.client.observations) == 1
    h.server.forget_token(first.token)
    cancel = Message(Code.GET, uri_path=("6", "0"), observe=1, token=first.token)
    from lwm2m.coap import codec

    h.server.send(cancel.with_(mid=7), h.address)
    await until(lambda: len(h.client.observations) == 0)
    sent = h.client.stats.notifications_sent
    loc.move(3.0, 4.0)  # type: ignore[union-attr]
    await until(lambda: not any(o.sending for o in h.client.observations.all()))
    assert h.client.stats.notifications_sent == sent
    assert codec  # the cancel went out as an exact datagram


async def test_rst_ends_observation(make_client: MakeClient) -> None:
    h = await make_client(notify_confirmable=True)
    h.server.auto_ack_notifications = False
    await observe(h, "3", "0", "9")
    h.client.instance(3, 0).set(9, 50)  # type: ignore[union-attr]
    note = await h.server.next_notification()
    assert note.type == MessageType.CON
    h.server.send(Message(Code.EMPTY, MessageType.RST, note.mid), h.address)
    await until(lambda: len(h.client.observations) == 0)


async def test_con_attribute_makes_confirmable(make_client: MakeClient) -> None:
    h = await make_client()
    await write_attrs(h, ("3", "0", "9"), "con=1")
    await observe(h, "3", "0", "9")
    h.client.instance(3, 0).set(9, 42)  # type: ignore[union-attr]
    note = await h.server.next_notification()
    assert note.type == MessageType.CON and note.payload == b"42"


async def test_deleted_instance_ends_observation(make_client: MakeClient) -> None:
    h = await make_client()
    h.client.store.create_instance(3303, 0, {5700: 1.0})
    await observe(h, "3303", "0", "5700")
    r = await h.server.request(Message(Code.DELETE, uri_path=("3303", "0")), h.address)
    assert r.code == Code.DELETED
    assert len(h.client.observations) == 0


def test_should_notify_rules() -> None:
    p = Path(3, 0, 9)
    none = Attributes()
    assert should_notify(none, {p: 1}, {p: 2})
    assert not should_notify(none, {p: 1}, {p: 1})
    assert should_notify(Attributes(st=1.0), {p: 1}, {p: 2})
    assert not should_notify(Attributes(st=1.5), {p: 1}, {p: 2})
    assert should_notify(Attributes(gt=1.5), {p: 1}, {p: 2})
    assert not should_notify(Attributes(gt=5.0), {p: 1}, {p: 2})
    assert should_notify(Attributes(lt=1.5), {p: 2}, {p: 1})
    assert should_notify(Attributes(gt=5.0), {p: "a"}, {p: "b"})  # non-numeric: any change


async def test_observe_composite(make_client: MakeClient, registry: object) -> None:
    from lwm2m.formats import senml_cbor, senml_json

    h = await make_client()
    body = senml_json.encode_paths([Path(3, 0, 9), Path(6, 0, 0)])
    first = await h.server.request(
        Message(
            Code.FETCH, payload=body, content_format=CF.SENML_JSON, accept=CF.SENML_CBOR, observe=0
        ),
        h.address,
    )
    assert first.code == Code.CONTENT and first.observe is not None
    assert first.content_format == CF.SENML_CBOR
    h.client.instance(3, 0).set(9, 12)  # type: ignore[union-attr]
    note = await h.server.next_notification()
    values = {r.path: r.value for r in senml_cbor.decode_records(note.payload, registry)}  # type: ignore[arg-type]
    assert values[Path(3, 0, 9)] == 12 and Path(6, 0, 0) in values


async def test_epmax_samples_computed_values(make_client: MakeClient) -> None:
    from lwm2m.client.instance import Instance, Res

    readings = iter([1.0, 1.0, 5.0])

    class Sensor(Instance, object_id=3303):
        value = Res[float](5700)

        @value.reader
        def _sample(self) -> float:
            return next(readings, 5.0)

    h = await make_client(lifetime_s=300)  # no periodic Update falls due in these 60 s
    h.client.add_instance(Sensor(0))
    msg, addr = await h.server.next_request()  # Update for the new object
    h.server.reply(msg, addr, Code.CHANGED)
    await write_attrs(h, ("3303", "0", "5700"), "epmax=30")
    first = await observe(h, "3303", "0", "5700")
    assert first.payload == b"1.0"
    h.scheduler.advance(30)  # samples 1.0: unchanged, nothing sent
    assert await settled(h) == 0
    h.scheduler.advance(30)  # samples 5.0: changed -> notification
    note = await h.server.next_notification()
    assert note.payload == b"5.0"


async def test_server_disable_deregisters_for_timeout(make_client: MakeClient) -> None:
    h = await make_client()
    r = await h.server.request(
        Message(Code.PUT, uri_path=("1", "0", "5"), payload=b"100"), h.address
    )
    assert r.code == Code.CHANGED
    r = await h.server.request(Message(Code.POST, uri_path=("1", "0", "4")), h.address)
    assert r.code == Code.CHANGED
    msg, addr = await h.server.next_request()
    assert msg.code == Code.DELETE
    h.server.reply(msg, addr, Code.DELETED)
    await until(lambda: h.client.sessions[1].state.value == "disabled")
    h.scheduler.advance(99)
    assert h.server.requests.empty()
    h.scheduler.advance(2)
    msg, addr = await h.server.next_request()
    assert msg.uri_path == ("rd",)
    h.server.reply(msg, addr, Code.CREATED, location_path=("rd", "back"))


async def test_binding_change_sends_update(make_client: MakeClient) -> None:
    h = await make_client()
    r = await h.server.request(
        Message(Code.PUT, uri_path=("1", "0", "7"), payload=b"UQ"), h.address
    )
    assert r.code == Code.CHANGED
    msg, addr = await h.server.next_request()
    assert msg.uri_query == ("b=U", "Q")
    h.server.reply(msg, addr, Code.CHANGED)


async def test_new_registration_drops_observations(make_client: MakeClient) -> None:
    h = await make_client()
    await observe(h, "3", "0", "9")
    assert len(h.client.observations) == 1
    h.client.trigger_update()
    msg, addr = await h.server.next_request()
    h.server.reply(msg, addr, Code.NOT_FOUND)  # server lost us: Register again
    await h.server.accept_registration("again")
    await until(lambda: h.client.sessions[1].location == ("rd", "again"))
    assert len(h.client.observations) == 0
    assert h.client.attributes is not None
