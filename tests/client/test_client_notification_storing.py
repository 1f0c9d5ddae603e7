"""Notification Storing When Disabled or Offline (Server resource 6), over real UDP."""

from __future__ import annotations

import pytest
from client_harness import Harness, MakeClient, until

from lwm2m.client.registration import RegistrationState
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message
from lwm2m.protocol.errors import LwM2MError


async def observe_battery(h: Harness) -> Message:
    first = await h.server.request(
        Message(Code.GET, uri_path=("3", "0", "9"), observe=0), h.address
    )
    assert first.code == Code.CONTENT and first.payload == b"100"
    return first


async def write(h: Harness, path: tuple[str, ...], payload: bytes) -> None:
    r = await h.server.request(Message(Code.PUT, uri_path=path, payload=payload), h.address)
    assert r.code == Code.CHANGED


async def settled(h: Harness) -> None:
    await until(lambda: not any(o.sending for o in h.client.observations.all()))


async def change_battery(h: Harness, *levels: int) -> None:
    device = h.client.instance(3, 0)
    assert device is not None
    for level in levels:
        device.set(9, level)
        await settled(h)


async def disable(h: Harness, seconds: int) -> None:
    await write(h, ("1", "0", "5"), str(seconds).encode())
    r = await h.server.request(Message(Code.POST, uri_path=("1", "0", "4")), h.address)
    assert r.code == Code.CHANGED
    msg, addr = await h.server.next_request()
    assert msg.code == Code.DELETE  # Disable de-registers first
    h.server.reply(msg, addr, Code.DELETED)
    await until(lambda: h.client.sessions[1].state is RegistrationState.DISABLED)


@pytest.mark.parametrize("confirmable", [False, True])
async def test_disabled_server_gets_stored_notifications_in_order(
    make_client: MakeClient, confirmable: bool
) -> None:
    h = await make_client(notify_confirmable=confirmable)
    first = await observe_battery(h)
    await disable(h, 30)
    await change_battery(h, 80, 70, 60)
    assert h.server.notifications.empty()
    with pytest.raises(LwM2MError, match="no server"):
        await h.client.send(["/3/0/9"])  # no message at all to a disabled server
    assert h.server.requests.empty()
    assert [s.message.payload for s in h.client.observations.stored(1)] == [b"80", b"70", b"60"]
    h.scheduler.advance(30)  # Disable Timeout over: register again
    await h.server.accept_registration("again")
    notes = [await h.server.next_notification() for _ in range(3)]
    assert [n.payload for n in notes] == [b"80", b"70", b"60"]
    assert all(n.token == first.token for n in notes)
    assert all(n.type == (MessageType.CON if confirmable else MessageType.NON) for n in notes)
    observes = [first.observe, *(n.observe for n in notes)]
    assert observes == sorted(observes) and len(set(observes)) == 4  # type: ignore[type-var]
    # A stored CON notification leaves the queue when its ACK arrives; the server sends that
    # ACK as it receives the notification, so the last one may still be on its way here.
    await until(lambda: h.client.observations.stored(1) == [])
    await change_battery(h, 50)  # live again: notified at once
    assert (await h.server.next_notification()).payload == b"50"


async def test_disabled_without_storing_sends_latest_value_only(make_client: MakeClient) -> None:
    h = await make_client()
    await observe_battery(h)
    await write(h, ("1", "0", "6"), b"0")  # Notification Storing When Disabled or Offline
    await until(lambda: not h.client.sessions[1].account.notification_storing)
    await disable(h, 30)
    await change_battery(h, 80, 70)
    assert h.client.observations.stored(1) == []
    h.scheduler.advance(30)
    await h.server.accept_registration("again")
    note = await h.server.next_notification()
    assert note.payload == b"70"  # the latest value, nothing of what was dropped
    await settled(h)
    await until(lambda: h.client.stats.notifications_sent == 1)
    assert h.server.notifications.empty()


async def go_offline(h: Harness) -> None:
    """The server stops answering: the Update and the Register that follows time out."""
    h.client.trigger_update()
    msg, _ = await h.server.next_request()
    assert msg.uri_path == ("rd", "abc")  # Update, left unanswered
    msg, _ = await h.server.next_request(timeout=10)
    assert msg.uri_path == ("rd",)  # registering again, left unanswered
    await until(lambda: h.client.sessions[1].state is RegistrationState.FAILED, timeout=10)


async def test_offline_stores_bounded_and_sends_when_back(make_client: MakeClient) -> None:
    h = await make_client(request_timeout_s=0.2, stored_notifications_max=2)
    first = await observe_battery(h)
    await go_offline(h)
    await change_battery(h, 90, 80, 70)  # three due, room for two: the oldest goes
    assert h.client.observations.stored_dropped == 1
    assert h.server.notifications.empty()
    h.scheduler.advance(3)  # the retry after 2 s +/- 20 %
    await h.server.accept_registration("back")
    notes = [await h.server.next_notification() for _ in range(2)]
    assert [n.payload for n in notes] == [b"80", b"70"]
    assert all(n.token == first.token for n in notes)


async def test_offline_without_storing_sends_latest_value(make_client: MakeClient) -> None:
    h = await make_client(request_timeout_s=0.2)
    await observe_battery(h)
    await write(h, ("1", "0", "6"), b"0")
    await until(lambda: not h.client.sessions[1].account.notification_storing)
    await go_offline(h)
    await change_battery(h, 90, 80)
    assert h.client.observations.stored(1) == []
    h.scheduler.advance(3)
    await h.server.accept_registration("back")
    assert (await h.server.next_notification()).payload == b"80"
    await settled(h)
    assert h.client.stats.notifications_sent == 1 and h.server.notifications.empty()


async def test_first_registration_still_starts_without_observations(
    make_client: MakeClient,
) -> None:
    h = await make_client()
    await observe_battery(h)
    await h.client.restart_sessions()  # new sessions, as after bootstrap
    await h.server.accept_registration("fresh")
    await until(lambda: len(h.client.observations) == 0)
